"""consumer.config: one frozen Settings object from the environment."""

from __future__ import annotations

import dataclasses

import pytest

from consumer.config import Settings
from consumer.errors import ConfigError

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092"}


def from_env(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_defaults_from_an_empty_environment():
    settings = Settings.from_env({})
    assert settings.bootstrap_servers is None
    assert settings.raw_topic == "loyalty.webhooks.raw"
    assert settings.clean_topic == "loyalty.redemptions"
    assert settings.dead_letter_topic == "loyalty.webhooks.dlq"
    assert settings.group_id == "loyalty-consumer"
    assert settings.max_payload_bytes == 1024 * 1024
    assert dict(settings.webhook_secrets) == {}
    assert settings.schema_registry_url is None
    assert settings.log_level == "INFO"
    assert (settings.kafka_common, settings.kafka_consumer, settings.kafka_producer) == ({}, {}, {})


def test_named_settings():
    settings = from_env(
        LOYALTY_RAW_TOPIC="r",
        LOYALTY_CLEAN_TOPIC="c",
        LOYALTY_DLQ_TOPIC="d",
        LOYALTY_GROUP_ID="g",
        LOYALTY_MAX_PAYLOAD_BYTES="2048",
        LOYALTY_BATCH_SIZE="100",
        LOYALTY_POLL_TIMEOUT_SECONDS="0.25",
        LOYALTY_METRICS_PORT="9999",
        LOYALTY_LOG_LEVEL="debug",
        SCHEMA_REGISTRY_URL="http://registry:8081",
    )
    assert (settings.raw_topic, settings.clean_topic, settings.dead_letter_topic) == ("r", "c", "d")
    assert settings.group_id == "g"
    assert settings.max_payload_bytes == 2048
    assert settings.batch_size == 100
    assert settings.poll_timeout_seconds == 0.25
    assert settings.metrics_port == 9999
    assert settings.log_level == "DEBUG"
    assert settings.schema_registry_url == "http://registry:8081"


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        from_env().group_id = "other"  # type: ignore[misc]


# --- librdkafka passthrough -------------------------------------------------------------


def test_common_property_reaches_both_clients():
    settings = from_env(KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    assert settings.consumer_config()["security.protocol"] == "SASL_SSL"
    assert settings.producer_config()["security.protocol"] == "SASL_SSL"


def test_producer_only_property():
    settings = from_env(KAFKA_PRODUCER_LINGER_MS="50")
    assert settings.producer_config()["linger.ms"] == "50"
    assert "linger.ms" not in settings.consumer_config()
    assert "producer.linger.ms" not in settings.consumer_config()
    assert settings.kafka_common == {}  # bootstrap servers are a setting of their own
    assert settings.producer_config()["bootstrap.servers"] == "broker-1:9092,broker-2:9092"
    assert settings.consumer_config()["bootstrap.servers"] == "broker-1:9092,broker-2:9092"


def test_consumer_only_property():
    settings = from_env(KAFKA_CONSUMER_SESSION_TIMEOUT_MS="45000")
    assert settings.consumer_config()["session.timeout.ms"] == "45000"
    assert "session.timeout.ms" not in settings.producer_config()


def test_double_underscore_is_a_literal_underscore():
    # librdkafka's few names with underscores (this one is settable only from C; the
    # settings check lets through what only a client can judge).
    settings = from_env(
        KAFKA_SSL__ENGINE__CALLBACK__DATA="x", KAFKA_PRODUCER_SSL__ENGINE__CALLBACK__DATA="y"
    )
    assert settings.kafka_common["ssl_engine_callback_data"] == "x"
    assert settings.kafka_producer == {"ssl_engine_callback_data": "y"}


def test_specific_overrides_common_overrides_defaults():
    settings = from_env(KAFKA_LINGER_MS="20", KAFKA_PRODUCER_LINGER_MS="50", KAFKA_ACKS="1")
    config = settings.producer_config()
    assert config["linger.ms"] == "50"
    assert config["acks"] == "1"


def test_client_defaults():
    settings = from_env()
    consumer = settings.consumer_config()
    assert consumer["bootstrap.servers"] == "broker-1:9092,broker-2:9092"
    assert consumer["group.id"] == "loyalty-consumer"
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["auto.offset.reset"] == "earliest"
    producer = settings.producer_config()
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"


def test_client_config_needs_bootstrap_servers():
    settings = Settings.from_env({})
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        settings.consumer_config()
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        settings.producer_config()


def test_non_kafka_variables_are_not_passed_through():
    settings = from_env(LOYALTY_RAW_TOPIC="r", PATH="/usr/bin", KAFKAESQUE="no")
    assert set(settings.consumer_config()) == set(from_env().consumer_config())


# --- webhook secrets --------------------------------------------------------------------


def test_secrets_per_provider():
    settings = from_env(MAGE_LOYALTY_WEBHOOK_SECRET="mage-1", RIVO_WEBHOOK_SECRET="rivo-1")
    assert settings.webhook_secrets.get("mage_loyalty", ()) == ("mage-1",)
    assert settings.webhook_secrets.get("rivo", ()) == ("rivo-1",)


def test_comma_separated_secrets_for_rotation():
    settings = from_env(RIVO_WEBHOOK_SECRET=" old , new,,whsec_abc= ")
    assert settings.webhook_secrets.get("rivo", ()) == ("old", "new", "whsec_abc=")
    assert settings.webhook_secrets.get("mage_loyalty", ()) == ()


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_blank_secrets_are_no_secret(value):
    # `run` refuses to start on them (test_signatures_required.py); `normalize` and
    # `local` then check no signature for that provider.
    settings = from_env(MAGE_LOYALTY_WEBHOOK_SECRET=value)
    assert "mage_loyalty" not in settings.webhook_secrets
    assert settings.webhook_secrets.get("mage_loyalty", ()) == ()


# --- nothing secret is shown --------------------------------------------------------------

SECRETS = {
    "MAGE_LOYALTY_WEBHOOK_SECRET": "mage-hunter2",
    "RIVO_WEBHOOK_SECRET": "rivo-hunter2,rivo-older-hunter2",
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "sr-user:sr-hunter2",
    "KAFKA_SASL_PASSWORD": "sasl-hunter2",
    "KAFKA_SASL_USERNAME": "svc-loyalty",
    "KAFKA_SSL_KEY_PASSWORD": "key-hunter2",
    "KAFKA_PRODUCER_SASL_OAUTHBEARER_CLIENT_SECRET": "oauth-hunter2",
}


def test_describe_masks_secret_properties():
    shown = from_env(**SECRETS).describe()
    assert shown["kafka.sasl.password"] == "***"
    assert shown["kafka.ssl.key.password"] == "***"
    assert shown["kafka_producer.sasl.oauthbearer.client.secret"] == "***"
    assert shown["kafka.sasl.username"] == "svc-loyalty"
    assert shown["signature_checks"] == ["mage_loyalty", "rivo"]
    assert "hunter2" not in repr(shown)


def test_repr_shows_no_secret():
    text = repr(from_env(**SECRETS))
    assert "hunter2" not in text
    assert "broker-1:9092" in text  # repr is still useful


def test_str_shows_no_secret():
    assert "hunter2" not in str(from_env(**SECRETS))


def test_registry_url_credentials_are_not_shown():
    settings = from_env(SCHEMA_REGISTRY_URL="https://sr-user:sr-hunter2@registry.example:8081")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(settings.describe())


# --- malformed values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["LOYALTY_MAX_PAYLOAD_BYTES", "LOYALTY_BATCH_SIZE", "LOYALTY_METRICS_PORT"]
)
@pytest.mark.parametrize("value", ["lots", "1.5", "1e6", "0x10"])
def test_bad_integers_raise_config_error(name, value):
    with pytest.raises(ConfigError) as caught:
        from_env(**{name: value})
    assert name in str(caught.value)
    assert "integer" in str(caught.value)


@pytest.mark.parametrize("value", ["soon", "1s"])
def test_bad_number_raises_config_error(value):
    with pytest.raises(ConfigError, match="LOYALTY_POLL_TIMEOUT_SECONDS"):
        from_env(LOYALTY_POLL_TIMEOUT_SECONDS=value)


def test_empty_integer_means_the_default():
    assert from_env(LOYALTY_BATCH_SIZE="").batch_size == 500


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOYALTY_BATCH_SIZE", "0"),
        ("LOYALTY_BATCH_SIZE", "-5"),
        ("LOYALTY_MAX_PAYLOAD_BYTES", "0"),
        ("LOYALTY_MAX_PAYLOAD_BYTES", "-1"),
    ],
)
def test_settings_that_cannot_work_raise_config_error(name, value):
    with pytest.raises(ConfigError):
        from_env(**{name: value})


