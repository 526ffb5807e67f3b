"""Fixtures of the unit suite: seed payloads, a pipeline with a fixed clock, and the
hypothesis profile that keeps the property-based tests quick and repeatable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from consumer.pipeline import Pipeline
from tests.helpers import payloads, properties

# Derandomised so a failure reproduces on every run and CI sees what a developer saw;
# no example database, so a run leaves nothing behind. The deadline is off because the
# first call of a test pays one-off costs (schema parsing) that say nothing about speed.
settings.register_profile(
    "unit",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# `make check` (tests/helpers/properties.py): the same, with a tenth of the examples.
settings.register_profile(
    properties.CHECK_PROFILE,
    parent=settings.get_profile("unit"),
    max_examples=properties.examples(settings.get_profile("unit").max_examples),
)
settings.load_profile(properties.CHECK_PROFILE if properties.quick() else "unit")

# 2026-02-18T12:00:00.123Z: a clock with milliseconds, to see they survive.
FIXED_NOW = datetime(2026, 2, 18, 12, 0, 0, 123000, tzinfo=UTC)
FIXED_CLOCK_SECONDS = 1771416000.123


@pytest.fixture
def mage_body() -> dict[str, Any]:
    return payloads.mage_seed()


@pytest.fixture
def rivo_body() -> dict[str, Any]:
    return payloads.rivo_seed()


@pytest.fixture(scope="session")
def pipeline() -> Pipeline:
    """No secrets, default limit, a fixed clock."""
    return Pipeline(clock=lambda: FIXED_CLOCK_SECONDS, consumer_version="9.9.9-test")


@pytest.fixture
def fixed_now() -> datetime:
    """What the `pipeline` fixture's clock says, as metadata.processed_at stores it."""
    return FIXED_NOW
