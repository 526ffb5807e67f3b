"""Every setting's bad values, as a person meets them: `loyalty-consumer run` exits with
status 2 and one line on stderr naming the variable, before it says "starting", without
a traceback, and without quoting a secret."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).with_name("loyalty-consumer")
CONFIG_SOURCE = (Path(__file__).resolve().parents[2] / "consumer" / "config.py").read_text()
# Not validated beyond being a string: any member name will do.
FREE_TEXT = {"LOYALTY_MEMBER_NAME"}

BAD_SETTINGS = [
    ("LOYALTY_RAW_TOPIC", ""),
    ("LOYALTY_CLEAN_TOPIC", "has spaces"),
    ("LOYALTY_DLQ_TOPIC", " "),
    ("LOYALTY_GROUP_ID", ""),
    ("LOYALTY_MAX_PAYLOAD_BYTES", "-5"),
    ("LOYALTY_MAX_PAYLOAD_BYTES", "1MB"),
    ("LOYALTY_BATCH_SIZE", "0"),
    ("LOYALTY_POLL_TIMEOUT_SECONDS", "-1"),
    ("LOYALTY_POLL_TIMEOUT_SECONDS", "0"),
    ("LOYALTY_POLL_TIMEOUT_SECONDS", "soon"),
    ("LOYALTY_METRICS_PORT", "99999"),
    ("LOYALTY_METRICS_PORT", "-1"),
    ("LOYALTY_METRICS_PORT", "http"),
    ("LOYALTY_LIVENESS_TIMEOUT_SECONDS", "0"),
    ("LOYALTY_SHUTDOWN_DEADLINE_SECONDS", "-3"),
    ("LOYALTY_STATISTICS_INTERVAL_MS", "0"),
    ("LOYALTY_LOG_LEVEL", "LOUD"),
    ("LOYALTY_SCHEMA_DIR", "/nonexistent/schemas"),
    ("LOYALTY_PROCESSING_GUARANTEE", "at-most-once"),
    ("LOYALTY_STATIC_MEMBERSHIP", "maybe"),
    ("LOYALTY_SESSION_TIMEOUT_MS", "0"),
    ("LOYALTY_CHECKPOINT_INTERVAL_MS", "-1"),
    ("LOYALTY_CHECKPOINT_RECORDS", "many"),
    ("KAFKA_FOO_BAR", "1"),
    ("KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON"),
    ("KAFKA_CONSUMER_ISOLATION_LEVEL", "read_everything"),
    ("KAFKA_PRODUCER_LINGER_MS", "a while"),
    ("KAFKA_SASL_PASSWORD", "s3cret-value"),  # valid: must not fail, see below
    ("MAGE_WEBHOOK_SECRET", "misspelt-provider"),
]


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COMMAND), "run"],
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_table_covers_every_setting():
    read = set(re.findall(r'"(LOYALTY_[A-Z_]+)"', CONFIG_SOURCE))
    covered = {name for name, _ in BAD_SETTINGS}
    assert read - FREE_TEXT <= covered, sorted(read - FREE_TEXT - covered)


@pytest.mark.parametrize(
    ("name", "value"),
    [case for case in BAD_SETTINGS if case[0] != "KAFKA_SASL_PASSWORD"],
    ids=lambda item: str(item),
)
def test_a_bad_setting_is_one_line_naming_it(name, value):
    done = run({name: value})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("loyalty-consumer: ")
    assert name in lines[0]
    assert "Traceback" not in done.stderr
    assert "starting" not in done.stderr


def test_a_secret_value_is_never_quoted():
    done = run({"KAFKA_SASL_PASSWORD": "s3cret-value", "LOYALTY_LOG_LEVEL": "LOUD"})
    assert done.returncode == 2
    assert "s3cret-value" not in done.stderr + done.stdout


def test_no_bootstrap_servers_is_one_line():
    done = subprocess.run(
        [str(COMMAND), "run"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_metrics_port_in_use_is_one_line_naming_it():
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run({"LOYALTY_METRICS_PORT": str(port)})
    assert done.returncode == 2, done.stderr
    assert "LOYALTY_METRICS_PORT" in done.stderr
    assert "Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert '"message": "starting"' not in done.stderr
