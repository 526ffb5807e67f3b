"""The pure parts of the operators' commands and of start-up: the replay filter and
lineage headers, the repeat filter on client logs, readiness before the first
statistics, the build-info versions."""

from __future__ import annotations

import importlib.metadata
import io
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from consumer import dead_letter
from consumer.config import Settings
from consumer.console import ProgressReport, table
from consumer.logs import RepeatFilter
from consumer.metrics import Metrics
from consumer.replay import (
    REPLAY_AT,
    REPLAY_ID,
    REPLAY_OF,
    ReplayFilter,
    dead_letter_facts,
    original_headers,
    replay_group,
    replay_headers,
)
from consumer.service import StartupState, probes

ORIGINAL = [("Content-Type", b"application/json"), ("X-Webhook-Signature", b"abc"), ("n", None)]


def dead_letter_headers(**facts: str) -> list[tuple[str, bytes | None]]:
    base = {
        dead_letter.CONNECT_TOPIC: "raw",
        dead_letter.CONNECT_PARTITION: "1",
        dead_letter.CONNECT_OFFSET: "42",
        dead_letter.REASON: "signature_invalid",
        dead_letter.PROVIDER: "mage_loyalty",
        dead_letter.EVENT_TYPE: "points.redeemed",
        dead_letter.FAILED_AT: "2026-03-01T10:00:00.000Z",
    }
    base.update(facts)
    return [*ORIGINAL, *((name, value.encode()) for name, value in base.items())]


def facts(**overrides: str) -> dict[str, str]:
    return dead_letter_facts(dead_letter_headers(**overrides))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- replay ------------------------------------------------------------------------------


def test_an_empty_filter_selects_everything():
    assert ReplayFilter().matches(facts())
    assert ReplayFilter().matches({})


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (ReplayFilter(reasons=frozenset({"signature_invalid"})), True),
        (ReplayFilter(reasons=frozenset({"schema_violation"})), False),
        (ReplayFilter(providers=frozenset({"mage_loyalty", "rivo"})), True),
        (ReplayFilter(providers=frozenset({"rivo"})), False),
        (ReplayFilter(event_types=frozenset({"points.redeemed"})), True),
        (ReplayFilter(event_types=frozenset({"points.earned"})), False),
        (ReplayFilter(failed_after=at("2026-03-01T10:00:00")), True),  # inclusive
        (ReplayFilter(failed_after=at("2026-03-01T10:00:01")), False),
        (ReplayFilter(failed_before=at("2026-03-01T10:00:00")), False),  # exclusive
        (ReplayFilter(failed_before=at("2026-03-02T00:00:00")), True),
        (ReplayFilter(source_partitions=frozenset({1})), True),
        (ReplayFilter(source_partitions=frozenset({0, 2})), False),
        (ReplayFilter(source_offset_min=42, source_offset_max=42), True),
        (ReplayFilter(source_offset_min=43), False),
        (ReplayFilter(source_offset_max=41), False),
    ],
)
def test_each_criterion_selects_or_not(selection, selected):
    assert selection.matches(facts()) is selected


def test_unknown_provider_is_selected_by_the_name_unknown():
    without = dead_letter_facts([(dead_letter.REASON, b"invalid_json")])
    assert ReplayFilter(providers=frozenset({"unknown"})).matches(without)


def test_a_time_range_never_selects_a_dead_letter_without_a_time():
    assert not ReplayFilter(failed_after=at("2020-01-01T00:00:00")).matches({})


def test_replayed_headers_are_the_original_ones_then_the_lineage():
    replayed_at = at("2026-03-02T08:00:00")
    headers = replay_headers(dead_letter_headers(), "dlq/0@7", "g-replay-x", replayed_at)
    assert headers[: len(ORIGINAL)] == ORIGINAL
    assert headers[len(ORIGINAL) :] == [
        (REPLAY_OF, b"dlq/0@7"),
        (REPLAY_AT, b"2026-03-02T08:00:00.000Z"),
        (REPLAY_ID, b"g-replay-x"),
    ]


def test_a_second_replay_replaces_the_lineage_of_the_first():
    once = replay_headers(dead_letter_headers(), "dlq/0@7", "a", at("2026-03-02T08:00:00"))
    again = replay_headers([*once, (dead_letter.REASON, b"x")], "dlq/0@9", "b", datetime.now(UTC))
    assert [name for name, _ in again].count(REPLAY_OF) == 1
    assert dict(again)[REPLAY_OF] == b"dlq/0@9"
    assert original_headers(again) == ORIGINAL


