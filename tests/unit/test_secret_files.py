"""<NAME>_FILE: every secret setting can be read from a mounted file, and no secret value
shows in repr, in the settings shown at start-up, or in an error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import Settings
from consumer.errors import ConfigError

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
SECRET = "s3cr3t-value-that-must-not-leak"


def secret_file(tmp_path: Path, content: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_a_webhook_secret_is_read_from_its_file_without_the_trailing_newline(tmp_path, ending):
    path = secret_file(tmp_path, SECRET + ending)
    settings = Settings.from_env({**BASE, "RIVO_WEBHOOK_SECRET_FILE": path})
    assert settings.webhook_secrets == {"rivo": (SECRET,)}


def test_a_secret_file_may_hold_several_rotating_secrets(tmp_path):
    path = secret_file(tmp_path, "old-secret,new-secret\n")
    settings = Settings.from_env({**BASE, "MAGE_LOYALTY_WEBHOOK_SECRET_FILE": path})
    assert settings.webhook_secrets == {"mage_loyalty": ("old-secret", "new-secret")}


def test_schema_registry_secrets_from_files(tmp_path):
    url = secret_file(tmp_path, "https://user:pw@registry.example:8081\n", "url")
    user_info = secret_file(tmp_path, "user:pw\n", "user_info")
    settings = Settings.from_env(
        {
            **BASE,
            "SCHEMA_REGISTRY_URL_FILE": url,
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": user_info,
        }
    )
    assert settings.schema_registry_url == "https://user:pw@registry.example:8081"
    assert settings.schema_registry_basic_auth == "user:pw"


def test_librdkafka_secret_properties_from_files(tmp_path):
    password = secret_file(tmp_path, SECRET + "\n")
    settings = Settings.from_env(
        {
            **BASE,
            "KAFKA_SASL_USERNAME": "loyalty",
            "KAFKA_SASL_PASSWORD_FILE": password,
            "KAFKA_PRODUCER_SSL_KEY_PASSWORD_FILE": password,
            # A librdkafka property that is itself a path stays a path.
            "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
        }
    )
    assert settings.kafka_common == {
        "sasl.username": "loyalty",
        "sasl.password": SECRET,
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert settings.kafka_producer == {"ssl.key.password": SECRET}
    assert settings.consumer_config()["sasl.password"] == SECRET
    assert settings.producer_config()["ssl.key.password"] == SECRET


@pytest.mark.parametrize(
    "name",
    [
        "RIVO_WEBHOOK_SECRET",
        "SCHEMA_REGISTRY_URL",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        "KAFKA_SASL_PASSWORD",
    ],
)
def test_a_value_and_its_file_together_are_refused(tmp_path, name):
    path = secret_file(tmp_path, SECRET)
    with pytest.raises(ConfigError, match=f"set {name} or {name}_FILE, not both") as raised:
        Settings.from_env({**BASE, name: SECRET, f"{name}_FILE": path})
    assert SECRET not in str(raised.value)


def test_an_unreadable_secret_file_names_the_variable_and_path(tmp_path):
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError, match=r"KAFKA_SASL_PASSWORD_FILE: cannot read .*absent"):
        Settings.from_env({**BASE, "KAFKA_SASL_PASSWORD_FILE": str(missing)})


def test_a_secret_file_that_is_not_text_is_refused_without_quoting_it(tmp_path):
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError, match="not UTF-8 text") as raised:
        Settings.from_env({**BASE, "RIVO_WEBHOOK_SECRET_FILE": str(path)})
    assert SECRET not in str(raised.value)


def test_other_file_variables_are_not_secrets_and_are_refused_as_unknown(tmp_path):
    with pytest.raises(ConfigError, match="LOYALTY_GROUP_ID_FILE: no such setting"):
        Settings.from_env({**BASE, "LOYALTY_GROUP_ID_FILE": "/nonexistent"})


def test_no_secret_from_a_file_shows_in_repr_or_in_the_settings_shown(tmp_path):
    path = secret_file(tmp_path, SECRET)
    settings = Settings.from_env(
        {
            **BASE,
            "RIVO_WEBHOOK_SECRET_FILE": path,
            "SCHEMA_REGISTRY_URL_FILE": secret_file(
                tmp_path, f"https://user:{SECRET}@registry.example", "url"
            ),
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": secret_file(
                tmp_path, f"user:{SECRET}", "user-info"
            ),
            "KAFKA_SASL_PASSWORD_FILE": path,
            "KAFKA_CONSUMER_SSL_KEYSTORE_PASSWORD_FILE": path,
            "KAFKA_PRODUCER_SASL_OAUTHBEARER_CLIENT_SECRET_FILE": path,
        }
    )
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.describe())
    assert settings.describe()["kafka.sasl.password"] == "***"
