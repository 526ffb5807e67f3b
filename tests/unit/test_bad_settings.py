"""Every setting's bad values, tried as a new user would: one line on stderr naming the
variable, exit status 2, no traceback, and nothing claims to have started."""

from __future__ import annotations

import pytest

from consumer import config
from consumer.__main__ import main
from consumer.providers import PROVIDER_NAMES

# A loopback address nothing listens on: the clients are never asked to connect, since
# every case fails before (settings, or librdkafka's own property check).
BOOTSTRAP = "127.0.0.1:9"


SECRET_VARIABLES = [f"{name.upper()}_WEBHOOK_SECRET" for name in PROVIDER_NAMES]


@pytest.fixture(autouse=True)
def _every_provider_signed(monkeypatch):
    """`run` refuses to start without a secret or an opt-out for every provider
    (tests/unit/test_signatures_required.py); these cases are about other settings."""
    for variable in SECRET_VARIABLES:
        monkeypatch.setenv(variable, "a-secret")


BAD_VALUES = [
    ("KAFKA_BOOTSTRAP_SERVERS", "   ", "must not be blank"),
    ("LOYALTY_RAW_TOPIC", "raw topic", "topic name"),
    ("LOYALTY_CLEAN_TOPIC", "clean/records", "topic name"),
    ("LOYALTY_DLQ_TOPIC", "x" * 250, "topic name"),
    ("LOYALTY_DLQ_TOPIC", "..", "topic name"),
    ("LOYALTY_GROUP_ID", "  ", "must not be blank"),
    ("LOYALTY_MAX_PAYLOAD_BYTES", "1MB", "integer"),
    ("LOYALTY_MAX_PAYLOAD_BYTES", "0", "positive"),
    ("SCHEMA_REGISTRY_URL", "registry:8081", "http"),
    ("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", " ", "must be user:password"),
    ("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "userpass", "must be user:password"),
    ("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", ":password", "must be user:password"),
    ("LOYALTY_BATCH_SIZE", "-5", "positive"),
    ("LOYALTY_BATCH_SIZE", "lots", "integer"),
    ("LOYALTY_POLL_TIMEOUT_SECONDS", "-1", "positive"),
    ("LOYALTY_POLL_TIMEOUT_SECONDS", "0", "positive"),
    ("LOYALTY_POLL_TIMEOUT_SECONDS", "1s", "number"),
    ("LOYALTY_POLL_TIMEOUT_SECONDS", "nan", "positive"),
    ("LOYALTY_METRICS_PORT", "99999", "port"),
    ("LOYALTY_METRICS_PORT", "-1", "port"),
    ("LOYALTY_METRICS_PORT", "http", "integer"),
    ("LOYALTY_METRICS_HOST", "every interface", "IP address or host name"),
    ("LOYALTY_METRICS_HOST", "-bad-", "IP address or host name"),
    ("LOYALTY_UNSIGNED_PROVIDERS", " , ", "provider names"),
    ("LOYALTY_UNSIGNED_PROVIDERS", "rivo;mage", "provider names"),
    ("LOYALTY_UNSIGNED_PROVIDERS", "shopify", "unknown provider"),
    ("LOYALTY_UNSIGNED_PROVIDERS", "rivo", "also has a webhook secret"),
    ("LOYALTY_LIVENESS_TIMEOUT_SECONDS", "0", "positive"),
    ("LOYALTY_LIVENESS_TIMEOUT_SECONDS", "inf", "positive"),
    ("LOYALTY_SHUTDOWN_DEADLINE_SECONDS", "-3", "positive"),
    ("LOYALTY_STATISTICS_INTERVAL_MS", "0", "positive"),
    ("LOYALTY_STATISTICS_INTERVAL_MS", "10s", "integer"),
    ("LOYALTY_LOG_LEVEL", "LOUD", "one of DEBUG, INFO"),
    ("LOYALTY_SCHEMA_DIR", "/no/such/directory", "existing directory"),
    ("LOYALTY_PROCESSING_GUARANTEE", "at-most-once", "one of at-least-once, exactly-once"),
    ("LOYALTY_MEMBER_NAME", "   ", "must not be blank"),
    ("LOYALTY_STATIC_MEMBERSHIP", "maybe", "true or false"),
    ("LOYALTY_SESSION_TIMEOUT_MS", "0", "positive"),
    # Within librdkafka's range, outside what the brokers accept by default: JoinGroup
    # would fail every few seconds forever.
    ("LOYALTY_SESSION_TIMEOUT_MS", "1", "the brokers accept a session timeout of 6000..1800000"),
    ("LOYALTY_SESSION_TIMEOUT_MS", "1800001", "6000..1800000"),
    ("KAFKA_CONSUMER_SESSION_TIMEOUT_MS", "5999", "6000..1800000"),
    ("KAFKA_SESSION_TIMEOUT_MS", "soon", "must be an integer"),
    ("KAFKA_HEARTBEAT_INTERVAL_MS", "45000", "must be lower than session.timeout.ms (45000)"),
    # One topic in two roles: a dead letter on the raw topic is rejected again, forever.
    ("LOYALTY_DLQ_TOPIC", "loyalty.webhooks.raw", "is also LOYALTY_RAW_TOPIC"),
    ("LOYALTY_DLQ_TOPIC", "loyalty.redemptions", "is also LOYALTY_CLEAN_TOPIC"),
    ("LOYALTY_CLEAN_TOPIC", "loyalty.webhooks.raw", "three different topics"),
    # A misspelt LOYALTY_* variable would leave its setting at the default, silently.
    ("LOYALTY_DLQ_TOPC", "x", "no such setting; did you mean LOYALTY_DLQ_TOPIC?"),
    ("LOYALTY_GROUPID", "g", "did you mean LOYALTY_GROUP_ID?"),
    ("LOYALTY_GROUP_ID_FILE", "/run/secrets/g", "did you mean LOYALTY_GROUP_ID?"),
    ("LOYALTY_COLOUR", "blue", "no such setting; `loyalty-consumer run --help` lists them"),
    ("LOYALTY_CHECKPOINT_INTERVAL_MS", "-1", "positive"),
    ("LOYALTY_CHECKPOINT_RECORDS", "many", "integer"),
    ("LOYALTY_ON_INTERNAL_ERROR", "ignore", "one of dead-letter, stop"),
    ("MAGE_WEBHOOK_SECRET", "s", "unknown provider"),
    ("RIVO_WEBHOOK_SECRET_FILE", "/no/such/file", "cannot read"),
    # librdkafka properties, checked by librdkafka when the clients are built.
    ("KAFKA_FOO_BAR", "1", 'No such configuration property: "foo.bar"'),
    ("KAFKA_CONSUMER_FETCH_WAIT_MAX_MS", "soon", "Invalid value"),
    ("KAFKA_PRODUCER_LINGER_MS", "abc", "Invalid value"),
    ("KAFKA_SECURITY_PROTOCOL", "carrier-pigeon", "Invalid value"),
    ("KAFKA_CONSUMER_ENABLE_AUTO_COMMIT", "true", "must stay false"),
    ("KAFKA_ENABLE_AUTO_OFFSET_STORE", "true", "must stay false"),
]


@pytest.mark.parametrize(("variable", "value", "says"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_variable(
    variable, value, says, monkeypatch, capsys, tmp_path
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    monkeypatch.delenv(variable.removesuffix("_FILE"), raising=False)  # <NAME> or <NAME>_FILE
    monkeypatch.setenv(variable, value)
    status = main(["run"])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"loyalty-consumer: {variable}")
    assert says in lines[0]
    assert "Traceback" not in captured.err and "starting" not in captured.err
    assert captured.out == ""


def test_every_setting_has_bad_values_in_the_table():
    tried = {variable for variable, _, _ in BAD_VALUES}
    assert {variable.name for variable in config.VARIABLES} <= tried


def test_a_checkpoint_interval_beyond_the_brokers_transaction_timeout_is_refused(
    monkeypatch, capsys
):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    monkeypatch.setenv("LOYALTY_PROCESSING_GUARANTEE", "exactly-once")
    monkeypatch.setenv("LOYALTY_CHECKPOINT_INTERVAL_MS", "90001")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loyalty-consumer: LOYALTY_CHECKPOINT_INTERVAL_MS=90001: at most 90000")
    assert len(err.splitlines()) == 1


def test_the_raw_topic_named_like_the_default_clean_one_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    monkeypatch.setenv("LOYALTY_RAW_TOPIC", "loyalty.redemptions")
    assert main(["run"]) == 2
    assert "LOYALTY_CLEAN_TOPIC='loyalty.redemptions' is also LOYALTY_RAW_TOPIC" in (
        capsys.readouterr().err
    )


def test_credentials_in_a_bad_registry_url_are_not_repeated(monkeypatch, capsys):
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "user:hunter2@registry")
    assert main(["run"]) == 2
    assert "hunter2" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["replay", "tail", "status", "local"])
def test_the_operators_commands_say_the_same(command, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    monkeypatch.setenv("KAFKA_FOO_BAR", "1")
    assert main([command]) == 2
    assert capsys.readouterr().err.startswith("loyalty-consumer: KAFKA_FOO_BAR: No such")


@pytest.mark.parametrize("command", ["run", "replay", "tail", "status"])
def test_commands_that_need_brokers_say_so(command, monkeypatch, capsys):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert main([command]) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in capsys.readouterr().err


def test_a_metrics_port_in_use_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    import socket

    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
        monkeypatch.setenv("LOYALTY_METRICS_PORT", str(taken.getsockname()[1]))
        status = main(["run"])
    err = capsys.readouterr().err
    assert status == 2
    assert "LOYALTY_METRICS_PORT" in err
    assert "Traceback" not in err
    assert '"message": "starting"' not in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["tail", "dead-letter", "--reason", "signature_invalidd"], "known: invalid_json"),
        (["tail", "--provider", "Mage"], "known: mage_loyalty, rivo, unknown"),
        (["replay", "--provider", "Mage"], "known: mage_loyalty, rivo, unknown"),
        (["replay", "--reason", "nope", "--dry-run"], "unknown reason nope"),
        (["tail", "--max", "0"], "--max must be at least 1"),
        (["tail", "--since", "2026-03-02", "--until", "2026-03-01"], "--since must be before"),
        (["tail", "--from-beginning", "--offset", "-5"], "contradict"),
        (["tail", "--offset", "newest"], "a number, beginning, end, or -N"),
        (["tail", "--since", "yesterday"], "not an ISO-8601 time"),
        (["tail", "--reason", "invalid_json"], "use `tail dead-letter`"),
        (["tail", "--format", "{nope}"], "no field 'nope'"),
        (
            ["replay", "--failed-after", "2026-03-02", "--failed-before", "2026-03-01"],
            "--failed-after must be before --failed-before",
        ),
        (["replay", "--rate", "0"], "--rate must be positive"),
    ],
)
def test_operator_arguments_that_select_nothing_are_refused(args, says, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and says in err, err
    assert err.startswith(f"loyalty-consumer {args[0]}: ")
