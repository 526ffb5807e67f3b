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
from consumer.console import ProgressReport, how_to_run, table
from consumer.dead_letter_reader import (
    REPLAY_AT,
    REPLAY_ID,
    REPLAY_OF,
    DeadLetter,
    DeadLetterFilter,
    parse_time_argument,
)
from consumer.logs import RepeatFilter
from consumer.metrics import Metrics
from consumer.replay import _read_marker, replay_group
from consumer.service import StartupState, probes
from consumer.tail import Offset, TailOptions, TailUsageError, dead_letter_line

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


def letter(**overrides: str) -> DeadLetter:
    return DeadLetter.read(dead_letter_headers(**overrides), "dlq", 0, 7)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- reading dead letters ------------------------------------------------------------------


def test_the_service_s_headers_are_read_after_the_original_ones():
    read = letter()
    assert list(read.original_headers) == ORIGINAL
    assert read.reason == "signature_invalid" and read.provider == "mage_loyalty"
    assert (read.source_partition, read.source_offset) == (1, 42)
    assert read.name == "dlq/0@7"


def test_an_upstream_record_cannot_spoof_the_reason():
    spoofed = [
        ("Content-Type", b"application/json"),
        (dead_letter.REASON, b"invalid_json"),
        (dead_letter.CONNECT_TOPIC, b"elsewhere"),
        (dead_letter.PROVIDER, b"rivo"),
    ]
    headers = [*spoofed, *dead_letter_headers()[len(ORIGINAL) :]]
    read = DeadLetter.read(headers)
    assert read.reason == "signature_invalid"
    assert read.provider == "mage_loyalty"
    assert list(read.original_headers) == spoofed  # byte for byte, in order


def test_a_record_without_the_service_s_headers_has_no_facts():
    read = DeadLetter.read(ORIGINAL)
    assert read.facts == {} and list(read.original_headers) == ORIGINAL
    assert read.provider == "unknown"


# --- the filter ----------------------------------------------------------------------------


def test_an_empty_filter_selects_everything():
    assert DeadLetterFilter().matches(letter())
    assert DeadLetterFilter().matches(DeadLetter.read([]))


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (DeadLetterFilter(reasons=frozenset({"signature_invalid"})), True),
        (DeadLetterFilter(reasons=frozenset({"schema_violation"})), False),
        (DeadLetterFilter(providers=frozenset({"mage_loyalty", "rivo"})), True),
        (DeadLetterFilter(providers=frozenset({"rivo"})), False),
        (DeadLetterFilter(event_types=frozenset({"points.redeemed"})), True),
        (DeadLetterFilter(event_types=frozenset({"points.earned"})), False),
        (DeadLetterFilter(failed_after=at("2026-03-01T10:00:00")), True),  # inclusive
        (DeadLetterFilter(failed_after=at("2026-03-01T10:00:01")), False),
        (DeadLetterFilter(failed_before=at("2026-03-01T10:00:00")), False),  # exclusive
        (DeadLetterFilter(failed_before=at("2026-03-02T00:00:00")), True),
        (DeadLetterFilter(source_partitions=frozenset({1})), True),
        (DeadLetterFilter(source_partitions=frozenset({0, 2})), False),
        (DeadLetterFilter(source_offset_min=42, source_offset_max=42), True),
        (DeadLetterFilter(source_offset_min=43), False),
        (DeadLetterFilter(source_offset_max=41), False),
    ],
)
def test_each_criterion_selects_or_not(selection, selected):
    assert selection.matches(letter()) is selected


def test_unknown_provider_is_selected_by_the_name_unknown():
    without = DeadLetter.read([(dead_letter.CONNECT_TOPIC, b"raw"), (dead_letter.REASON, b"x")])
    assert DeadLetterFilter(providers=frozenset({"unknown"})).matches(without)
    assert not DeadLetterFilter(providers=frozenset({"rivo"})).matches(without)


def test_a_time_range_never_selects_a_dead_letter_without_a_time():
    assert not DeadLetterFilter(failed_after=at("2020-01-01T00:00:00")).matches(DeadLetter.read([]))