def test_kubernetes_service_link_variables_are_not_client_properties():
    settings = from_env(
        KAFKA_PORT="tcp://10.0.0.7:9092",
        KAFKA_SERVICE_HOST="10.0.0.7",
        KAFKA_PORT_9092_TCP_ADDR="10.0.0.7",
    )
    config = settings.consumer_config()
    assert "port" not in config
    assert "service.host" not in config
    assert "port.9092.tcp.addr" not in config


@pytest.mark.parametrize(
    "variable, value",
    [
        ("KAFKA_CONSUMER_ENABLE_AUTO_OFFSET_STORE", "true"),
        ("KAFKA_ENABLE_AUTO_COMMIT", "true"),
    ],
)
def test_the_at_least_once_settings_cannot_be_overridden(variable, value):
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092", variable: value})
    with pytest.raises(ConfigError, match="acknowledged"):
        settings.consumer_config()


@pytest.mark.parametrize(
    "variable",
    [
        "KAFKA_UI_SERVICE_HOST",
        "KAFKA_UI_SERVICE_PORT",
        "KAFKA_UI_SERVICE_PORT_HTTP",
        "KAFKA_UI_PORT",
        "KAFKA_UI_PORT_8080_TCP_ADDR",
        "KAFKA_CONNECT_PORT_8083_TCP",
    ],
)
def test_service_links_of_any_kafka_named_service_are_not_client_properties(variable):
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092", variable: "x"})
    assert settings.kafka_common == {}


