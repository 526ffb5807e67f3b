"""The runbook (docs/operating.md), followed: every `loyalty-consumer` command of every
alert's entry runs against the real broker, on topics holding what the service wrote
for the sample webhooks, and does what the entry expects of it (exit status 0, and
output that answers the entry's question)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from consumer.__main__ import main
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from tests.integration.service_harness import (
    everything_committed,
    produce_all,
    service_settings,
    start_service,
    wait_until,
)

OPERATING = Path(__file__).resolve().parents[2] / "docs" / "operating.md"
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def runbook_commands() -> dict[str, list[str]]:
    """Alert name -> the shell commands in its entry's code blocks."""
    text = OPERATING.read_text()
    runbook = text[text.index("## Runbook") :]
    entries = re.split(r"^### ", runbook, flags=re.MULTILINE)[1:]
    commands = {}
    for entry in entries:
        name, _, body = entry.partition("\n")
        blocks = re.findall(r"```sh\n(.*?)```", body, flags=re.DOTALL)
        commands[name.strip()] = [
            line.split("  #")[0].strip() for block in blocks for line in block.splitlines()
        ]
    return commands


def test_every_alert_has_a_runbook_entry_with_something_to_run():
    alerts = set(re.findall(r"- alert: (\w+)", ALERTS.read_text()))
    commands = runbook_commands()
    assert alerts and set(commands) == alerts
    assert all(commands[name] for name in alerts)


def test_a_stalled_loop_is_diagnosed_with_what_the_image_has():
    stalled = runbook_commands()["LoyaltyConsumerLoopStalled"]
    assert stalled and all("kill -USR1" in command for command in stalled)
    assert "py-spy" not in OPERATING.read_text()


@pytest.fixture
def written_by_the_service(kafka_bootstrap_servers, new_topic, group_id, monkeypatch):
    """The sample webhooks through the service, its group stopped: clean records,
    dead letters of every kind, committed offsets. The commands' environment set."""
    bootstrap = kafka_bootstrap_servers
    raw, clean, dlq = new_topic("raw"), new_topic("clean"), new_topic("dlq")
    samples = sample_webhooks()
    produce_all(bootstrap, raw, [(sample.value, sample.headers) for sample in samples])
    settings = service_settings(bootstrap, raw, clean, dlq, group_id, secrets=LOCAL_SECRETS)
    service = start_service(settings)
    wait_until(lambda: everything_committed(bootstrap, group_id, raw, 3), "samples committed")
    service.stop()
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LOYALTY_RAW_TOPIC": raw,
        "LOYALTY_CLEAN_TOPIC": clean,
        "LOYALTY_DLQ_TOPIC": dlq,
        "LOYALTY_GROUP_ID": group_id,
    }.items():
        monkeypatch.setenv(name, value)
    return settings


# The rejection reasons of the sample webhooks the fixture runs through the service.
SAMPLE_REASONS = {sample.expected for sample in sample_webhooks()}


def test_each_runbook_command_runs_and_answers(written_by_the_service, capsys):
    ran = 0
    replayed = 0  # put back on the raw topic by the entries so far: the lag to expect
    for alert, commands in runbook_commands().items():
        for command in commands:
            words = shlex.split(command)
            if words[0] != "loyalty-consumer":
                continue  # kill/kubectl: for a running pod, see the test above
            capsys.readouterr()
            status = main(words[1:])
            out = capsys.readouterr().out
            assert status == 0, (alert, command)
            if words[1] == "status":
                assert f"group {written_by_the_service.group_id}: " in out
                assert f"lag {replayed}\n" in out, (alert, out)
            elif words[1] == "tail":
                # A reason filter the samples cannot meet (internal_error: a bug) selects
                # nothing; any other entry shows the samples' dead letters.
                wanted = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--reason"]
                if wanted and not set(wanted) & SAMPLE_REASONS:
                    assert out == "", (alert, out)
                else:
                    assert "signature_invalid" in out, (alert, out)
            elif "--dry-run" in words:
                assert "would be replayed" in out
            else:
                done = re.search(r"replayed ([1-9]\d*) to ", out)
                assert done, (alert, out)
                replayed += int(done[1])
            ran += 1
    assert ran >= 8