@pytest.mark.parametrize(
    ("criteria", "says"),
    [
        ({"reasons": frozenset({"signature_invalidd"})}, "unknown reason signature_invalidd"),
        ({"providers": frozenset({"Mage"})}, "known: mage_loyalty, rivo, unknown"),
        (
            {"failed_after": at("2026-03-02T00:00:00"), "failed_before": at("2026-03-01T00:00:00")},
            "--failed-after must be before",
        ),
        ({"source_offset_min": 10, "source_offset_max": 9}, "--source-offset-from"),
        ({"source_partitions": frozenset({-1})}, "negative"),
    ],
)
def test_a_filter_that_can_select_nothing_is_refused(criteria, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        DeadLetterFilter(**criteria)


def test_a_time_argument_that_is_not_a_time_says_what_is_expected():
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time_argument("yesterday")
    assert parse_time_argument("2026-03-01T10:00:00") == at("2026-03-01T10:00:00")


# --- replay --------------------------------------------------------------------------------


def test_replayed_headers_are_the_original_ones_then_the_lineage():
    replayed_at = at("2026-03-02T08:00:00")
    headers = letter().headers_for_replay("g-replay-x", replayed_at)
    assert headers[: len(ORIGINAL)] == ORIGINAL
    assert headers[len(ORIGINAL) :] == [
        (REPLAY_OF, b"dlq/0@7"),
        (REPLAY_AT, b"2026-03-02T08:00:00.000Z"),
        (REPLAY_ID, b"g-replay-x"),
    ]


def test_a_second_replay_replaces_the_lineage_of_the_first():
    once = letter().headers_for_replay("a", at("2026-03-02T08:00:00"))
    failed_again = DeadLetter.read([*once, *dead_letter_headers()[len(ORIGINAL) :]], "dlq", 0, 9)
    assert failed_again.replay_of == "dlq/0@7"
    again = failed_again.headers_for_replay("b", datetime.now(UTC))
    assert [name for name, _ in again].count(REPLAY_OF) == 1
    assert dict(again)[REPLAY_OF] == b"dlq/0@9"
    assert again[: len(ORIGINAL)] == ORIGINAL


def test_the_group_follows_the_filter_not_its_spelling():
    settings = Settings(group_id="loyalty-consumer")
    a = DeadLetterFilter(reasons=frozenset({"signature_invalid", "schema_violation"}))
    b = DeadLetterFilter(reasons=frozenset({"schema_violation", "signature_invalid"}))
    assert replay_group(settings, a) == replay_group(settings, b)
    assert replay_group(settings, a).startswith("loyalty-consumer-replay-")
    assert replay_group(settings, a) != replay_group(settings, DeadLetterFilter())


def test_the_resume_marker_is_the_union_of_each_partition_s_share():
    from confluent_kafka import TopicPartition

    committed = [
        TopicPartition("dlq", 0, 5, metadata="raw:0=10,2=30"),
        TopicPartition("dlq", 1, 8, metadata="raw:1=20"),
        TopicPartition("dlq", 2, 1, metadata="someone else's"),
    ]
    assert _read_marker(committed) == {0: 10, 1: 20, 2: 30}


# --- tail ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start"),
    [("beginning", 5), ("end", 100), ("50", 50), ("2", 5), ("500", 100), ("-3", 97)],
)
def test_an_offset_names_where_each_partition_starts(text, start):
    assert Offset.parse(text).start(low=5, high=100) == start


def test_by_default_the_last_ten_of_each_partition():
    assert Offset().start(low=0, high=100) == 90
    assert Offset().start(low=95, high=100) == 95


def test_an_offset_that_is_no_offset_is_refused():
    with pytest.raises(TailUsageError, match="a number, beginning, end, or -N"):
        Offset.parse("latest")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_records": 0}, "--max must be at least 1"),
        ({"since": at("2026-03-02T00:00:00"), "until": at("2026-03-01T00:00:00")}, "--since"),
        ({"until": at("2026-03-01T00:00:00"), "follow": True}, "--until and --follow"),
        ({"since": at("2026-03-01T00:00:00"), "offset": Offset(beginning=True)}, "--since"),
        ({"offset": Offset(end=True)}, "add --follow"),
        ({"selection": DeadLetterFilter(reasons=frozenset({"invalid_json"}))}, "dead letters"),
        ({"raw_value": True}, "dead letters"),
        ({"output": "{nope}"}, "no field 'nope'"),
        ({"output": "plain"}, "json, value, pretty or a template"),
        ({"output": "{offset"}, "--format"),
    ],
)
def test_contradictory_tail_options_are_refused(options, says):
    with pytest.raises(TailUsageError, match=re.escape(says)):
        TailOptions(**options)


def test_a_template_may_name_any_field_of_the_line():
    TailOptions(dead_letters=True, output="{partition}@{offset} {reason} {source[offset]}")
    TailOptions(output="{record[event_id]} {key}")


def test_a_dead_letter_line_shows_an_earlier_replay():
    once = letter().headers_for_replay("a", at("2026-03-02T08:00:00"))
    again = DeadLetter.read([*once, *dead_letter_headers()[len(ORIGINAL) :]], "dlq", 1, 3)
    line = dead_letter_line(again, raw_value=False)
    assert line["replay_of"] == "dlq/0@7"
    assert line["reason"] == "signature_invalid"
    assert line["source"] == {"topic": "raw", "partition": 1, "offset": 42}
    assert dead_letter_line(letter(), raw_value=False)["replay_of"] is None


def test_hints_name_a_command_that_works_in_a_fresh_shell(monkeypatch, tmp_path):
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").touch()
    (venv / "loyalty-consumer").touch()
    monkeypatch.setattr("sys.executable", str(venv / "python"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv is not activated
    assert how_to_run() == ".venv/bin/loyalty-consumer"
    assert (
        how_to_run("consumer.dev.local_broker") == ".venv/bin/python -m consumer.dev.local_broker"
    )
    monkeypatch.setenv("PATH", f"{venv}:/usr/bin")
    (venv / "loyalty-consumer").chmod(0o755)
    assert how_to_run() == "loyalty-consumer"


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
