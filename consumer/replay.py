"""`loyalty-consumer replay`: puts dead letters back through the service.

Reads the dead-letter topic and produces each selected record's original value, key and
original headers (the service's headers stripped) to the raw topic, with lineage headers:

  loyalty.replay.of   the dead letter replayed: <dead-letter topic>/<partition>@<offset>
  loyalty.replay.at   when it was replayed (ISO-8601 UTC)
  loyalty.replay.id   the replay's id: its consumer group

Resumable, and each dead letter replayed once per replay id, even across a crash. The
position on the dead-letter topic is kept in a consumer group of the replay's own,
committed only after every record of a batch is acknowledged by the raw topic. A crash
between the acknowledgement and the commit would replay that batch again on the next
run; so every commit also carries a resume marker in its offset metadata: the raw
topic's end offsets from which records of this replay may lie beyond the committed
position. A run reads the raw topic from the marker, collects the `loyalty.replay.of`
of the records carrying its replay id, and skips those dead letters.

The group is derived from the filter (`<group>-replay-<digest>`), so a replay with
another filter starts from the beginning of the dead-letter topic; overlapping filters
do replay their overlap once each (name the group with --group to share positions on
purpose). A run stops at the end offsets it saw when it started, so records that fail
again and come back to the dead-letter topic are not replayed in a loop.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from consumer.config import Settings
from consumer.console import ProgressReport, console, error_console, table
from consumer.dead_letter_reader import REPLAY_ID, REPLAY_OF, DeadLetter, DeadLetterFilter
from consumer.errors import ReadFailed, ReplayFailed
from consumer.kafka_errors import describe, is_end_of_partition
from consumer.kafka_io import construct_client, produce
from consumer.topic_reading import (
    METADATA_TIMEOUT_SECONDS,
    partitions_of,
    read_range,
    reading_consumer,
    watermarks,
)

log = logging.getLogger(__name__)

# Records produced between two commits. A batch is what an interruption or a failure
# leaves to redo; 500 is a fraction of a second's work and a small offset commit.
BATCH_SIZE = 500
# Every produced record of a batch must be acknowledged before its offsets are
# committed; librdkafka's own delivery timeout (message.timeout.ms) is shorter.
FLUSH_TIMEOUT_SECONDS = 60.0
# How long one consume call waits for dead letters.
CONSUME_SECONDS = 1.0
# Failed deliveries named in the log (the rest are counted).
LOGGED_FAILURES = 5
# The resume marker in the commit's metadata: `raw:<partition>=<offset>,...`. The brokers
# keep at most offset.metadata.max.bytes (4096 by default) per partition, so each
# dead-letter partition carries the raw partitions whose number is its own modulo count.
MARKER_PREFIX = "raw:"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def replay_group(settings: Settings, selection: DeadLetterFilter) -> str:
    return f"{settings.group_id}-replay-{selection.digest()}"


@dataclass
class ReplayResult:
    read: int = 0
    selected: Counter = field(default_factory=Counter)  # (reason, provider) -> count
    replayed: int = 0
    already_replayed: int = 0  # found on the raw topic, from a run that did not commit
    failed: int = 0  # produced but not acknowledged
    not_replayable: int = 0  # sent to the dead-letter topic without their value
    interrupted: bool = False

    @property
    def selected_total(self) -> int:
        return sum(self.selected.values())


@dataclass(frozen=True)
class ReplayOptions:
    selection: DeadLetterFilter = field(default_factory=DeadLetterFilter)
    dry_run: bool = False
    rate: float | None = None  # records a second
    group: str | None = None  # default: replay_group()


@dataclass
class _Partition:
    number: int
    start: int
    end: int  # the end offset when the replay started: it stops there
    next_offset: int = -1
    done: bool = False


class SignalFlag:
    """Ctrl-C (or SIGTERM) sets the flag: the batch in hand is flushed and committed,
    then the replay stops. A second one stops at once (the default handlers)."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalFlag:
        self._previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in self._previous:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, _signum: int, _frame: Any) -> None:
        self.raised = True
        for signum in self._previous:
            signal.signal(signum, signal.SIG_DFL)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclass
