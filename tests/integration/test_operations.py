"""The operators' commands and start-up behaviour on the real broker: replay (filters,
dry run, resume, never doubled), tail, the first run, and errors a person can act on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest
from confluent_kafka import Producer

from consumer import dead_letter
from consumer.__main__ import main
from consumer.config import Settings
from consumer.dead_letter_reader import REPLAY_ID, REPLAY_OF, parse_time_argument
from consumer.dead_letter_reader import DeadLetterFilter as ReplayFilter
from consumer.dev.samples import LOCAL_SECRETS, redemption_payload, signed
from consumer.providers import mage_loyalty
from consumer.replay import ReplayOptions, ReplayResult, run_replay
from consumer.tail import Offset, TailOptions, run_tail
from tests.helpers import processes
from tests.integration.service_harness import (
    end_offsets,
    everything_committed,
    produce_all,
    read_all,
    service_settings,
    start_service,
    wait_until,
)

MAGE = mage_loyalty.PROVIDER
SECRET = LOCAL_SECRETS[MAGE.name]


def total_end(bootstrap: str, topic: str, partitions: int) -> int:
    return sum(end_offsets(bootstrap, topic, partitions).values())


def run_to_the_end(bootstrap, settings, partitions=3):
    service = start_service(settings)
    wait_until(
        lambda: everything_committed(bootstrap, settings.group_id, settings.raw_topic, partitions),
        "every raw offset committed",
    )
    service.stop()
    return service


def tail_lines(capsys, settings: Settings, from_beginning=False, **options) -> list[dict]:
    capsys.readouterr()
    if from_beginning:
        options["offset"] = Offset(beginning=True)
    for criterion in ("providers", "reasons"):
        if criterion in options:
            options["selection"] = ReplayFilter(**{criterion: frozenset(options.pop(criterion))})
    assert run_tail(settings, TailOptions(**options)) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_wrong_secret_s_rejections_are_accepted_after_replay(
    kafka_bootstrap_servers, new_topic, group_id, capsys
):
    bootstrap = kafka_bootstrap_servers
    raw, clean, dlq = new_topic("raw"), new_topic("clean"), new_topic("dlq", 2)
    body = redemption_payload(MAGE.name)
    redemptions = 12
    records = [(body, signed(MAGE, SECRET, body, MAGE.redemption_event))] * redemptions
    records += [(b'{"truncated', [])] * 3
    produce_all(bootstrap, raw, records)

    # The provider rotated its secret before the service's settings caught up.
    stale = service_settings(bootstrap, raw, clean, dlq, group_id, secrets={MAGE.name: "old"})
    first = run_to_the_end(bootstrap, stale)
    assert (
        first.value("loyalty_dead_letter_records_total", reason="signature_invalid") == redemptions
    )
    assert first.value("loyalty_dead_letter_records_total", reason="invalid_json") == 3
    assert first.outcome_total("accepted") == 0

    replay_settings = Settings(
        bootstrap_servers=bootstrap, raw_topic=raw, dead_letter_topic=dlq, group_id=group_id
    )
    signature = ReplayFilter(reasons=frozenset({"signature_invalid"}))
    raw_end = total_end(bootstrap, raw, 3)

    dry = ReplayResult()
    assert run_replay(replay_settings, ReplayOptions(signature, dry_run=True), result=dry) == 0
    assert dry.read == redemptions + 3
    assert dict(dry.selected) == {("signature_invalid", MAGE.name): redemptions}
    assert dry.replayed == 0
    assert total_end(bootstrap, raw, 3) == raw_end, "a dry run produced"
    shown = capsys.readouterr().out
    assert "signature_invalid" in shown and str(redemptions) in shown

    done = ReplayResult()
    assert run_replay(replay_settings, ReplayOptions(signature), result=done) == 0
    assert done.replayed == redemptions
    assert total_end(bootstrap, raw, 3) == raw_end + redemptions

    again = ReplayResult()
    assert run_replay(replay_settings, ReplayOptions(signature), result=again) == 0
    assert again.read == 0 and again.replayed == 0
    assert total_end(bootstrap, raw, 3) == raw_end + redemptions, "replayed twice"

    replayed = [m for m in read_all(bootstrap, raw, raw_end + redemptions) if m.headers()]
    lineage = [dict(m.headers()) for m in replayed if REPLAY_OF in dict(m.headers())]
    assert len({h[REPLAY_OF] for h in lineage}) == redemptions
    assert all(not any(n.startswith("loyalty.error.") for n in h) for h in lineage)
    assert {h[REPLAY_ID] for h in lineage} == {f"{group_id}-replay-{signature.digest()}".encode()}

    # The secret is fixed; the same group goes on from where it stopped.
    fixed = service_settings(bootstrap, raw, clean, dlq, group_id, secrets={MAGE.name: SECRET})
    second = run_to_the_end(bootstrap, fixed)
    assert second.consumed() == redemptions
    assert second.outcome_total("accepted") == redemptions
    assert second.outcome_total("rejected") == 0

    clean_settings = Settings(bootstrap_servers=bootstrap, clean_topic=clean)
    lines = tail_lines(capsys, clean_settings, from_beginning=True)
    assert len(lines) == redemptions
    assert {line["record"]["provider"] for line in lines} == {MAGE.name}
    assert all(line["record"]["event_id"] == line["event_id"] for line in lines)
    assert len(tail_lines(capsys, clean_settings, from_beginning=True, max_records=5)) == 5
    assert tail_lines(capsys, clean_settings, from_beginning=True, providers={"rivo"}) == []


def hand_made_dead_letters(bootstrap: str, dlq: str, count: int) -> None:
    """Dead letters as the service writes them, spread over reasons, providers, times
    and source coordinates: record i has source partition i % 3 and offset i."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        reason, provider = [
            ("signature_invalid", "mage_loyalty"),
            ("signature_invalid", "rivo"),
            ("schema_violation", "rivo"),
            ("invalid_json", None),
        ][i % 4]
        facts = {
            dead_letter.CONNECT_TOPIC: "raw",
            dead_letter.CONNECT_PARTITION: str(i % 3),
            dead_letter.CONNECT_OFFSET: str(i),
            dead_letter.CONNECT_EXCEPTION_MESSAGE: f"record {i}",
            dead_letter.REASON: reason,
            dead_letter.FAILED_AT: f"2026-03-01T10:{i:02d}:00.000Z",
        }
        if provider:
            facts[dead_letter.PROVIDER] = provider
        headers = [("Content-Type", b"application/json")]
        headers += [(name, value.encode()) for name, value in facts.items()]
        producer.produce(dlq, key=f"k{i}".encode(), value=b'{"n": %d}' % i, headers=headers)
    assert producer.flush(30) == 0


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (ReplayFilter(), 24),
        (ReplayFilter(reasons=frozenset({"signature_invalid"})), 12),
        (ReplayFilter(providers=frozenset({"rivo"})), 12),
        (ReplayFilter(providers=frozenset({"unknown"})), 6),
        (ReplayFilter(event_types=frozenset({"points.redeemed"})), 0),
        (ReplayFilter(source_partitions=frozenset({0})), 8),
        (ReplayFilter(source_offset_min=10, source_offset_max=19), 10),
    ],
)
def test_dry_run_counts_what_each_filter_selects(
    kafka_bootstrap_servers, new_topic, group_id, selection, expected
):
    dlq, raw = new_topic("dlq", 2), new_topic("raw", 1)
    hand_made_dead_letters(kafka_bootstrap_servers, dlq, 24)
    settings = Settings(
        bootstrap_servers=kafka_bootstrap_servers,
        raw_topic=raw,
        dead_letter_topic=dlq,
        group_id=group_id,
    )
    result = ReplayResult()
    assert run_replay(settings, ReplayOptions(selection, dry_run=True), result=result) == 0
    assert result.read == 24
    assert result.selected_total == expected