def test_oauthbearer_config_is_masked():
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "KAFKA_SASL_OAUTHBEARER_CONFIG": "secret=x"}
    )
    assert settings.describe()["kafka.sasl.oauthbearer.config"] == "***"


def test_the_producer_can_offer_a_record_at_the_payload_limit_to_the_dead_letter_topic():
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "LOYALTY_MAX_PAYLOAD_BYTES": "2000000"}
    )
    assert settings.producer_config()["message.max.bytes"] > 2_000_000


# --- processing guarantees and membership ------------------------------------------------


def test_at_least_once_is_the_default_and_only_the_checkpoints_commit():
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092"})
    assert settings.processing_guarantee == "at-least-once"
    consumer = settings.consumer_config()
    assert consumer["enable.auto.commit"] is False
    assert consumer["enable.auto.offset.store"] is False
    assert settings.producer_config()["delivery.report.only.error"] is True
    assert "isolation.level" not in consumer
    assert "transactional.id" not in settings.producer_config()


def test_exactly_once_commits_only_in_transactions_and_reads_committed():
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
            "LOYALTY_PROCESSING_GUARANTEE": "exactly-once",
            "LOYALTY_GROUP_ID": "loyalty",
            "LOYALTY_MEMBER_NAME": "pod-7",
        }
    )
    consumer = settings.consumer_config()
    assert consumer["enable.auto.commit"] is False
    assert consumer["isolation.level"] == "read_committed"
    assert settings.producer_config()["transactional.id"] == "loyalty-pod-7"


def test_exactly_once_refuses_an_override_of_what_it_rests_on():
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
            "LOYALTY_PROCESSING_GUARANTEE": "exactly-once",
            "KAFKA_CONSUMER_ISOLATION_LEVEL": "read_uncommitted",
        }
    )
    with pytest.raises(ConfigError, match=r"isolation\.level"):
        settings.consumer_config()