class _Run:
    """One replay run: its clients, where it reads, what it has done."""

    settings: Settings
    options: ReplayOptions
    group: str
    consumer: Consumer
    producer: Producer | None
    partitions: list[_Partition]
    raw_partitions: list[int]
    # Raw-topic positions from which records of this replay may lie beyond the commit.
    marker: dict[int, int]
    # Dead letters already on the raw topic with this replay id (name -> True).
    already: set[str]
    result: ReplayResult
    progress: ProgressReport | None = None
    stop: SignalFlag | None = None
    started: float = field(default_factory=time.monotonic)


def run_replay(
    settings: Settings, options: ReplayOptions, result: ReplayResult | None = None
) -> int:
    """The exit status; `result`, when given, is filled in with the counts."""
    group = options.group or replay_group(settings, options.selection)
    out, err = console(), error_console()
    result = result if result is not None else ReplayResult()
    consumer = reading_consumer(
        settings,
        "replay",
        **{"group.id": group, "enable.auto.offset.store": False, "auto.offset.reset": "earliest"},
    )
    failure = None
    try:
        run = _prepare(settings, options, group, consumer, result)
        total = sum(p.end - p.start for p in run.partitions)
        verb = "would replay" if options.dry_run else "replaying"
        err.print(
            f"{verb} from {settings.dead_letter_topic} to {settings.raw_topic}: "
            f"{total} dead letters to read, group {group}"
            + (f", {len(run.already)} already on the raw topic" if run.already else "")
        )
        with (
            SignalFlag() as run.stop,
            ProgressReport(err, "dry run" if options.dry_run else "replay", total) as run.progress,
        ):
            _replay(run)
    except (ReplayFailed, ReadFailed) as exc:
        failure = str(exc)
    finally:
        consumer.close()
    if failure is not None and not result.read:
        err.print(f"loyalty-consumer replay: {failure}")
        return EXIT_FAILED
    _report(out, err, result, options.dry_run, settings, group)
    if failure is not None:
        err.print(f"loyalty-consumer replay: {failure}")
        return EXIT_FAILED
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failed or result.not_replayable else EXIT_OK


def _prepare(
    settings: Settings,
    options: ReplayOptions,
    group: str,
    consumer: Consumer,
    result: ReplayResult,
) -> _Run:
    topic = settings.dead_letter_topic
    numbers = partitions_of(consumer, topic, settings, "the dead-letter topic, LOYALTY_DLQ_TOPIC")
    # Up front, dry run included: replaying into a topic that does not exist would only
    # time out batch after batch.
    raw_partitions = partitions_of(
        consumer, settings.raw_topic, settings, "the raw topic to replay into, LOYALTY_RAW_TOPIC"
    )
    try:
        committed = consumer.committed(
            [TopicPartition(topic, n) for n in numbers], timeout=METADATA_TIMEOUT_SECONDS
        )
    except KafkaException as exc:
        raise ReplayFailed(f"cannot read the position of group {group}: {describe(exc)}") from None
    found = []
    bounds = watermarks(consumer, topic, numbers)
    for tp in committed:
        low, high = bounds[tp.partition]
        start = max(tp.offset, low) if tp.offset >= 0 else low
        found.append(_Partition(tp.partition, start, high, next_offset=start, done=start >= high))
    raw_ends = {
        p: high for p, (_, high) in watermarks(consumer, settings.raw_topic, raw_partitions).items()
    }
    marker = _read_marker(committed)
    already = _already_replayed(settings, group, marker, raw_ends) if marker else set()
    run = _Run(
        settings=settings,
        options=options,
        group=group,
        consumer=consumer,
        producer=None,
        partitions=found,
        raw_partitions=raw_partitions,
        marker=marker or raw_ends,
        already=already,
        result=result,
    )
    if not options.dry_run:
        run.producer = construct_client(
            Producer,
            settings,
            "producer",
            settings.client_config(
                {"enable.idempotence": True, "acks": "all", "linger.ms": 10}, "producer"
            ),
            {},
        )
        # The marker is committed before anything is produced: a crash before the first
        # batch's commit still leaves the next run knowing where to look.
        _commit(run)
    return run


