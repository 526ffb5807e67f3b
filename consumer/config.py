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

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
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
    # Every interface by default: the kubelet's probes and Prometheus reach a container
    # at its pod address, never at its loopback. 127.0.0.1 keeps the endpoint local.
    metrics_host: str = "0.0.0.0"
    # Providers `run` may leave unverified (LOYALTY_UNSIGNED_PROVIDERS): an explicit
    # opt-out, logged and exported as loyalty_unsigned_providers. Every other provider
    # must have a secret; see require_signatures.
    unsigned_providers: frozenset[str] = frozenset()
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
    # A member that stops heart-beating loses its partitions after this long.
    session_timeout_ms: int = 15_000
    # Exactly-once: a transaction commits after this long or this many records,
    # whichever comes first. The interval is the latency a read_committed reader sees.
    checkpoint_interval_ms: int = 1_000
    checkpoint_records: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every variable of VARIABLES parsed and checked, then the pass-through ones. A
        bad value raises ConfigError with one line naming the variable; an empty value
        means the default."""
        env = _with_secret_files(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for variable in VARIABLES:
            raw = env.get(variable.name)
            if not raw:
                continue
            try:
                values[variable.field] = variable.parse(raw)
            except ValueError as exc:
                shown = f"{variable.name}={raw!r}" if variable.shown else variable.name
                raise ConfigError(f"{shown}: {exc}") from None
        # <PROVIDER>_WEBHOOK_SECRET for any provider name; the pipeline refuses names
        # that are not in its registry, so a misspelt variable is not a silently
        # unverified provider.
        secrets = {
            match[1].lower(): _split_secrets(value)
            for name, value in env.items()
            if (match := _WEBHOOK_SECRET_VARIABLE.fullmatch(name))
        }
        return cls(
            **values,
            webhook_secrets=MappingProxyType({k: v for k, v in secrets.items() if v}),
            kafka_common=_passthrough(
                env,
                "KAFKA_",
                exclude=("KAFKA_CONSUMER_", "KAFKA_PRODUCER_", "KAFKA_BOOTSTRAP_SERVERS"),
            ),
            kafka_consumer=_passthrough(env, "KAFKA_CONSUMER_"),
            kafka_producer=_passthrough(env, "KAFKA_PRODUCER_"),
        )

    def require_signatures(self, provider_names: tuple[str, ...]) -> tuple[str, ...]:
        """What `run` demands: every provider of the registry (`provider_names`) has a
        non-empty secret or is named in LOYALTY_UNSIGNED_PROVIDERS, never both. An empty
        secret is a configuration error, not "no verification". Returns the providers
        left unverified by that opt-out; raises ConfigError in one line otherwise."""
        known = ", ".join(provider_names)
        unknown = sorted(self.unsigned_providers - set(provider_names))
        if unknown:
            raise ConfigError(
                f"LOYALTY_UNSIGNED_PROVIDERS: unknown provider(s) {', '.join(unknown)}; "
                f"known: {known}"
            )
        unknown = sorted(set(self.webhook_secrets) - set(provider_names))
        if unknown:
            variables = ", ".join(f"{name.upper()}_WEBHOOK_SECRET" for name in unknown)
            raise ConfigError(
                f"{variables}: webhook secret for unknown provider(s) {', '.join(unknown)}; "
                f"known: {known}"
            )
        both = sorted(self.unsigned_providers & set(self.webhook_secrets))
        if both:
            raise ConfigError(
                f"LOYALTY_UNSIGNED_PROVIDERS names {', '.join(both)}, which also has a "
                "webhook secret: remove one or the other"
            )
        missing = [
            name
            for name in provider_names
            if name not in self.webhook_secrets and name not in self.unsigned_providers
        ]
        if missing:
            variables = ", ".join(f"{name.upper()}_WEBHOOK_SECRET" for name in missing)
            raise ConfigError(
                f"{variables}: not set or empty; `run` verifies every provider's signature "
                f"(set the secret, or name the provider in LOYALTY_UNSIGNED_PROVIDERS to "
                "accept its webhooks unverified)"
            )
        return tuple(name for name in provider_names if name in self.unsigned_providers)

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
                variable = self.variable_for_property(name, "consumer")
                raise ConfigError(
                    f"{variable}: {name} must stay {str(required).lower()} in "
                    f"{self.processing_guarantee} mode: offsets are committed only once the "
                    "output is acknowledged"
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

    def client_config(self, config: Mapping[str, Any], client: str) -> dict[str, Any]:
        """`config` with the bootstrap servers and the KAFKA_* and KAFKA_<CLIENT>_*
        properties on top: for the operators' commands (replay, tail), whose clients
        are not the service's."""
        specific = {"consumer": self.kafka_consumer, "producer": self.kafka_producer}[client]
        return self._with_overrides(dict(config), specific)

    def variable_for_property(self, prop: str, client: str) -> str | None:
        """The environment variable that set a librdkafka property of `client`
        ('consumer' or 'producer'), to name it in an error; None when none did."""
        prop = _PROPERTY_ALIASES.get(prop, prop)
        specific = {"consumer": self.kafka_consumer, "producer": self.kafka_producer}[client]
        if prop in specific:
            return _variable_name(f"KAFKA_{client.upper()}_", prop)
        if prop in self.kafka_common:
            return _variable_name("KAFKA_", prop)
        if prop == "bootstrap.servers":
            return "KAFKA_BOOTSTRAP_SERVERS"
        return None

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
            "metrics_host": self.metrics_host,
            "unsigned_providers": sorted(self.unsigned_providers),
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


