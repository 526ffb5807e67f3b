"""At-least-once under a rebalance and under a failed delivery, on the real broker."""

from __future__ import annotations

import dataclasses
import os

import pytest
from confluent_kafka.admin import NewTopic

from consumer.dead_letter import REASON, VALUE_OMITTED_BYTES
from consumer.dev.samples import LOCAL_SECRETS
from consumer.errors import DeliveryFailed
from tests.integration.service_harness import (
    committed_offsets,
    everything_committed,
    produce_all,
    read_all,
    service_settings,
    start_service,
    wait_until,
)
from tests.integration.test_service import rivo_redemptions

PARTITIONS = 4


def test_two_members_of_one_group_share_the_work_and_lose_nothing(
    kafka_bootstrap_servers, new_topic, group_id
):
    raw, clean, dlq = new_topic("raw", PARTITIONS), new_topic("clean", 3), new_topic("dlq", 1)
    wave = 5000
    total = 2 * wave
    produce_all(kafka_bootstrap_servers, raw, rivo_redemptions(wave))
    settings = service_settings(
        kafka_bootstrap_servers, raw, clean, dlq, group_id, secrets=LOCAL_SECRETS, batch_size=50
    )

    first = start_service(settings)
    wait_until(lambda: first.consumed() >= 500, "the first member to get going")
    # The second member joins while the first is busy: partitions move from one to the
    # other. The second wave arrives once both hold partitions, so both get work.
    second = start_service(settings)
    wait_until(lambda: second.runner.assigned_partitions > 0, "the second member's assignment")
    produce_all(kafka_bootstrap_servers, raw, rivo_redemptions(wave, first_id=5_000_000 + wave))
    wait_until(
        lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, PARTITIONS),
        "every raw offset committed",
    )
    assert second.value("loyalty_rebalances_total", kind="assign") >= 1
    assert first.value("loyalty_rebalances_total", kind="revoke") >= 1
    assert second.consumed() > 0, "the second member got no work"
    first.stop()
    second.stop()

    clean_ids = [
        dict(m.headers())["event_id"].decode()
        for m in read_all(kafka_bootstrap_servers, clean, total)
    ]
    assert set(clean_ids) == {f"rivo:{5_000_000 + n}" for n in range(total)}
    # Revocation commits what was acknowledged before handing partitions over, so the
    # new owner repeats at most what was in flight, not whole partitions.
    duplicates = len(clean_ids) - total
    assert duplicates == first.consumed() + second.consumed() - total
    assert duplicates < total // 10


def test_a_failed_delivery_stops_the_service_without_committing_past_it(
    kafka_bootstrap_servers, new_topic, group_id
):
    raw, dlq = new_topic("raw", 1), new_topic("dlq", 1)
    missing_clean_topic = f"{raw}-never-created"  # the broker does not auto-create topics
    produce_all(kafka_bootstrap_servers, raw, rivo_redemptions(20))
    settings = service_settings(
        kafka_bootstrap_servers, raw, missing_clean_topic, dlq, group_id, secrets=LOCAL_SECRETS
    )
    # Give up on the unknown topic after 3 s instead of librdkafka's default 5 minutes.
    settings = dataclasses.replace(settings, kafka_producer={"message.timeout.ms": "3000"})

    service = start_service(settings)
    service.thread.join(60)
    assert not service.thread.is_alive(), "the service kept running after a failed delivery"
    with pytest.raises(DeliveryFailed):
        service.stop()
    assert service.value("loyalty_delivery_errors_total", topic=missing_clean_topic) >= 1

    # Nothing was acknowledged, so nothing may be committed: a restart reads all 20 again.
    assert committed_offsets(kafka_bootstrap_servers, group_id, raw, 1)[0] < 0
    assert service.consumed() == 20


def test_a_dead_letter_too_large_for_its_topic_goes_without_its_value(
    kafka_bootstrap_servers, new_topic, group_id, admin
):
    raw, clean = new_topic("raw", 1), new_topic("clean", 1)
    dlq = f"dlq-small-{group_id}"
    # The dead-letter topic accepts at most ~50 kB per record batch.
    admin.create_topics([NewTopic(dlq, 1, 1, config={"max.message.bytes": "50000"})])[dlq].result(
        30
    )
    oversized = os.urandom(200_000)  # not UTF-8 (invalid_json), and incompressible
    (valid_body, valid_headers) = next(rivo_redemptions(1))
    produce_all(
        kafka_bootstrap_servers,
        raw,
        [(oversized, [("x-original", b"kept")]), (valid_body, valid_headers)],
    )
    settings = service_settings(
        kafka_bootstrap_servers, raw, clean, dlq, group_id, secrets=LOCAL_SECRETS
    )
    service = start_service(settings)
    wait_until(
        lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, 1),
        "both records committed",
    )
    service.stop()  # raises if the service had stopped on an error

    (dead,) = read_all(kafka_bootstrap_servers, dlq, 1)
    headers = dict(dead.headers())
    assert dead.value() is None
    assert headers[VALUE_OMITTED_BYTES] == b"200000"
    assert headers[REASON] == b"invalid_json"
    assert headers["x-original"] == b"kept"
    assert service.outcome_total("accepted") == 1
    admin.delete_topics([dlq])


def test_a_full_producer_queue_makes_the_loop_wait_and_drops_nothing(
    kafka_bootstrap_servers, new_topic, group_id
):
    raw, clean, dlq = new_topic("raw", 1), new_topic("clean", 1), new_topic("dlq", 1)
    total = 400
    produce_all(kafka_bootstrap_servers, raw, rivo_redemptions(total))
    settings = service_settings(
        kafka_bootstrap_servers, raw, clean, dlq, group_id, secrets=LOCAL_SECRETS
    )
    # A queue of 5 records: nearly every produce meets a full queue.
    settings = dataclasses.replace(settings, kafka_producer={"queue.buffering.max.messages": "5"})
    service = start_service(settings)
    wait_until(
        lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, 1),
        "every record committed",
    )
    service.stop()

    assert service.value("loyalty_producer_queue_full_total") > 0
    clean_ids = {
        dict(m.headers())["event_id"] for m in read_all(kafka_bootstrap_servers, clean, total)
    }
    assert len(clean_ids) == total
