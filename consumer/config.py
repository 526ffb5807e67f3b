"""Every setting in one frozen object, read from the environment once at start-up.

librdkafka properties pass through from the environment without a code change:
KAFKA_<PROP> applies to the consumer and the producer, KAFKA_CONSUMER_<PROP> and
KAFKA_PRODUCER_<PROP> to one of them. <PROP> is the property name upper-cased with dots
written as single underscores; a double underscore stands for a literal underscore.
  KAFKA_SECURITY_PROTOCOL=SASL_SSL      -> security.protocol=SASL_SSL
  KAFKA_PRODUCER_LINGER_MS=50           -> linger.ms=50 (producer only)

Every secret setting can instead be read from a file, as Docker and Kubernetes mount
secrets: <NAME>_FILE=/path holds the value of <NAME> (one trailing newline is dropped).
That covers <PROVIDER>_WEBHOOK_SECRET, SCHEMA_REGISTRY_URL,
SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO and every KAFKA_* property:
  KAFKA_SASL_PASSWORD_FILE=/run/secrets/kafka -> sasl.password=<the file's content>
(librdkafka's own *.location properties are paths it opens itself; they are unrelated.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from consumer.errors import ConfigError

ONE_MEBIBYTE = 1024 * 1024

# Only property values whose name says they are secret are masked when settings are
# shown; everything else is useful to see in a start-up log line.
_SECRET_WORDS = ("password", "secret", "key", "token", "jaas", "user.info", "oauthbearer")
# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, <SERVICE>_PORT_9092_TCP_ADDR,
# ... for every Service in the namespace; those of 'kafka', 'kafka-ui', ... start with
# KAFKA_. They are not librdkafka properties, and librdkafka refuses to start on an
# unknown one. (The manifests also set enableServiceLinks: false.)
_SERVICE_LINK_VARIABLE = re.compile(
    r"KAFKA_(\w+_)?(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?)"
)
# The at-least-once guarantee rests on these: offsets are stored by the runner only
# once acknowledged, and librdkafka commits what is stored. Not overridable.
_PINNED_CONSUMER_PROPERTIES = {"enable.auto.offset.store": False, "enable.auto.commit": True}
# Room for the dead-letter headers on top of a value at the payload limit.
_HEADER_ROOM_BYTES = 64 * 1024
_URL_USERINFO = re.compile(r"(?<=://)[^/@]+@")
_WEBHOOK_SECRET_VARIABLE = re.compile(r"([A-Z][A-Z0-9_]*)_WEBHOOK_SECRET")
_SECRET_FILE_SUFFIX = "_FILE"
_SECRET_FILE_VARIABLE = re.compile(
    r"(?:[A-Z][A-Z0-9_]*_WEBHOOK_SECRET|SCHEMA_REGISTRY_URL|SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
    r"|KAFKA_\w+)" + _SECRET_FILE_SUFFIX
)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str | None = None
    raw_topic: str = "loyalty.webhooks.raw"
    clean_topic: str = "loyalty.redemptions"
    dead_letter_topic: str = "loyalty.webhooks.dlq"
    group_id: str = "loyalty-consumer"
    max_payload_bytes: int = ONE_MEBIBYTE
    # Several secrets per provider so a rotation can overlap: any of them verifies.
    webhook_secrets: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    # Repr hidden: the registry client reads credentials from the URL's userinfo.
    schema_registry_url: str | None = field(default=None, repr=False)
    schema_registry_basic_auth: str | None = field(default=None, repr=False)
    # Records per consume() call: large enough to amortise the Python loop, small enough
    # that a shutdown or rebalance finishes the in-hand batch quickly.
    batch_size: int = 500
    poll_timeout_seconds: float = 1.0
    metrics_port: int = 9400
    # /healthz fails when the loop has not polled for this long. A healthy loop polls
    # every poll timeout; the longest legitimate pause is a flush on revocation (20 s).
    liveness_timeout_seconds: float = 60.0
    # After a stop signal, the process exits by this deadline even if librdkafka's final
    # commit is still waiting for the coordinator. Below Kubernetes' 30 s grace period.
    shutdown_deadline_seconds: float = 25.0
    # librdkafka statistics feed the lag, round-trip and queue metrics and readiness.
    statistics_interval_ms: int = 10_000
    log_level: str = "INFO"
    kafka_common: Mapping[str, str] = field(default_factory=dict, repr=False)
    kafka_consumer: Mapping[str, str] = field(default_factory=dict, repr=False)
    kafka_producer: Mapping[str, str] = field(default_factory=dict, repr=False)

    # LOYALTY_SCHEMA_DIR: a directory of .avsc files to use instead of the package's own.
    schema_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = _with_secret_files(os.environ if env is None else env)
        # <PROVIDER>_WEBHOOK_SECRET for any provider name; the pipeline refuses names
        # that are not in its registry, so a misspelt variable is not a silently
        # unverified provider.
        secrets = {
            match[1].lower(): _split_secrets(value)
            for name, value in env.items()
            if (match := _WEBHOOK_SECRET_VARIABLE.fullmatch(name))
        }
        defaults = cls()
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            raw_topic=env.get("LOYALTY_RAW_TOPIC", defaults.raw_topic),
            clean_topic=env.get("LOYALTY_CLEAN_TOPIC", defaults.clean_topic),
            dead_letter_topic=env.get("LOYALTY_DLQ_TOPIC", defaults.dead_letter_topic),
            group_id=env.get("LOYALTY_GROUP_ID", defaults.group_id),
            max_payload_bytes=_positive_int(
                env, "LOYALTY_MAX_PAYLOAD_BYTES", defaults.max_payload_bytes
            ),
            webhook_secrets=MappingProxyType({k: v for k, v in secrets.items() if v}),
            schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
            schema_registry_basic_auth=env.get("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") or None,
            batch_size=_positive_int(env, "LOYALTY_BATCH_SIZE", defaults.batch_size),
            poll_timeout_seconds=_float(
                env, "LOYALTY_POLL_TIMEOUT_SECONDS", defaults.poll_timeout_seconds
            ),
            metrics_port=_int(env, "LOYALTY_METRICS_PORT", defaults.metrics_port),
            liveness_timeout_seconds=_float(
                env, "LOYALTY_LIVENESS_TIMEOUT_SECONDS", defaults.liveness_timeout_seconds
            ),
            shutdown_deadline_seconds=_float(
                env, "LOYALTY_SHUTDOWN_DEADLINE_SECONDS", defaults.shutdown_deadline_seconds
            ),
            statistics_interval_ms=_positive_int(
                env, "LOYALTY_STATISTICS_INTERVAL_MS", defaults.statistics_interval_ms
            ),
            log_level=env.get("LOYALTY_LOG_LEVEL", defaults.log_level).upper(),
            schema_dir=Path(env["LOYALTY_SCHEMA_DIR"]) if env.get("LOYALTY_SCHEMA_DIR") else None,
            kafka_common=_passthrough(
                env,
                "KAFKA_",
                exclude=("KAFKA_CONSUMER_", "KAFKA_PRODUCER_", "KAFKA_BOOTSTRAP_SERVERS"),
            ),
            kafka_consumer=_passthrough(env, "KAFKA_CONSUMER_"),
            kafka_producer=_passthrough(env, "KAFKA_PRODUCER_"),
        )

    def consumer_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "group.id": self.group_id,
            # Offsets are stored by the runner once a record's output is acknowledged;
            # librdkafka then commits the stored offsets in the background. Storing on
            # consume (the default) would commit records whose output may still be lost.
            **_PINNED_CONSUMER_PROPERTIES,
            # A new group starts from the oldest webhook kept: skipping to the end would
            # silently lose redemptions that arrived before the first deployment.
            "auto.offset.reset": "earliest",
            # Incremental rebalances: a joining replica does not stop the others.
            "partition.assignment.strategy": "cooperative-sticky",
            "statistics.interval.ms": self.statistics_interval_ms,
        }
        config = self._with_overrides(config, self.kafka_consumer)
        for name, required in _PINNED_CONSUMER_PROPERTIES.items():
            if str(config[name]).lower() != str(required).lower():
                raise ConfigError(
                    f"{name} must stay {str(required).lower()}: offsets are committed only "
                    "once the output is acknowledged"
                )
        return config

    def producer_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            # Idempotence implies acks=all and keeps per-partition order across retries,
            # so a retried batch neither duplicates nor reorders a customer's events.
            "enable.idempotence": True,
            "acks": "all",
            # A few milliseconds of batching costs little latency and saves many requests.
            "linger.ms": 10,
            "compression.type": "lz4",
            "statistics.interval.ms": self.statistics_interval_ms,
            # librdkafka's default (1,000,000) is below the default payload limit, so a
            # rejected record at the limit could not even be offered to the dead-letter
            # topic. The topic's own limit still applies (see dead-letter headers).
            "message.max.bytes": max(1_000_000, self.max_payload_bytes + _HEADER_ROOM_BYTES),
        }
        return self._with_overrides(config, self.kafka_producer)

    def _with_overrides(self, config: dict[str, Any], specific: Mapping[str, str]) -> dict:
        if not self.bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set")
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **config,
            **self.kafka_common,
            **specific,
        }

    def describe(self) -> dict[str, Any]:
        """Settings safe to log: secret values are replaced by '***'."""
        shown: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "raw_topic": self.raw_topic,
            "clean_topic": self.clean_topic,
            "dead_letter_topic": self.dead_letter_topic,
            "group_id": self.group_id,
            "max_payload_bytes": self.max_payload_bytes,
            "signature_checks": sorted(self.webhook_secrets),
            "schema_registry_url": self.schema_registry_url
            and _URL_USERINFO.sub("***@", self.schema_registry_url),
            "batch_size": self.batch_size,
            "metrics_port": self.metrics_port,
        }
        for scope, props in (
            ("kafka", self.kafka_common),
            ("kafka_consumer", self.kafka_consumer),
            ("kafka_producer", self.kafka_producer),
        ):
            for name, value in props.items():
                secret = any(word in name for word in _SECRET_WORDS)
                shown[f"{scope}.{name}"] = "***" if secret else value
        return shown


def _with_secret_files(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with each secret's <NAME>_FILE replaced by <NAME> set to the file's content.
    Error messages name the variable and the path, never the content."""
    resolved = dict(env)
    for file_variable, path in env.items():
        if not _SECRET_FILE_VARIABLE.fullmatch(file_variable):
            continue
        name = file_variable[: -len(_SECRET_FILE_SUFFIX)]
        del resolved[file_variable]
        if name in env:
            raise ConfigError(f"set {name} or {file_variable}, not both")
        try:
            content = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{file_variable}: cannot read {path}: {cause}") from None
        resolved[name] = content.removesuffix("\n").removesuffix("\r")
    return resolved


def _split_secrets(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _passthrough(env: Mapping[str, str], prefix: str, exclude: tuple[str, ...] = ()) -> dict:
    props = {}
    for name, value in env.items():
        if (
            not name.startswith(prefix)
            or name.startswith(exclude)
            or _SERVICE_LINK_VARIABLE.fullmatch(name)
        ):
            continue
        prop = name[len(prefix) :].lower().replace("__", "\0").replace("_", ".").replace("\0", "_")
        if prop:
            props[prop] = value
    return props


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env[name]) if env.get(name) else default
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {env[name]!r}") from None


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env[name]) if env.get(name) else default
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {env[name]!r}") from None
