"""The start-up wait for the schema registry (consumer/registry_encoder.py), without a
registry: an encoder whose registration fails as a client would fail."""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer import registry_encoder
from consumer.errors import ConfigError
from consumer.registry_encoder import wait_until_registered


class FlakyEncoder:
    subject = "clean-value"

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.attempts = 0

    def register(self) -> int:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        return 7


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(registry_encoder, "RETRY_FIRST_SECONDS", 0.01)


def test_waits_through_connection_errors_and_server_errors_then_reports_done():
    encoder = FlakyEncoder(
        [ConnectionRefusedError(111, "Connection refused"), SchemaRegistryError(503, 50301, "x")]
    )
    reports: list[str | None] = []
    assert wait_until_registered(encoder, lambda: False, reports.append) is True
    assert encoder.attempts == 3
    assert reports[-1] is None and all("schema registry" in r for r in reports[:-1])
    assert len(reports) == 3


def test_a_refusal_that_waiting_cannot_fix_is_a_config_error():
    encoder = FlakyEncoder([SchemaRegistryError(409, 409, "incompatible schema")])
    with pytest.raises(ConfigError, match=r"SCHEMA_REGISTRY_URL.*incompatible schema"):
        wait_until_registered(encoder, lambda: False, lambda problem: None)


def test_a_stop_ends_the_wait():
    encoder = FlakyEncoder([ConnectionRefusedError()] * 100)
    # A stop asked for after the second failed attempt.
    assert wait_until_registered(encoder, lambda: encoder.attempts >= 2, lambda p: None) is False
    assert encoder.attempts == 2