def test_the_group_follows_the_filter_not_its_spelling():
    settings = Settings(group_id="loyalty-consumer")
    a = ReplayFilter(reasons=frozenset({"signature_invalid", "schema_violation"}))
    b = ReplayFilter(reasons=frozenset({"schema_violation", "signature_invalid"}))
    assert replay_group(settings, a) == replay_group(settings, b)
    assert replay_group(settings, a).startswith("loyalty-consumer-replay-")
    assert replay_group(settings, a) != replay_group(settings, ReplayFilter())


# --- client logs ---------------------------------------------------------------------------


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("consumer.kafka", level, "", 0, message, None, None)


def test_repeats_are_dropped_within_the_window_and_counted_after():
    now = [0.0]
    repeats = RepeatFilter(window_seconds=30, clock=lambda: now[0])
    failed = "Connect to ipv4#127.0.0.1:{} failed (after {}ms in state CONNECT{})"
    assert repeats.filter(record(failed.format(1, 0, "")))
    for ms in range(1, 40):
        now[0] += 0.5
        suppressed = f", {ms} identical error(s) suppressed"
        assert not repeats.filter(record(failed.format(1, ms, suppressed)))
    assert repeats.filter(record("another message"))
    now[0] = 31.0
    line = record(failed.format(1, 3, ""))
    assert repeats.filter(line)
    assert line.repeated == 39


def test_levels_are_kept_apart():
    repeats = RepeatFilter(window_seconds=30, clock=lambda: 0.0)
    assert repeats.filter(record("same", logging.WARNING))
    assert repeats.filter(record("same", logging.ERROR))
    assert not repeats.filter(record("same", logging.ERROR))


# --- probes and build info -----------------------------------------------------------------


class IdleRunner:
    assigned_partitions = 0
    last_poll_monotonic = 0.0


def test_readiness_before_the_first_statistics_says_so():
    _, ready = probes(Settings(), IdleRunner(), Metrics())
    ok, detail = ready()
    assert not ok
    assert "no client statistics yet" in detail


def test_readiness_while_the_brokers_cannot_be_reached_says_so():
    startup = StartupState(waiting_for_brokers="cannot reach the brokers at b:9092")
    live, ready = probes(Settings(), IdleRunner(), Metrics(), startup)
    assert ready() == (False, "waiting for the brokers: cannot reach the brokers at b:9092")
    assert live()[0]


def test_build_info_names_the_full_client_version():
    metrics = Metrics()
    value = metrics.registry.get_sample_value(
        "loyalty_build_info",
        {
            "version": metrics.build._value["version"],
            "python": metrics.build._value["python"],
            "confluent_kafka": importlib.metadata.version("confluent-kafka"),
            "librdkafka": metrics.build._value["librdkafka"],
        },
    )
    assert value == 1.0
    assert importlib.metadata.version("confluent-kafka").count(".") >= 1


# --- terminal output -----------------------------------------------------------------------


def test_progress_on_a_terminal_is_a_bar_with_count_rate_and_eta():
    out = Console(file=io.StringIO(), force_terminal=True, width=120)
    with ProgressReport(out, "replay", 10) as progress:
        for _ in range(10):
            progress.advance(note="3 selected")
    shown = out.file.getvalue()
    assert "10/10" in shown and "/s" in shown and "ETA" in shown and "3 selected" in shown


def test_progress_elsewhere_is_plain_lines():
    out = Console(file=io.StringIO(), force_terminal=False, width=200)
    with ProgressReport(out, "replay", 4) as progress:
        progress.advance(2, note="1 selected")
    shown = out.file.getvalue()
    assert re.fullmatch(r"replay: 2/4, 1 selected, [\d,]+/s, about \d+s left\n", shown)


def test_a_table_right_aligns_its_counts():
    out = Console(file=io.StringIO(), width=80)
    out.print(table("outcomes", ("outcome", "records"), [("accepted", 3), ("rejected", 12)]))
    lines = out.file.getvalue().splitlines()
    assert lines[0].strip() == "outcomes"
    assert any(line.endswith("│       3 │") for line in lines)


# --- runbook -------------------------------------------------------------------------------


def test_every_alert_links_to_its_runbook_entry():
    root = Path(__file__).resolve().parents[2]
    alerts = (root / "deploy" / "prometheus" / "alerts.yml").read_text()
    runbook = (root / "docs" / "operating.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    names = set(re.findall(r"- alert: (\w+)", alerts))
    links = re.findall(r'runbook_url: "docs/operating\.md#([\w-]+)"', alerts)
    assert names and len(links) == alerts.count("- alert: ")
    assert {name.lower() for name in names} == set(links)
    assert set(links) <= headings