def test_an_unknown_guarantee_is_refused():
    with pytest.raises(ConfigError, match="LOYALTY_PROCESSING_GUARANTEE"):
        Settings.from_env({"LOYALTY_PROCESSING_GUARANTEE": "at-most-once"})


def test_static_membership_uses_the_member_name_only_when_asked():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "LOYALTY_MEMBER_NAME": "loyalty-0"}
    assert "group.instance.id" not in Settings.from_env(env).consumer_config()
    static = Settings.from_env({**env, "LOYALTY_STATIC_MEMBERSHIP": "true"})
    assert static.consumer_config()["group.instance.id"] == "loyalty-0"
    assert static.consumer_config()["session.timeout.ms"] == 45_000
    with pytest.raises(ConfigError, match="LOYALTY_STATIC_MEMBERSHIP"):
        Settings.from_env({**env, "LOYALTY_STATIC_MEMBERSHIP": "maybe"})


def test_the_broker_assigned_group_protocol_leaves_session_and_assignment_to_the_brokers():
    from confluent_kafka import Consumer

    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "KAFKA_CONSUMER_GROUP_PROTOCOL": "consumer"}
    config = Settings.from_env(env).consumer_config()
    assert "session.timeout.ms" not in config
    assert "partition.assignment.strategy" not in config
    # librdkafka itself refuses either property with group.protocol=consumer.
    Consumer(config).close()
    classic = Settings.from_env({**env, "KAFKA_CONSUMER_GROUP_PROTOCOL": "classic"})
    assert classic.consumer_config()["partition.assignment.strategy"] == "cooperative-sticky"
    with pytest.raises(ConfigError, match=r"group\.consumer\.session\.timeout\.ms"):
        Settings.from_env({**env, "LOYALTY_SESSION_TIMEOUT_MS": "20000"})


def test_crc_checks_stay_off():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b:9092"}
    assert "check.crcs" not in Settings.from_env(env).consumer_config()
    for variable in ("KAFKA_CONSUMER_CHECK_CRCS", "KAFKA_CHECK_CRCS"):
        with pytest.raises(ConfigError, match=f"{variable}: check.crcs must stay false"):
            Settings.from_env({**env, variable: "true"}).consumer_config()


def test_fetch_and_prefetch_are_bounded_by_the_payload_limit():
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "LOYALTY_MAX_PAYLOAD_BYTES": str(2 * 1024 * 1024)}
    )
    consumer = settings.consumer_config()
    per_record = consumer["max.partition.fetch.bytes"]
    assert per_record > 2 * 1024 * 1024
    assert consumer["fetch.max.bytes"] < consumer["receive.message.max.bytes"]
    assert consumer["queued.max.messages.kbytes"] * 1024 >= per_record


def test_the_metrics_host():
    assert Settings.from_env({}).metrics_host == "0.0.0.0"
    assert from_env(LOYALTY_METRICS_HOST="127.0.0.1").metrics_host == "127.0.0.1"
    assert from_env(LOYALTY_METRICS_HOST=" :: ").metrics_host == "::"
    assert from_env(LOYALTY_METRICS_HOST="metrics.internal").metrics_host == "metrics.internal"
    assert from_env(LOYALTY_METRICS_HOST="127.0.0.1").describe()["metrics_host"] == "127.0.0.1"


@pytest.mark.parametrize("value", ["0.0.0.0:9400", "http://x", "every interface", "-x"])
def test_a_bad_metrics_host_is_refused(value):
    with pytest.raises(ConfigError, match="LOYALTY_METRICS_HOST"):
        from_env(LOYALTY_METRICS_HOST=value)


def test_unsigned_providers_are_a_comma_list():
    assert Settings.from_env({}).unsigned_providers == frozenset()
    settings = from_env(LOYALTY_UNSIGNED_PROVIDERS=" Rivo, mage_loyalty ,")
    assert settings.unsigned_providers == {"rivo", "mage_loyalty"}
    assert settings.describe()["unsigned_providers"] == ["mage_loyalty", "rivo"]