def _variable_name(prefix: str, prop: str) -> str:
    return prefix + prop.replace("_", "__").replace(".", "_").upper()


# librdkafka reports some properties under their canonical name, not the alias set.
_PROPERTY_ALIASES = {
    "queue.buffering.max.ms": "linger.ms",
    "message.send.max.retries": "retries",
    "request.required.acks": "acks",
    "max.in.flight.requests.per.connection": "max.in.flight",
    "metadata.broker.list": "bootstrap.servers",
}


# --- parsers: value text -> value, or ValueError saying what is expected ------------------


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be an integer") from None


def _positive_integer(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port, 1-65535 (0: any free port)")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if not (value > 0 and value != float("inf")):
        raise ValueError("must be a positive number of seconds")
    return value


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _topic(text: str) -> str:
    if not _TOPIC_NAME.fullmatch(text) or text in (".", ".."):
        raise ValueError("must be a Kafka topic name: letters, digits, '.', '_', '-'")
    return text


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text.strip()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _http_url(text: str) -> str:
    if not re.match(r"https?://[^/\s]+", text.strip()):
        raise ValueError("must be an http:// or https:// URL")
    return text.strip()


def _directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ValueError("must be an existing directory of .avsc files")
    return path


def _guarantee(text: str) -> str:
    if text not in PROCESSING_GUARANTEES:
        raise ValueError(f"must be one of {', '.join(PROCESSING_GUARANTEES)}")
    return text


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _provider_names(text: str) -> frozenset[str]:
    names = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    if not names or not all(_PROVIDER_NAME.fullmatch(name) for name in names):
        raise ValueError("must be provider names, comma-separated (e.g. rivo,mage_loyalty)")
    return names


_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _listen_host(text: str) -> str:
    host = text.strip()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        if _HOST_NAME.fullmatch(host):
            return host
    raise ValueError("must be an IP address or host name to listen on (0.0.0.0, ::, 127.0.0.1)")


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the Settings field it sets, and the parser
    that turns its text into the value (raising ValueError saying what is expected)."""

    name: str
    field: str
    parse: Callable[[str], Any]
    # False for values that may carry credentials: an error names the variable only.
    shown: bool = True


# Every named setting. A new setting is one line here and a field above.
VARIABLES: tuple[Variable, ...] = (
    Variable("KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers", _text),
    Variable("LOYALTY_RAW_TOPIC", "raw_topic", _topic),
    Variable("LOYALTY_CLEAN_TOPIC", "clean_topic", _topic),
    Variable("LOYALTY_DLQ_TOPIC", "dead_letter_topic", _topic),
    Variable("LOYALTY_GROUP_ID", "group_id", _text),
    Variable("LOYALTY_MAX_PAYLOAD_BYTES", "max_payload_bytes", _positive_integer),
    Variable("SCHEMA_REGISTRY_URL", "schema_registry_url", _http_url, shown=False),
    Variable(
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "schema_registry_basic_auth", _text, shown=False
    ),
    Variable("LOYALTY_BATCH_SIZE", "batch_size", _positive_integer),
    Variable("LOYALTY_POLL_TIMEOUT_SECONDS", "poll_timeout_seconds", _positive_number),
    Variable("LOYALTY_METRICS_PORT", "metrics_port", _port),
    Variable("LOYALTY_METRICS_HOST", "metrics_host", _listen_host),
    Variable("LOYALTY_UNSIGNED_PROVIDERS", "unsigned_providers", _provider_names),
    Variable("LOYALTY_LIVENESS_TIMEOUT_SECONDS", "liveness_timeout_seconds", _positive_number),
    Variable("LOYALTY_SHUTDOWN_DEADLINE_SECONDS", "shutdown_deadline_seconds", _positive_number),
    Variable("LOYALTY_STATISTICS_INTERVAL_MS", "statistics_interval_ms", _positive_integer),
    Variable("LOYALTY_LOG_LEVEL", "log_level", _log_level),
    Variable("LOYALTY_SCHEMA_DIR", "schema_dir", _directory),
    Variable("LOYALTY_PROCESSING_GUARANTEE", "processing_guarantee", _guarantee),
    Variable("LOYALTY_MEMBER_NAME", "member_name", _text),
    Variable("LOYALTY_STATIC_MEMBERSHIP", "static_membership", _boolean),
    Variable("LOYALTY_SESSION_TIMEOUT_MS", "session_timeout_ms", _positive_integer),
    Variable("LOYALTY_CHECKPOINT_INTERVAL_MS", "checkpoint_interval_ms", _positive_integer),
    Variable("LOYALTY_CHECKPOINT_RECORDS", "checkpoint_records", _positive_integer),
)
