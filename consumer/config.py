"""Every setting in one frozen object, read from the environment once at start-up.

librdkafka properties pass through from the environment without a code change:
KAFKA_<PROP> applies to the consumer and the producer, KAFKA_CONSUMER_<PROP> and
KAFKA_PRODUCER_<PROP> to one of them. <PROP> is the property name upper-cased with dots
written as single underscores; a double underscore stands for a literal underscore.
  KAFKA_SECURITY_PROTOCOL=SASL_SSL      -> security.protocol=SASL_SSL
  KAFKA_PRODUCER_LINGER_MS=50           -> linger.ms=50 (producer only)
"""

from __future__ import annotations

import logging
import os
import re
import socket
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
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
PROCESSING_GUARANTEES = (AT_LEAST_ONCE, EXACTLY_ONCE)

# Each guarantee rests on these; they are not overridable. At-least-once: offsets are
# stored by the runner only once acknowledged, and librdkafka commits what is stored.
# Exactly-once: offsets are committed only inside the producer's transactions, and the
# raw topic is read as committed (a transactional upstream's aborted records are skipped).
_PINNED_CONSUMER_PROPERTIES = {
    AT_LEAST_ONCE: {"enable.auto.offset.store": False, "enable.auto.commit": True},
    EXACTLY_ONCE: {
        "enable.auto.offset.store": False,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    },
}
# Room for the dead-letter headers on top of a value at the payload limit.
_HEADER_ROOM_BYTES = 64 * 1024
_URL_USERINFO = re.compile(r"(?<=://)[^/@]+@")
_WEBHOOK_SECRET_VARIABLE = re.compile(r"([A-Z][A-Z0-9_]*)_WEBHOOK_SECRET")
# Settings that may hold a secret, and so may be read from <NAME>_FILE instead.
_TAKES_A_FILE = re.compile(
    r"[A-Z][A-Z0-9_]*_WEBHOOK_SECRET|SCHEMA_REGISTRY_URL|SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
    r"|KAFKA_\w+"
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
    processing_guarantee: str = AT_LEAST_ONCE
    # Names this member: the transactional.id in exactly-once mode (so a restarted member
    # fences its zombie) and, with static membership, the group.instance.id. Must be
    # unique within the group (a pod name is; a host running several members is not).
    member_name: str = field(default_factory=socket.gethostname)
    # Static membership suits members with stable names (a StatefulSet): a restart
    # within the session timeout gets the same partitions back without a rebalance. A
    # static member does not leave the group when it stops, so with names that change
    # on every restart (a Deployment) its partitions would idle for a session timeout.
    static_membership: bool = False
    # A member that stops heart-beating loses its partitions after this long. With
    # static membership a restart within it gets them back without a rebalance.
    session_timeout_ms: int = 15_000
    # Exactly-once: a transaction commits after this long or this many records,
    # whichever comes first. The interval is the latency a read_committed reader sees.
    checkpoint_interval_ms: int = 1_000
    checkpoint_records: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = _read_files(os.environ if env is None else env)
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
            raw_topic=_name(env, "LOYALTY_RAW_TOPIC", defaults.raw_topic),
            clean_topic=_name(env, "LOYALTY_CLEAN_TOPIC", defaults.clean_topic),
            dead_letter_topic=_name(env, "LOYALTY_DLQ_TOPIC", defaults.dead_letter_topic),
            group_id=_name(env, "LOYALTY_GROUP_ID", defaults.group_id),
            max_payload_bytes=_positive_int(
                env, "LOYALTY_MAX_PAYLOAD_BYTES", defaults.max_payload_bytes
            ),
            webhook_secrets=MappingProxyType({k: v for k, v in secrets.items() if v}),
            schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
            schema_registry_basic_auth=env.get("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO") or None,
            batch_size=_positive_int(env, "LOYALTY_BATCH_SIZE", defaults.batch_size),
            poll_timeout_seconds=_positive_float(
                env, "LOYALTY_POLL_TIMEOUT_SECONDS", defaults.poll_timeout_seconds
            ),
            metrics_port=_port(env, "LOYALTY_METRICS_PORT", defaults.metrics_port),
            liveness_timeout_seconds=_positive_float(
                env, "LOYALTY_LIVENESS_TIMEOUT_SECONDS", defaults.liveness_timeout_seconds
            ),
            shutdown_deadline_seconds=_positive_float(
                env, "LOYALTY_SHUTDOWN_DEADLINE_SECONDS", defaults.shutdown_deadline_seconds
            ),
            statistics_interval_ms=_positive_int(
                env, "LOYALTY_STATISTICS_INTERVAL_MS", defaults.statistics_interval_ms
            ),
            log_level=_choice(
                {k: v.upper() for k, v in env.items() if k == "LOYALTY_LOG_LEVEL"},
                "LOYALTY_LOG_LEVEL",
                defaults.log_level,
                LOG_LEVELS,
            ),
            schema_dir=Path(env["LOYALTY_SCHEMA_DIR"]) if env.get("LOYALTY_SCHEMA_DIR") else None,
            processing_guarantee=_choice(
                env,
                "LOYALTY_PROCESSING_GUARANTEE",
                defaults.processing_guarantee,
                PROCESSING_GUARANTEES,
            ),
            member_name=env.get("LOYALTY_MEMBER_NAME") or defaults.member_name,
            static_membership=_boolean(env, "LOYALTY_STATIC_MEMBERSHIP", False),
            session_timeout_ms=_positive_int(
                env, "LOYALTY_SESSION_TIMEOUT_MS", defaults.session_timeout_ms
            ),
            checkpoint_interval_ms=_positive_int(
                env, "LOYALTY_CHECKPOINT_INTERVAL_MS", defaults.checkpoint_interval_ms
            ),
            checkpoint_records=_positive_int(
                env, "LOYALTY_CHECKPOINT_RECORDS", defaults.checkpoint_records
            ),
            kafka_common=_passthrough(
                env,
                "KAFKA_",
                exclude=("KAFKA_CONSUMER_", "KAFKA_PRODUCER_", "KAFKA_BOOTSTRAP_SERVERS"),
            ),
            kafka_consumer=_passthrough(env, "KAFKA_CONSUMER_", client="consumer"),
            kafka_producer=_passthrough(env, "KAFKA_PRODUCER_", client="producer"),
        )

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == EXACTLY_ONCE

    @property
    def transactional_id(self) -> str:
        """Stable per member: a restarted member fences the transactions of its zombie."""
        return f"{self.group_id}-{self.member_name}"

    def consumer_config(self) -> dict[str, Any]:
        pinned = _PINNED_CONSUMER_PROPERTIES[self.processing_guarantee]
        config: dict[str, Any] = {
            "group.id": self.group_id,
            # Offsets are stored by the runner once a record's output is acknowledged;
            # librdkafka then commits the stored offsets in the background. Storing on
            # consume (the default) would commit records whose output may still be lost.
            **pinned,
            "session.timeout.ms": self.session_timeout_ms,
            # A new group starts from the oldest webhook kept: skipping to the end would
            # silently lose redemptions that arrived before the first deployment.
            "auto.offset.reset": "earliest",
            # Incremental rebalances: a joining replica does not stop the others.
            "partition.assignment.strategy": "cooperative-sticky",
            "statistics.interval.ms": self.statistics_interval_ms,
        }
        if self.static_membership:
            # Static membership: a restart within the session timeout keeps the member's
            # partitions without a rebalance.
            config["group.instance.id"] = self.member_name
        config = self._with_overrides(config, self.kafka_consumer)
        for name, required in pinned.items():
            if str(config[name]).lower() != str(required).lower():
                raise ConfigError(
                    f"{name} must stay {str(required).lower()} in {self.processing_guarantee} "
                    "mode: offsets are committed only once the output is acknowledged"
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
        if self.exactly_once:
            config["transactional.id"] = self.transactional_id
            # Longer than a checkpoint plus a broker restart; the coordinator aborts a
            # transaction left open longer (a member that died mid-checkpoint).
            config["transaction.timeout.ms"] = max(60_000, 10 * self.checkpoint_interval_ms)
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
            "processing_guarantee": self.processing_guarantee,
            "member_name": self.member_name,
            "static_membership": self.static_membership,
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


def _read_files(env: Mapping[str, str]) -> dict[str, str]:
    """<NAME>_FILE for any secret-bearing setting (the Docker / Kubernetes secret-file
    convention): the setting's value is the file's content, without a final newline.
    Secrets then never sit in the process environment of a container spec."""
    resolved = dict(env)
    for name, path in env.items():
        base = name.removesuffix("_FILE")
        if base == name or not _TAKES_A_FILE.fullmatch(base):
            continue
        if base in env:
            raise ConfigError(f"{base} and {name} are both set; set one")
        try:
            resolved[base] = Path(path).read_text("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"{name}: cannot read {path} ({reason})") from None
        del resolved[name]
    return resolved


def _split_secrets(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _passthrough(
    env: Mapping[str, str], prefix: str, exclude: tuple[str, ...] = (), client: str = "both"
) -> dict:
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
            _check_property(name, prop, value, client)
            props[prop] = value
    return props


def _check_property(variable: str, prop: str, value: str, client: str) -> None:
    """librdkafka itself says whether a property exists and takes this value: a throwaway
    client (no bootstrap servers, so it never connects) is created with it alone."""
    from confluent_kafka import Consumer, KafkaException, Producer

    quiet = logging.getLogger("consumer.config.check")
    quiet.disabled = True
    try:
        if client in ("both", "producer"):
            Producer({prop: value}, logger=quiet)
        if client in ("both", "consumer"):
            Consumer({"group.id": "settings-check", prop: value}, logger=quiet).close()
    except KafkaException as exc:
        message = exc.args[0].str()
        # Only what is wrong with this property alone; a combination that does not work
        # (SASL_SSL without its mechanism, ...) is reported when the clients are built.
        if not message.startswith(("No such configuration property", "Invalid value")):
            return
        if any(word in prop for word in _SECRET_WORDS):  # librdkafka quotes the value
            raise ConfigError(f"{variable}: librdkafka refuses this value") from None
        raise ConfigError(f"{variable}: {message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{variable}: {exc}") from None


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


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {env[name]!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    """A topic or group name: unset takes the default; set, it must say something."""
    if name not in env:
        return default
    value = env[name].strip()
    if not value or any(c.isspace() for c in value):
        raise ConfigError(f"{name} must be a non-empty name without spaces, got {env[name]!r}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if not 0 <= value <= 65535:
        raise ConfigError(
            f"{name} must be a port number (0-65535; 0 picks a free one), got {value}"
        )
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {env[name]!r}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env[name]) if env.get(name) else default
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {env[name]!r}") from None
