"""OffsetTracker: which input offsets may be committed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.kafka_io import OffsetTracker


def points(tracker: OffsetTracker) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): tp.offset for tp in tracker.take_commit_points()}


def test_a_partition_commits_up_to_its_first_unacknowledged_offset():
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.start("raw", 0, offset)
    tracker.finish("raw", 0, 12)
    tracker.finish("raw", 0, 13)
    assert points(tracker) == {}  # 10 is still waiting
    tracker.finish("raw", 0, 10)
    assert points(tracker) == {("raw", 0): 11}  # 11 still waiting
    tracker.finish("raw", 0, 11)
    assert points(tracker) == {("raw", 0): 14}
    assert tracker.pending() == 0


def test_partitions_are_independent():
    tracker = OffsetTracker()
    tracker.start("raw", 0, 5)
    tracker.start("raw", 1, 7)
    tracker.finish("raw", 1, 7)
    assert points(tracker) == {("raw", 1): 8}
    assert points(tracker) == {}  # reported once, until it moves again
    assert tracker.pending() == 1


def test_forgotten_partitions_report_nothing_and_ignore_late_acks():
    from confluent_kafka import TopicPartition

    tracker = OffsetTracker()
    tracker.start("raw", 0, 1)
    tracker.finish("raw", 0, 1)
    points(tracker)
    tracker.start("raw", 0, 2)
    tracker.forget([TopicPartition("raw", 0)])
    tracker.finish("raw", 0, 2)  # an ack arriving after revocation
    assert points(tracker) == {}
    assert tracker.pending() == 0


def test_a_rewound_partition_never_commits_past_an_older_waiting_offset():
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start("raw", 0, offset)
    tracker.start("raw", 0, 5)  # librdkafka reset the partition to an earlier offset
    for offset in (10, 11, 12):
        tracker.finish("raw", 0, offset)
    assert points(tracker) == {}  # 5 is still waiting
    tracker.finish("raw", 0, 5)
    assert points(tracker) == {("raw", 0): 13}


@given(st.permutations(range(50)), st.integers(min_value=0, max_value=50))
def test_never_commits_past_an_unacknowledged_offset(ack_order, acked):
    tracker = OffsetTracker()
    for offset in range(50):
        tracker.start("raw", 0, offset)
    done = set(ack_order[:acked])
    for offset in ack_order[:acked]:
        tracker.finish("raw", 0, offset)
    committed = points(tracker).get(("raw", 0))
    first_missing = next((o for o in range(50) if o not in done), 50)
    if first_missing == 0:
        assert committed is None
    else:
        assert committed == first_missing
