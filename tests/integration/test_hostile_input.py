"""Every case of the hostile-input catalogue (tests/helpers/hostile.py) sent to the real
broker and through ONE running service: each rejected case is on the dead-letter topic
with its reason and field, the outcome counts are exact, every offset is committed, and
the service is still healthy and processing afterwards."""

from __future__ import annotations

import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer import dead_letter
from consumer.dev.samples import LOCAL_SECRETS
from tests.helpers.hostile import ACCEPTED, IGNORED, ONE_MEBIBYTE, catalogue
from tests.integration.service_harness import (
    everything_committed,
    read_all,
    service_settings,
    start_service,
    wait_until,
)
from tests.integration.test_service import rivo_redemptions

PARTITIONS = 3
# The raw topic takes the catalogue's 5 MB value and 1 MB headers; the dead-letter and
# clean topics keep the broker's default limit (about 1 MB), as in production.
RAW_MAX_MESSAGE_BYTES = 8 * ONE_MEBIBYTE


@pytest.fixture
def hostile_topics(admin: AdminClient) -> Iterator[tuple[str, str, str]]:
    name = f"hostile-{uuid.uuid4().hex[:10]}"
    raw, clean, dlq = f"{name}-raw", f"{name}-clean", f"{name}-dlq"
    futures = admin.create_topics(
        [
            NewTopic(raw, PARTITIONS, 1, config={"max.message.bytes": str(RAW_MAX_MESSAGE_BYTES)}),
            NewTopic(clean, PARTITIONS, 1),
            NewTopic(dlq, PARTITIONS, 1),
        ]
    )
    for future in futures.values():
        future.result(30)
    yield raw, clean, dlq
    for future in admin.delete_topics([raw, clean, dlq], operation_timeout=10).values():
        future.result(30)


def produce_cases(bootstrap: str, topic: str, records) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "message.max.bytes": RAW_MAX_MESSAGE_BYTES,
            "linger.ms": 5,
        }
    )
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=list(headers))
        producer.poll(0)
    assert producer.flush(60) == 0, "test input was not fully delivered"


def _healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return response.status == 200


def test_every_hostile_case_through_the_running_service(
    kafka_bootstrap_servers, hostile_topics, group_id
):
    raw, clean, dlq = hostile_topics
    cases = catalogue()
    expected = Counter(
        case.expected if case.expected in (ACCEPTED, IGNORED) else "rejected" for case in cases
    )
    settings = service_settings(
        kafka_bootstrap_servers, raw, clean, dlq, group_id, secrets=LOCAL_SECRETS
    )
    service = start_service(settings, serve=True)
    try:
        produce_cases(
            kafka_bootstrap_servers,
            raw,
            [(case.key, case.value, case.headers) for case in cases],
        )
        wait_until(lambda: service.consumed() == len(cases) or bool(service.errors), "the cases")
        assert not service.errors, service.errors
        wait_until(
            lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, PARTITIONS),
            "every case to be committed",
        )

        # Still healthy and still working: a valid redemption afterwards goes through.
        assert service.thread.is_alive()
        assert _healthy(service.http_port)
        (body, headers) = next(rivo_redemptions(1, first_id=77_000_000))
        produce_cases(kafka_bootstrap_servers, raw, [(b"after", body, headers)])
        wait_until(lambda: service.outcome_total("accepted") == expected[ACCEPTED] + 1, "after")
    finally:
        service.stop()

    # The ledger is exact: every case counted once, under its outcome.
    assert service.consumed() == len(cases) + 1
    assert service.outcome_total("accepted") == expected[ACCEPTED] + 1
    assert service.outcome_total("ignored") == expected[IGNORED]
    assert service.outcome_total("rejected") == expected["rejected"]
    assert len(read_all(kafka_bootstrap_servers, clean, expected[ACCEPTED] + 1)) == (
        expected[ACCEPTED] + 1
    )

    # Each rejected case is on the dead-letter topic once, with its reason and field.
    dead_letters = read_all(kafka_bootstrap_servers, dlq, expected["rejected"])
    by_key = Counter(message.key() for message in dead_letters)
    assert all(count == 1 for count in by_key.values()), by_key.most_common(3)
    found = {message.key(): _our_headers(message.headers()) for message in dead_letters}
    mismatches = []
    for case in cases:
        if case.expected in (ACCEPTED, IGNORED):
            if case.key in found:
                mismatches.append((case.name, "dead-lettered", found[case.key]))
            continue
        headers = found.get(case.key)
        if headers is None:
            mismatches.append((case.name, "missing from the dead-letter topic"))
            continue
        got = (headers.get(dead_letter.REASON), headers.get(dead_letter.FIELD))
        # Every service header is written; an empty one does not apply.
        want = (case.expected.encode(), case.field.encode() if case.field else b"")
        if got != want:
            mismatches.append((case.name, got, want))
    assert mismatches == []

    # Too large for the dead-letter topic: sent without the value, and when that is not
    # enough (a 1 MB header), without the original headers too; never a stopped service.
    dead_by_key = {message.key(): message for message in dead_letters}
    by_name = {case.name: case for case in cases}
    too_large = dead_by_key[b"5 MB value"]
    assert too_large.value() is None
    assert (
        dict(too_large.headers())[dead_letter.VALUE_OMITTED_BYTES]
        == str(len(by_name["5 MB value"].value)).encode()
    )
    huge_header = dead_by_key[b"1 MB header value, rejected record"]
    assert huge_header.value() is None
    kept = dict(huge_header.headers())
    assert "x-padding" not in kept
    assert kept[dead_letter.HEADERS_OMITTED_BYTES] == str(len("x-padding") + ONE_MEBIBYTE).encode()

    # Headers forged upstream under the service's own names stay byte for byte, and the
    # last occurrence of each name, where readers look, is the service's.
    spoofed = dead_by_key[b"spoofed dead-letter headers"]
    assert spoofed.headers()[: len(by_name["spoofed dead-letter headers"].headers)] == list(
        by_name["spoofed dead-letter headers"].headers
    )
    last = dict(spoofed.headers())
    assert last[dead_letter.PROVIDER] == b""
    assert last[dead_letter.REASON] == b"invalid_json"
    assert last[dead_letter.VALUE_OMITTED_BYTES] == b""
    assert last[dead_letter.CONNECT_TOPIC] == raw.encode()
    for name in dead_letter.SERVICE_HEADERS:
        assert name in last, name


def _our_headers(headers) -> dict[str, bytes]:
    """The service's own dead-letter headers; the last of a name wins, because the
    original headers (which a case may have forged) come first and the service writes
    every one of its own after them."""
    return {name: value for name, value in headers or () if name.startswith("loyalty.error.")}
