"""Seed payloads (each provider's documented redemption, package data under
consumer/dev/webhooks/<provider>/) and ways to re-serialise them."""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from consumer.records import Accepted, RawRecord, Rejected

WEBHOOKS = Path(str(resources.files("consumer.dev") / "webhooks"))


def seed_file(provider_name: str) -> Path:
    """The file of the provider's first documented redemption payload."""
    return min(WEBHOOKS.joinpath(provider_name).glob("*.json"))


@cache
def seed_bytes(provider_name: str) -> bytes:
    """The provider's seed exactly as stored (the provider's documented example)."""
    return seed_file(provider_name).read_bytes()


def seed(provider_name: str) -> dict[str, Any]:
    """A fresh, mutable copy of the provider's seed payload."""
    return copy.deepcopy(json.loads(seed_bytes(provider_name)))


MAGE_SEED_FILE = seed_file("mage_loyalty")
RIVO_SEED_FILE = seed_file("rivo")


def mage_seed_bytes() -> bytes:
    return seed_bytes("mage_loyalty")


def rivo_seed_bytes() -> bytes:
    return seed_bytes("rivo")


def mage_seed() -> dict[str, Any]:
    return seed("mage_loyalty")


def rivo_seed() -> dict[str, Any]:
    return seed("rivo")


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as most HTTP clients send it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_differently(payload: Any) -> bytes:
    """The same JSON value spelled another way: keys in reverse order at every level,
    indented, with extra spaces. A redelivery may arrive like this."""

    def reorder(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: reorder(value[key]) for key in reversed(list(value))}
        if isinstance(value, list):
            return [reorder(item) for item in value]
        return value

    return json.dumps(reorder(payload), indent=4, separators=(" ,  ", " :  ")).encode()


def set_path(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set a dotted path ('data.points_redeemed') in place; returns the payload."""
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[key]
    target[last] = value
    return payload


def delete_path(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """Remove a dotted path in place; returns the payload."""
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[key]
    del target[last]
    return payload


def raw_record(
    body: Any,
    headers: Any = (),
    *,
    topic: str = "loyalty.webhooks.raw",
    partition: int = 3,
    offset: int = 42,
) -> RawRecord:
    """A RawRecord of the raw topic; `body` is a JSON value or the exact bytes."""
    value = body if body is None or isinstance(body, bytes) else dumps(body)
    return RawRecord(
        value=value, headers=list(headers), topic=topic, partition=partition, offset=offset
    )


def accept(pipeline, body: bytes, headers=(), provider: str | None = None) -> dict[str, Any]:
    """The canonical record of `body`; fails the test unless it is accepted (from
    `provider`, when given)."""
    outcome = pipeline.process(raw_record(body, headers))
    assert isinstance(outcome, Accepted), outcome
    if provider is not None:
        assert outcome.provider == provider
    return dict(outcome.record)


def reject(pipeline, body: bytes, headers=()) -> Rejected:
    """The rejection of `body`; fails the test unless it is rejected."""
    outcome = pipeline.process(raw_record(body, headers))
    assert isinstance(outcome, Rejected), outcome
    return outcome