def _replay(run: _Run) -> None:
    by_number = {p.number: p for p in run.partitions}
    topic = run.settings.dead_letter_topic
    pending = [TopicPartition(topic, p.number, p.start) for p in run.partitions if not p.done]
    if not pending:
        return
    run.consumer.assign(pending)
    rate = run.options.rate
    while not all(p.done for p in run.partitions):
        if run.stop and run.stop.raised:
            run.result.interrupted = True
            return
        # Rate-limited, a batch is about a second's worth.
        batch = run.consumer.consume(
            min(BATCH_SIZE, max(1, int(rate or BATCH_SIZE))), CONSUME_SECONDS
        )
        failures: list[str] = []
        produced = 0
        for message in batch:
            if run.stop and run.stop.raised:
                break  # what was produced is flushed and committed below
            partition = by_number.get(message.partition())
            error = message.error()
            if error is not None:
                if is_end_of_partition(error) and partition is not None:
                    partition.done = True
                    continue
                raise ReplayFailed(f"reading {topic} failed: {error.str()}")
            if partition is None or partition.done or message.offset() >= partition.end:
                if partition is not None:
                    partition.done = True
                continue
            partition.next_offset = message.offset() + 1
            if partition.next_offset >= partition.end:
                partition.done = True
            run.result.read += 1
            if _select_and_produce(run, DeadLetter.from_message(message), failures):
                produced += 1
                _wait_for_rate(rate, run.started, run.result.replayed + produced)
            if run.progress is not None:
                run.progress.advance(note=f"{run.result.selected_total} selected")
        if run.producer is not None:
            _flush_and_commit(run, produced, failures)
        paused = [TopicPartition(topic, p.number) for p in run.partitions if p.done]
        if paused:
            run.consumer.pause(paused)