def test_a_failed_at_range_selects_by_time(kafka_bootstrap_servers, new_topic, group_id):
    dlq, raw = new_topic("dlq", 1), new_topic("raw", 1)
    hand_made_dead_letters(kafka_bootstrap_servers, dlq, 24)
    settings = Settings(
        bootstrap_servers=kafka_bootstrap_servers,
        raw_topic=raw,
        dead_letter_topic=dlq,
        group_id=group_id,
    )
    window = ReplayFilter(
        failed_after=parse_time_argument("2026-03-01T10:05:00"),
        failed_before=parse_time_argument("2026-03-01T10:08:00Z"),
    )
    result = ReplayResult()
    assert run_replay(settings, ReplayOptions(window, dry_run=True), result=result) == 0
    assert result.selected_total == 3  # minutes 5, 6 and 7


def cli_env(bootstrap: str, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "LOYALTY_"))}
    # `run` verifies every provider: a secret each.
    secrets = {f"{name.upper()}_WEBHOOK_SECRET": value for name, value in LOCAL_SECRETS.items()}
    return {**env, **secrets, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **variables}


def test_an_interrupted_replay_continues_where_it_stopped_and_never_doubles(
    kafka_bootstrap_servers, new_topic, group_id, tmp_path
):
    bootstrap = kafka_bootstrap_servers
    dlq, raw = new_topic("dlq", 2), new_topic("raw", 3)
    count = 40
    hand_made_dead_letters(bootstrap, dlq, count)
    env = cli_env(
        bootstrap, LOYALTY_RAW_TOPIC=raw, LOYALTY_DLQ_TOPIC=dlq, LOYALTY_GROUP_ID=group_id
    )
    command = [sys.executable, "-m", "consumer", "replay", "--rate", "10"]

    first = processes.start(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: total_end(bootstrap, raw, 3) >= 5, "some records replayed", 60)
    finally:
        first.send_signal(signal.SIGINT)
        try:
            _, err = first.communicate(timeout=60)
        finally:
            processes.kill(first)
    assert first.returncode == 130, err.decode()
    assert b"run the same command again" in err
    replayed_first = total_end(bootstrap, raw, 3)
    assert 0 < replayed_first < count

    second = processes.run([*command[:-2], "--rate", "1000"], env=env, cwd=tmp_path, timeout=120)
    assert second.returncode == 0, second.stderr.decode()
    assert f"replayed {count - replayed_first} ".encode() in second.stdout

    messages = read_all(bootstrap, raw, count)
    sources = [dict(m.headers())[REPLAY_OF] for m in messages]
    assert len(messages) == count
    assert len(set(sources)) == count, "a dead letter was replayed twice"
    # The original key and value travel unchanged.
    assert {m.key() for m in messages} == {f"k{i}".encode() for i in range(count)}

    third = processes.run(command, env=env, cwd=tmp_path, timeout=120)
    assert third.returncode == 0
    assert total_end(bootstrap, raw, 3) == count


