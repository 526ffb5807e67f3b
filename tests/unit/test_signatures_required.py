"""Signed means signed: `run` starts only when every provider of the registry has a
non-empty secret or is named in LOYALTY_UNSIGNED_PROVIDERS; `normalize` and the pure
pipeline keep working without secrets. (That `run` logs the opt-out and exports it as
loyalty_unsigned_providers is shown on a running service in
tests/integration/test_security.py.)"""

from __future__ import annotations

import pytest

from consumer.__main__ import main
from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.metrics import Metrics
from consumer.providers import PROVIDER_NAMES

# Nothing listens here: every case below fails before a client is built.
BOOTSTRAP = "127.0.0.1:9"


def settings(**env: str) -> Settings:
    return Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, **env})


def test_every_provider_with_a_secret_passes():
    both = settings(MAGE_LOYALTY_WEBHOOK_SECRET="m", RIVO_WEBHOOK_SECRET="r")
    assert both.require_signatures(PROVIDER_NAMES) == ()


def test_an_opt_out_is_returned_so_run_can_log_and_export_it():
    opted = settings(MAGE_LOYALTY_WEBHOOK_SECRET="m", LOYALTY_UNSIGNED_PROVIDERS=" Rivo ")
    assert opted.unsigned_providers == {"rivo"}
    assert opted.require_signatures(PROVIDER_NAMES) == ("rivo",)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"MAGE_LOYALTY_WEBHOOK_SECRET": "m"},  # only one provider signed
        {"MAGE_LOYALTY_WEBHOOK_SECRET": "m", "RIVO_WEBHOOK_SECRET": ""},
        {"MAGE_LOYALTY_WEBHOOK_SECRET": "m", "RIVO_WEBHOOK_SECRET": " , "},
        {"MAGE_LOYALTY_WEBHOOK_SECRET": "m", "RIVO_WEBHOOK_SECRET": "  "},
    ],
    ids=["none", "one provider", "empty", "only commas", "blank"],
)
def test_a_missing_or_empty_secret_refuses(env):
    with pytest.raises(ConfigError) as caught:
        settings(**env).require_signatures(PROVIDER_NAMES)
    assert "RIVO_WEBHOOK_SECRET" in str(caught.value)
    assert "LOYALTY_UNSIGNED_PROVIDERS" in str(caught.value)


def test_an_empty_secret_file_refuses(tmp_path):
    empty = tmp_path / "rivo-secret"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="RIVO_WEBHOOK_SECRET: not set or empty"):
        settings(
            MAGE_LOYALTY_WEBHOOK_SECRET="m", RIVO_WEBHOOK_SECRET_FILE=str(empty)
        ).require_signatures(PROVIDER_NAMES)


def test_an_opt_out_must_name_registered_providers():
    with pytest.raises(ConfigError, match=r"unknown provider.*shopify.*known: mage_loyalty"):
        settings(LOYALTY_UNSIGNED_PROVIDERS="rivo,shopify").require_signatures(PROVIDER_NAMES)


def test_a_provider_cannot_be_both_signed_and_opted_out():
    with pytest.raises(ConfigError, match="also has a webhook secret"):
        settings(
            MAGE_LOYALTY_WEBHOOK_SECRET="m",
            RIVO_WEBHOOK_SECRET="r",
            LOYALTY_UNSIGNED_PROVIDERS="rivo",
        ).require_signatures(PROVIDER_NAMES)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"RIVO_WEBHOOK_SECRET": " , "},
        {"MAGE_LOYALTY_WEBHOOK_SECRET": "m", "RIVO_WEBHOOK_SECRET": ""},
    ],
)
def test_run_exits_2_with_one_line(env, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in (
        "MAGE_LOYALTY_WEBHOOK_SECRET",
        "RIVO_WEBHOOK_SECRET",
        "LOYALTY_UNSIGNED_PROVIDERS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("loyalty-consumer: ")
    assert "RIVO_WEBHOOK_SECRET" in captured.err
    assert '"message": "starting"' not in captured.err
    assert captured.out == ""


def test_normalize_still_works_without_secrets(monkeypatch, tmp_path, capsys):
    for name in (
        "MAGE_LOYALTY_WEBHOOK_SECRET",
        "RIVO_WEBHOOK_SECRET",
        "LOYALTY_UNSIGNED_PROVIDERS",
    ):
        monkeypatch.delenv(name, raising=False)
    body = tmp_path / "body.json"
    body.write_bytes(b'{"event": "points.earned", "data": {}}')
    assert main(["normalize", str(body)]) == 0
    assert '"outcome":"ignored"' in capsys.readouterr().out


def test_the_opt_out_metric():
    metrics = Metrics()
    metrics.unsigned_providers.labels(provider="rivo").set(1)
    assert (
        metrics.registry.get_sample_value("loyalty_unsigned_providers", {"provider": "rivo"}) == 1
    )