def _select_and_produce(run: _Run, letter: DeadLetter, failures: list[str]) -> bool:
    """True when the dead letter was produced to the raw topic."""
    if not run.options.selection.matches(letter):
        return False
    run.result.selected[(letter.reason or "unknown", letter.provider)] += 1
    if letter.name in run.already:
        run.result.already_replayed += 1
        return False
    if run.producer is None:
        return False
    if letter.value_omitted:
        run.result.not_replayable += 1
        log.error(
            "dead letter has no value (too large); replay it from the raw topic",
            extra={
                "dead_letter": letter.name,
                "source_partition": letter.source_partition,
                "source_offset": letter.source_offset,
            },
        )
        return False

    def delivered(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failures.append(f"{letter.name}: {error.str()}")

    produce(
        run.producer,
        run.settings.raw_topic,
        key=letter.key,
        value=letter.value,
        headers=letter.headers_for_replay(run.group, datetime.now(UTC)),
        on_delivery=delivered,
    )
    return True


def _flush_and_commit(run: _Run, produced: int, failures: list[str]) -> None:
    assert run.producer is not None
    left = run.producer.flush(FLUSH_TIMEOUT_SECONDS)
    if failures or left:
        run.result.failed += len(failures) + left
        for failure in failures[:LOGGED_FAILURES]:
            log.error("replay not acknowledged", extra={"error": failure})
        run.result.replayed += produced - len(failures) - left
        cause = failures[0] if failures else f"{left} still unacknowledged after the flush"
        # The batch's offsets are not committed: a rerun skips what did arrive.
        raise ReplayFailed(
            f"{len(failures) + left} replayed records were not acknowledged by "
            f"{run.settings.raw_topic} (first: {cause}); run the same command again "
            "once the cause is fixed"
        )
    run.result.replayed += produced
    if not any(_passed(run, name) is False for name in run.already):
        # Every record of an earlier run's uncommitted tail is behind the commit now:
        # the marker may move to the raw topic's end, all of this run's acknowledged.
        run.marker = {
            p: high
            for p, (_, high) in watermarks(
                run.consumer, run.settings.raw_topic, run.raw_partitions
            ).items()
        }
    _commit(run)


def _passed(run: _Run, name: str) -> bool:
    """Whether the dead letter `name` (topic/partition@offset) is behind the position."""
    try:
        where = name.rsplit("/", 1)[1]
        partition, offset = (int(part) for part in where.split("@"))
    except (IndexError, ValueError):
        return True
    for p in run.partitions:
        if p.number == partition:
            return p.next_offset > offset
    return True


def _commit(run: _Run) -> None:
    topic = run.settings.dead_letter_topic
    count = len(run.partitions)
    positions = []
    for index, p in enumerate(sorted(run.partitions, key=lambda p: p.number)):
        share = {raw: offset for raw, offset in run.marker.items() if raw % count == index}
        metadata = MARKER_PREFIX + ",".join(
            f"{raw}={offset}" for raw, offset in sorted(share.items())
        )
        positions.append(TopicPartition(topic, p.number, p.next_offset, metadata=metadata))
    try:
        run.consumer.commit(offsets=positions, asynchronous=False)
    except KafkaException as exc:
        raise ReplayFailed(
            f"the position of group {run.group} was not committed: {describe(exc)}; "
            "run the same command again"
        ) from None


def _read_marker(committed: list[TopicPartition]) -> dict[int, int]:
    marker: dict[int, int] = {}
    for tp in committed:
        text = getattr(tp, "metadata", None) or ""
        if not text.startswith(MARKER_PREFIX):
            continue
        for item in filter(None, text[len(MARKER_PREFIX) :].split(",")):
            raw, _, offset = item.partition("=")
            marker[int(raw)] = int(offset)
    return marker


def _already_replayed(
    settings: Settings, group: str, marker: dict[int, int], raw_ends: dict[int, int]
) -> set[str]:
    """The dead letters this replay put on the raw topic after its last commit."""
    starts = {p: marker.get(p, 0) for p in raw_ends}
    found: set[str] = set()
    reader = reading_consumer(settings, "replay-check")
    try:
        for message in read_range(reader, settings.raw_topic, starts, raw_ends):
            lineage = dict(message.headers() or ())
            if lineage.get(REPLAY_ID) == group.encode() and lineage.get(REPLAY_OF):
                found.add(lineage[REPLAY_OF].decode("utf-8", errors="replace"))
    finally:
        reader.close()
    return found


def _wait_for_rate(rate: float | None, started: float, produced: int) -> None:
    if not rate:
        return
    ahead = started + produced / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)


def _report(out, err, result: ReplayResult, dry_run: bool, settings: Settings, group: str):
    rows = sorted(
        ((reason, provider, count) for (reason, provider), count in result.selected.items()),
        key=lambda row: (-row[2], row[0], row[1]),
    )
    title = "would be replayed" if dry_run else "selected for replay"
    out.print(table(title, ("reason", "provider", "records"), rows or [("-", "-", 0)]))
    skipped = (
        f", {result.already_replayed} already replayed by an interrupted run (skipped)"
        if result.already_replayed
        else ""
    )
    if dry_run:
        out.print(
            f"dry run: read {result.read} dead letters, "
            f"{result.selected_total - result.already_replayed} would be replayed to "
            f"{settings.raw_topic}{skipped}; nothing was produced or committed"
        )
        return
    out.print(
        f"read {result.read} dead letters, replayed {result.replayed} to {settings.raw_topic}"
        f" (replay id {group}){skipped}"
        + (
            f", {result.not_replayable} without a value (see the log)"
            if result.not_replayable
            else ""
        )
        + (f", {result.failed} NOT acknowledged" if result.failed else "")
    )
    if result.interrupted:
        err.print("interrupted: run the same command again to continue where this one stopped")