def test_tail_prints_dead_letters_with_their_reasons(kafka_bootstrap_servers, new_topic, capsys):
    dlq = new_topic("dlq", 1)
    hand_made_dead_letters(kafka_bootstrap_servers, dlq, 8)
    settings = Settings(bootstrap_servers=kafka_bootstrap_servers, dead_letter_topic=dlq)
    lines = tail_lines(capsys, settings, dead_letters=True, from_beginning=True)
    assert len(lines) == 8
    first = lines[0]
    assert first["reason"] == "signature_invalid" and first["provider"] == "mage_loyalty"
    assert first["source"] == {"topic": "raw", "partition": 0, "offset": 0}
    assert first["headers"] == [["Content-Type", "application/json"]]
    assert "value" not in first

    invalid = tail_lines(
        capsys,
        settings,
        dead_letters=True,
        from_beginning=True,
        reasons={"invalid_json"},
        raw_value=True,
    )
    assert [line["value"] for line in invalid] == ['{"n": 3}', '{"n": 7}']
    rivo = tail_lines(capsys, settings, dead_letters=True, providers={"rivo"})
    assert len(rivo) == 4


def test_a_metrics_port_in_use_is_one_line_naming_the_variable(
    kafka_bootstrap_servers, monkeypatch, capsys
):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers)
        monkeypatch.setenv("LOYALTY_METRICS_PORT", str(taken.getsockname()[1]))
        for name, secret in LOCAL_SECRETS.items():
            monkeypatch.setenv(f"{name.upper()}_WEBHOOK_SECRET", secret)
        # The service listens on every address, so the taken loopback port conflicts.
        assert main(["run"]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err.startswith("loyalty-consumer: LOYALTY_METRICS_PORT=")
    assert "cannot listen" in err and len(err.splitlines()) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_brokers_are_one_clear_line_not_a_flood(tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"
    env = cli_env(nowhere, LOYALTY_METRICS_PORT="0")
    service = processes.start(
        [sys.executable, "-m", "consumer", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(9)  # the first check times out after 5 s, then retries with back-off
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=30)
    finally:
        processes.kill(service)
    lines = [orjson.loads(line) for line in err.splitlines()]
    messages = [line["message"] for line in lines]
    assert service.returncode == 0
    assert messages[0] == "starting"
    assert messages.count(f"cannot reach the brokers at {nowhere}") == 1
    # librdkafka's connection failures, collapsed: a few lines, not dozens a second.
    assert len(lines) < 12, messages


def test_only_the_documented_paths_answer(kafka_bootstrap_servers, new_topic, group_id):
    raw = new_topic("raw", 1)
    settings = service_settings(
        kafka_bootstrap_servers, raw, raw, raw, group_id, statistics_interval_ms=600_000
    )
    service = start_service(settings, serve=True)
    base = f"http://127.0.0.1:{service.http_port}"
    try:
        index = urllib.request.urlopen(f"{base}/").read().decode()
        assert "/metrics" in index and "/readyz" in index
        assert b"loyalty_build_info" in urllib.request.urlopen(f"{base}/metrics").read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/favicon.ico")
        assert missing.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz")
        assert not_ready.value.code == 503
        assert b"no client statistics yet" in not_ready.value.read()
    finally:
        service.stop()


def test_the_first_run_shows_outcomes_and_ends_with_a_summary(
    kafka_bootstrap_servers, new_topic, tmp_path
):
    prefix = new_topic("local", 1)  # a unique name; the job creates its own topics
    env = cli_env(
        kafka_bootstrap_servers,
        LOYALTY_RAW_TOPIC=f"{prefix}.raw",
        LOYALTY_CLEAN_TOPIC=f"{prefix}.clean",
        LOYALTY_DLQ_TOPIC=f"{prefix}.dlq",
        LOYALTY_METRICS_PORT="0",
    )
    done = processes.run(
        [sys.executable, "-m", "consumer", "local", "--exit-when-done"],
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    outcome_lines = [
        line for line in out.splitlines() if line.startswith(("accepted", "ignored", "rejected"))
    ]
    assert len(outcome_lines) == 10
    assert sum(line.startswith("rejected") for line in outcome_lines) == 5
    assert any("signature_invalid" in line for line in outcome_lines)
    summary = out[out.index("outcomes") :]
    assert "total" in summary and "10" in summary
    assert "loyalty-consumer tail" in summary and "loyalty-consumer replay" in summary
    # The service's JSON logs went to the log file, not between the lines.
    assert '"level"' not in out and '"level"' not in done.stderr.decode()
    assert '"message":"starting"' in (tmp_path / "loyalty-consumer-local.log").read_text()


# --- replay: idempotent per webhook, and refused when it cannot work ---------------------


def test_a_replay_killed_between_delivery_and_commit_never_doubles_a_webhook(
    kafka_bootstrap_servers, new_topic, group_id, tmp_path
):
    """SIGKILL gives the replay no chance to commit what it produced: the next run finds
    those records on the raw topic (their loyalty.replay.of) and skips them."""
    bootstrap = kafka_bootstrap_servers
    dlq, raw = new_topic("dlq", 2), new_topic("raw", 3)
    count = 60
    hand_made_dead_letters(bootstrap, dlq, count)
    env = cli_env(
        bootstrap, LOYALTY_RAW_TOPIC=raw, LOYALTY_DLQ_TOPIC=dlq, LOYALTY_GROUP_ID=group_id
    )
    # At 20 a second a batch is 20 records, committed after its flush: a kill lands
    # between a batch's deliveries and its commit most of the time.
    first = processes.start(
        [sys.executable, "-m", "consumer", "replay", "--rate", "20"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: total_end(bootstrap, raw, 3) >= 30, "half replayed", 60)
    finally:
        processes.kill(first)
    replayed_first = total_end(bootstrap, raw, 3)
    assert 0 < replayed_first < count

    second = processes.run(
        [sys.executable, "-m", "consumer", "replay"], env=env, cwd=tmp_path, timeout=120
    )
    assert second.returncode == 0, second.stderr.decode()
    messages = read_all(bootstrap, raw, count)
    sources = [dict(m.headers())[REPLAY_OF] for m in messages]
    assert len(set(sources)) == count
    assert len(sources) == count, "a webhook was replayed twice"


def test_replay_into_a_missing_raw_topic_is_refused_up_front(
    kafka_bootstrap_servers, new_topic, group_id, capsys
):
    dlq = new_topic("dlq", 1)
    hand_made_dead_letters(kafka_bootstrap_servers, dlq, 4)
    settings = Settings(
        bootstrap_servers=kafka_bootstrap_servers,
        raw_topic=f"missing-{group_id}",
        dead_letter_topic=dlq,
        group_id=group_id,
    )
    for dry_run in (True, False):
        assert run_replay(settings, ReplayOptions(dry_run=dry_run)) == 1
        err = capsys.readouterr().err
        assert f"the topic missing-{group_id} does not exist" in err
        assert "LOYALTY_RAW_TOPIC" in err and "would be replayed" not in err


# --- tail as kcat and rpk users expect it ----------------------------------------------


def tail_cli(capsys, bootstrap: str, dlq: str, *args: str) -> tuple[int, list[str], str]:
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        mp.setenv("LOYALTY_DLQ_TOPIC", dlq)
        try:
            status = main(["tail", *args])
        except SystemExit as exit_info:  # usage errors leave through argparse
            status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def test_tail_seeks_by_partition_offset_time_and_key_and_formats(
    kafka_bootstrap_servers, new_topic, capsys
):
    bootstrap = kafka_bootstrap_servers
    dlq = new_topic("dlq", 2)
    producer = Producer({"bootstrap.servers": bootstrap})
    # 10 records per partition, a minute apart from 2026-03-01T10:00Z, keys k0..k19.
    base_ms = 1_772_359_200_000
    for i in range(20):
        headers = [
            (dead_letter.CONNECT_TOPIC, b"raw"),
            (dead_letter.CONNECT_PARTITION, b"0"),
            (dead_letter.CONNECT_OFFSET, str(i).encode()),
            (dead_letter.REASON, b"invalid_json"),
        ]
        producer.produce(
            dlq,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            headers=headers,
            partition=i % 2,
            timestamp=base_ms + (i // 2) * 60_000,
        )
    assert producer.flush(30) == 0

    def offsets(*args: str) -> list[str]:
        status, lines, err = tail_cli(
            capsys, bootstrap, dlq, "dead-letter", "--format", "{partition}@{offset}", *args
        )
        assert status == 0, err
        return lines

    assert offsets("--partition", "1", "--offset", "8") == ["1@8", "1@9"]
    assert offsets("--partition", "0", "--offset", "-3") == ["0@7", "0@8", "0@9"]
    assert len(offsets()) == 20  # the last 10 of each partition
    assert len(offsets("--offset", "beginning", "--max", "3")) == 3
    window = offsets("--since", "2026-03-01T10:02:00Z", "--until", "2026-03-01T10:04:00Z")
    assert sorted(window) == ["0@2", "0@3", "1@2", "1@3"]
    assert offsets("--key", "k5", "--from-beginning") == ["1@2"]
    _, values, _ = tail_cli(
        capsys, bootstrap, dlq, "dead-letter", "-p", "0", "-o", "-2", "--format", "value"
    )
    assert values == ["v16", "v18"]
    _, pretty, _ = tail_cli(
        capsys, bootstrap, dlq, "dead-letter", "-p", "0", "-o", "-1", "--format", "pretty"
    )
    assert orjson.loads("\n".join(pretty))["key"] == "k18" and len(pretty) > 5
    status, lines, err = tail_cli(capsys, bootstrap, dlq, "dead-letter", "--partition", "7")
    assert status == 2 and lines == []
    assert f"--partition 7: {dlq} has partitions 0..1" in err


def test_tail_shows_that_a_dead_letter_was_a_replay_that_failed_again(
    kafka_bootstrap_servers, new_topic, group_id, capsys
):
    bootstrap = kafka_bootstrap_servers
    raw, clean, dlq = new_topic("raw"), new_topic("clean"), new_topic("dlq", 1)
    hand_made_dead_letters(bootstrap, dlq, 4)
    settings = Settings(
        bootstrap_servers=bootstrap, raw_topic=raw, dead_letter_topic=dlq, group_id=group_id
    )
    invalid = ReplayFilter(reasons=frozenset({"invalid_json"}))
    assert run_replay(settings, ReplayOptions(invalid)) == 0
    # The service rejects the replayed record again.
    run_to_the_end(bootstrap, service_settings(bootstrap, raw, clean, dlq, group_id + "-svc"))
    lines = tail_lines(capsys, settings, dead_letters=True, from_beginning=True)
    again = [line for line in lines if line["replay_of"]]
    assert [line["replay_of"] for line in again] == [f"{dlq}/0@3"]
    assert again[0]["reason"] == "unknown_provider"  # {"n": 3} is JSON, from no provider


# --- status --------------------------------------------------------------------------------


def test_status_shows_members_assignment_and_lag_per_partition(
    kafka_bootstrap_servers, new_topic, group_id, capsys
):
    from consumer.status import group_status

    bootstrap = kafka_bootstrap_servers
    raw, clean, dlq = new_topic("raw", 3), new_topic("clean"), new_topic("dlq")
    body = redemption_payload(MAGE.name)
    produce_all(bootstrap, raw, [(body, signed(MAGE, SECRET, body, MAGE.redemption_event))] * 9)
    settings = service_settings(bootstrap, raw, clean, dlq, group_id, secrets={MAGE.name: SECRET})

    before = group_status(settings, group_id)
    assert before.members == 0 and before.lag == 9
    assert all(p.committed is None for p in before.partitions)

    service = start_service(settings)
    try:
        wait_until(
            lambda: everything_committed(bootstrap, group_id, raw, 3), "every raw offset committed"
        )
        running = group_status(settings, group_id)
        assert running.state == "stable" and running.members == 1
        assert running.lag == 0
        assert {p.partition for p in running.partitions} == {0, 1, 2}
        assert all(p.member and p.lag == 0 for p in running.partitions)
        assert sum(p.committed or 0 for p in running.partitions) == 9
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            for name, value in {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "LOYALTY_RAW_TOPIC": raw,
                "LOYALTY_GROUP_ID": group_id,
            }.items():
                mp.setenv(name, value)
            assert main(["status"]) == 0
            shown = capsys.readouterr().out
            assert main(["status", "--json"]) == 0
            as_json = orjson.loads(capsys.readouterr().out)
    finally:
        service.stop()
    assert f"group {group_id}: stable, 1 member(s)" in shown and "lag 0" in shown
    assert as_json["lag"] == 0 and len(as_json["partitions"]) == 3


# --- the first run and the local broker: one line, what to do ----------------------------


def run_cli(tmp_path, env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return processes.run(
        [sys.executable, "-m", *args], env=env, cwd=tmp_path, timeout=timeout, text=True
    )


def test_local_uses_a_group_of_its_own_and_its_hints_work_in_a_fresh_shell(
    kafka_bootstrap_servers, new_topic, tmp_path
):
    prefix = new_topic("local", 1)
    env = cli_env(
        kafka_bootstrap_servers,
        LOYALTY_RAW_TOPIC=f"{prefix}.raw",
        LOYALTY_CLEAN_TOPIC=f"{prefix}.clean",
        LOYALTY_DLQ_TOPIC=f"{prefix}.dlq",
        LOYALTY_METRICS_PORT="0",
    )
    done = run_cli(tmp_path, env, "consumer", "local", "--exit-when-done", timeout=180)
    assert done.returncode == 0, done.stderr
    assert "consumer group loyalty-consumer-local-" in done.stdout
    summary = done.stdout[done.stdout.index("outcomes") :]
    hints = [line.strip() for line in summary.splitlines() if " tail " in line]
    assert hints
    # Pasted into a shell whose PATH knows nothing of the virtualenv.
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for hint in hints:
        command = hint.split("#")[0]
        shell = processes.run(["bash", "-c", command], env=fresh, cwd=tmp_path, timeout=120)
        assert shell.returncode == 0, (command, shell.stderr.decode())
        assert shell.stdout.strip(), command


def test_local_against_unreachable_brokers_says_so_within_seconds(tmp_path):
    env = cli_env(f"127.0.0.1:{free_port()}", LOYALTY_METRICS_PORT="0")
    started = time.monotonic()
    done = run_cli(tmp_path, env, "consumer", "local", timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert err[0].startswith("loyalty-consumer local: cannot reach the brokers at 127.0.0.1:")
    assert "unset KAFKA_BOOTSTRAP_SERVERS" in err[-1] and len(err) == 2
    assert "Traceback" not in done.stderr and "outcomes" not in done.stdout
    assert took < 45, "not said within seconds"  # a bound for a hang, not a speed claim


def test_local_refuses_a_metrics_port_in_use_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        env = cli_env("", LOYALTY_METRICS_PORT=str(taken.getsockname()[1]))
        del env["KAFKA_BOOTSTRAP_SERVERS"]  # would start a broker, were the port free
        done = run_cli(tmp_path, env, "consumer", "local")
    assert done.returncode == 2
    assert done.stderr.startswith("loyalty-consumer: LOYALTY_METRICS_PORT=")
    assert "starting a local" not in done.stdout and "Traceback" not in done.stderr


def test_local_without_java_or_maven_says_what_to_install(tmp_path):
    env = cli_env("", LOYALTY_METRICS_PORT="0", PATH="/nonexistent")
    del env["KAFKA_BOOTSTRAP_SERVERS"]
    env.pop("JAVA_HOME", None)
    no_java = run_cli(tmp_path, env, "consumer", "local")
    assert no_java.returncode == 1
    assert "Java 17+ is needed to run the local Kafka broker: install" in no_java.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in no_java.stderr and "Traceback" not in no_java.stderr
    assert len(no_java.stderr.strip().splitlines()) == 2

    no_maven = run_cli(
        tmp_path, {**env, "LOYALTY_KAFKA_CACHE": str(tmp_path / "empty")}, "consumer", "local"
    )
    assert no_maven.returncode == 1
    assert "Maven (mvn) is not on PATH" in no_maven.stderr
    assert "Traceback" not in no_maven.stderr


def test_ctrl_c_while_the_local_broker_starts_is_one_line(tmp_path):
    env = cli_env("", LOYALTY_METRICS_PORT="0")
    del env["KAFKA_BOOTSTRAP_SERVERS"]
    local = processes.start(
        [sys.executable, "-m", "consumer", "local"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "starting a local Apache Kafka broker" not in line:
            line = local.stdout.readline()
            assert line, "local ended before starting the broker"
        local.send_signal(signal.SIGINT)
        out, err = local.communicate(timeout=60)
    finally:
        processes.kill(local)
    assert local.returncode == 130, err
    assert err.strip() == "loyalty-consumer local: interrupted"
    assert "outcomes" not in out


def test_the_local_broker_on_a_taken_port_says_so_before_starting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(
            tmp_path, cli_env(""), "consumer.dev.local_broker", "run", "--port", str(port)
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"local broker: port {port} is taken (Address already in use; another broker?): "
        "stop what listens there, or choose another port with --port"
    )
    assert "kafka broker ready" not in done.stderr


@pytest.mark.parametrize(
    "args", [["tail"], ["tail", "dead-letter"], ["status"], ["replay", "--dry-run"]]
)
def test_operator_commands_against_unreachable_brokers_are_one_line(args, tmp_path):
    nowhere = f"127.0.0.1:{free_port()}"
    done = run_cli(tmp_path, cli_env(nowhere), "consumer", *args, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        f"loyalty-consumer {args[0]}: cannot reach the brokers at {nowhere}"
    )
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
