"""The wheel is the product: installed into a venv of its own and run from a directory
that is not the checkout, it finds its schemas and sample data, normalises a webhook
file, and runs against the broker until a record is accepted."""

from __future__ import annotations

import os
import signal
import subprocess
import zipfile
from pathlib import Path

import orjson
import pytest

from consumer.dev.local_broker import free_ports
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from consumer.reader import RedemptionReader
from tests.helpers import payloads, processes
from tests.integration.service_harness import (
    everything_committed,
    produce_all,
    read_all,
    wait_until,
)

STOP_TIMEOUT_SECONDS = 40


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory with nothing of the repository in reach."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    return work


def clean_env(installed_wheel, **extra: str) -> dict[str, str]:
    """No PYTHONPATH, no LOYALTY_SCHEMA_DIR, nothing of the test process' venv."""
    return {
        "PATH": f"{installed_wheel.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        **extra,
    }


def test_the_wheel_carries_schemas_and_sample_data_and_no_tests(installed_wheel):
    names = zipfile.ZipFile(installed_wheel.wheel).namelist()
    assert "consumer/schema_files/loyalty_redemption.avsc" in names
    assert "consumer/schema_files/history/loyalty_redemption.v1.avsc" in names
    assert "consumer/schema_files/rivo.points_redemption_created.avsc" in names
    assert "consumer/dev/kafka/pom.xml" in names
    assert any(name.startswith("consumer/dev/webhooks/rivo/") for name in names)
    assert not [name for name in names if name.startswith("tests/")]


def test_help_stands_on_its_own(installed_wheel, elsewhere):
    for args in (["--help"], ["run", "--help"]):
        shown = subprocess.run(
            [installed_wheel.command, *args],
            cwd=elsewhere,
            env=clean_env(installed_wheel),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "README" not in shown
        assert "normalize" in shown or "KAFKA_BOOTSTRAP_SERVERS" in shown


def test_normalize_from_the_installed_wheel(installed_wheel, elsewhere):
    webhook = elsewhere / "webhook.json"
    webhook.write_bytes(payloads.rivo_seed_bytes())
    done = subprocess.run(
        [installed_wheel.command, "normalize", "webhook.json"],
        cwd=elsewhere,
        env=clean_env(installed_wheel),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    line = orjson.loads(done.stdout)
    assert line["outcome"] == "accepted"
    assert line["record"]["event_id"] == "rivo:1234567"
    assert line["record"]["metadata"]["consumer_version"] != "0.0.0+unknown"


def test_the_development_package_works_from_the_wheel(installed_wheel, elsewhere):
    done = subprocess.run(
        [
            installed_wheel.python,
            "-c",
            "from consumer.dev.samples import sample_webhooks; print(len(sample_webhooks()))",
        ],
        cwd=elsewhere,
        env=clean_env(installed_wheel),
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(done.stdout) == len(sample_webhooks())
    # The broker launcher finds its pom inside the wheel (the jars are cached already).
    fetched = subprocess.run(
        [installed_wheel.python, "-m", "consumer.dev.local_broker", "fetch"],
        cwd=elsewhere,
        env=clean_env(installed_wheel),
        capture_output=True,
        text=True,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert Path(fetched.stdout.strip()).is_dir()


def test_run_from_the_installed_wheel_until_a_record_is_accepted(
    installed_wheel, elsewhere, kafka_bootstrap_servers, new_topic, group_id
):
    raw, clean, dlq = new_topic("raw", 1), new_topic("clean", 1), new_topic("dlq", 1)
    (metrics_port,) = free_ports(1)
    env = clean_env(
        installed_wheel,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap_servers,
        LOYALTY_RAW_TOPIC=raw,
        LOYALTY_CLEAN_TOPIC=clean,
        LOYALTY_DLQ_TOPIC=dlq,
        LOYALTY_GROUP_ID=group_id,
        LOYALTY_METRICS_PORT=str(metrics_port),
        RIVO_WEBHOOK_SECRET=LOCAL_SECRETS["rivo"],
        MAGE_LOYALTY_WEBHOOK_SECRET=LOCAL_SECRETS["mage_loyalty"],
    )
    (sample,) = [
        s
        for s in sample_webhooks()
        if s.description.startswith("rivo ") and s.expected == "accepted"
    ]
    produce_all(kafka_bootstrap_servers, raw, [(sample.value, sample.headers)])
    service = processes.start(
        [installed_wheel.command, "run"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        (message,) = read_all(kafka_bootstrap_servers, clean, 1)
        record = RedemptionReader().decode(message.value())
        assert record["event_id"] == "rivo:1234567"
        assert record["metadata"]["signature_verified"] is True
        wait_until(
            lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, 1),
            "the raw offset to be committed",
        )
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            status = service.wait(STOP_TIMEOUT_SECONDS)
        finally:
            processes.kill(service)
            log = service.stderr.read().decode(errors="replace")
    assert status == 0, log
    assert '"message": "stopped"' in log or "stopped" in log
