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

import difflib
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
    # The runner commits the input positions itself at each checkpoint, once the
    # outputs are acknowledged; librdkafka must neither store nor commit on its own.
    AT_LEAST_ONCE: {"enable.auto.offset.store": False, "enable.auto.commit": False},
    EXACTLY_ONCE: {
        "enable.auto.offset.store": False,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    },
}
# Room for the dead-letter headers on top of a value at the payload limit.
_HEADER_ROOM_BYTES = 64 * 1024
# Records at the payload limit one fetch request may bring (fetch.max.bytes).
FETCH_RECORDS = 8
# librdkafka wants receive.message.max.bytes at least fetch.max.bytes + 512.
_RECEIVE_ROOM_BYTES = 64 * 1024
# The consumer's prefetch buffer (queued.max.messages.kbytes; librdkafka's default is
# 64 MiB): with a 1 MiB payload limit, 16 records at the limit, thousands of webhooks.
PREFETCH_KIBIBYTES = 16 * 1024
ON_INTERNAL_ERROR_CHOICES = ("dead-letter", "stop")
# The brokers' default group.min.session.timeout.ms and group.max.session.timeout.ms:
# a JoinGroup with a session timeout outside them is refused, and librdkafka would retry
# it every few seconds forever. librdkafka's own range (1..3,600,000) is wider.
BROKER_SESSION_TIMEOUT_MIN_MS = 6_000
BROKER_SESSION_TIMEOUT_MAX_MS = 1_800_000
# Kafka's default session timeout (KIP-735), for the classic protocol: see
# docs/guarantees.md#the-session-timeout for what a shorter one costs.
DEFAULT_SESSION_TIMEOUT_MS = 45_000
# librdkafka's default heartbeat.interval.ms; a member heart-beats several times a session.
DEFAULT_HEARTBEAT_INTERVAL_MS = 3_000
# The brokers' default transaction.max.timeout.ms: a longer transaction.timeout.ms makes
# every InitProducerId fail (exactly-once).
BROKER_TRANSACTION_MAX_TIMEOUT_MS = 900_000
# transaction.timeout.ms is derived from the checkpoint interval (see producer_config).
_TRANSACTION_TIMEOUT_MIN_MS = 60_000
_TRANSACTION_TIMEOUTS_PER_CHECKPOINT = 10
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
    # A member that stops heart-beating loses its partitions after this long. Kafka's
    # own default (KIP-735): a shorter timeout hands a killed member's partitions over
    # sooner (measured 13-15 s at 15 s), but every broker outage longer than it makes
    # each member lose its partitions and re-read its uncommitted work (1,732
    # duplicates for a 17 s outage at 15 s; none at 45 s). Outages outnumber kills,
    # and a graceful stop leaves the group at once whatever the timeout.
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    # A checkpoint (outputs acknowledged, then input positions committed; exactly-once:
    # the transaction committed) after this long or this many records, whichever comes
    # first. The interval is the latency a read_committed reader sees, and the most a
    # restart reads again with at-least-once.
    checkpoint_interval_ms: int = 1_000
    checkpoint_records: int = 10_000
    # What a record whose processing raised an unexpected exception (a bug) becomes:
    # a dead letter with reason internal_error (logged with its traceback, counted,
    # alerted on) and the loop goes on, or the service stops (Kafka Streams' processing
    # exception handler, Connect's errors.tolerance). Stopping re-reads the same record
    # on every restart, so one record can halt a partition until a fix is deployed.
    on_internal_error: str = "dead-letter"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every variable of VARIABLES parsed and checked, then the pass-through ones. A
        bad value raises ConfigError with one line naming the variable; an empty value
        means the default."""
        env = _with_secret_files(os.environ if env is None else env)
        _refuse_unknown_variables(env)
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
        settings = cls(
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
        settings.check_combinations()
        return settings

    def check_combinations(self) -> None:
        """Settings each valid alone that cannot work together, or that the brokers
        would refuse over and over once running: ConfigError, one line."""
        roles = (
            ("LOYALTY_RAW_TOPIC", self.raw_topic),
            ("LOYALTY_CLEAN_TOPIC", self.clean_topic),
            ("LOYALTY_DLQ_TOPIC", self.dead_letter_topic),
        )
        for index, (name, topic) in enumerate(roles):
            for other, other_topic in roles[index + 1 :]:
                if topic == other_topic:
                    # A dead letter written to the raw topic is consumed, rejected and
                    # written again, forever; clean = raw feeds Avro back as webhooks.
                    raise ConfigError(
                        f"{other}={topic!r} is also {name}: the raw, clean and "
                        "dead-letter topics must be three different topics"
                    )
        if self.broker_assigned_group:
            if self.session_timeout_ms != DEFAULT_SESSION_TIMEOUT_MS:
                # KIP-848: the session timeout is the group's, set on the brokers.
                raise ConfigError(
                    f"LOYALTY_SESSION_TIMEOUT_MS={self.session_timeout_ms}: with "
                    "group.protocol=consumer the session timeout is the brokers' "
                    "group.consumer.session.timeout.ms; unset it"
                )
        else:
            self._check_group_timeouts()
        if self.exactly_once:
            longest = BROKER_TRANSACTION_MAX_TIMEOUT_MS // _TRANSACTION_TIMEOUTS_PER_CHECKPOINT
            if self.checkpoint_interval_ms > longest and not self._producer_sets(
                "transaction.timeout.ms"
            ):
                raise ConfigError(
                    f"LOYALTY_CHECKPOINT_INTERVAL_MS={self.checkpoint_interval_ms}: at most "
                    f"{longest} ms, or the transaction timeout it implies exceeds the "
                    f"brokers' default transaction.max.timeout.ms "
                    f"({BROKER_TRANSACTION_MAX_TIMEOUT_MS} ms)"
                )

    def _check_group_timeouts(self) -> None:
        """The classic protocol's session timeout and heartbeat, as the brokers accept them."""
        session, session_variable = self._consumer_property(
            "session.timeout.ms", self.session_timeout_ms, "LOYALTY_SESSION_TIMEOUT_MS"
        )
        if not BROKER_SESSION_TIMEOUT_MIN_MS <= session <= BROKER_SESSION_TIMEOUT_MAX_MS:
            raise ConfigError(
                f"{session_variable}={session}: the brokers accept a session timeout of "
                f"{BROKER_SESSION_TIMEOUT_MIN_MS}..{BROKER_SESSION_TIMEOUT_MAX_MS} ms "
                "(their default group.min/max.session.timeout.ms)"
            )
        heartbeat, heartbeat_variable = self._consumer_property(
            "heartbeat.interval.ms", DEFAULT_HEARTBEAT_INTERVAL_MS, None
        )
        if heartbeat >= session:
            raise ConfigError(
                f"{heartbeat_variable or session_variable}: heartbeat.interval.ms "
                f"({heartbeat}) must be lower than session.timeout.ms ({session})"
            )

    def _consumer_property(
        self, prop: str, default: int, variable: str | None
    ) -> tuple[int, str | None]:
        """The consumer's value of an integer property and the variable that set it."""
        for props, prefix in (
            (self.kafka_consumer, "KAFKA_CONSUMER_"),
            (self.kafka_common, "KAFKA_"),
        ):
            if prop in props:
                name = _variable_name(prefix, prop)
                try:
                    return int(props[prop]), name
                except ValueError:
                    raise ConfigError(f"{name}={props[prop]!r}: must be an integer") from None
        return default, variable

    def _producer_sets(self, prop: str) -> bool:
        return prop in self.kafka_producer or prop in self.kafka_common

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
    def broker_assigned_group(self) -> bool:
        """KIP-848's group protocol (KAFKA_CONSUMER_GROUP_PROTOCOL=consumer): the brokers
        assign partitions and own the session timeout, and librdkafka refuses the
        client-side session.timeout.ms and partition.assignment.strategy."""
        protocol = self.kafka_consumer.get("group.protocol") or self.kafka_common.get(
            "group.protocol", "classic"
        )
        return str(protocol).lower() == "consumer"

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == EXACTLY_ONCE

    @property
    def max_fetch_record_bytes(self) -> int:
        """The largest raw record worth fetching: the payload limit and room for its
        headers. Larger records are still fetched (librdkafka grows a fetch to take
        at least one record), and rejected as payload_too_large."""
        return self.max_payload_bytes + _HEADER_ROOM_BYTES

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
            # Bounded prefetch and fetch sizes derived from the payload limit: a record
            # at the limit still fits in one fetch, and what librdkafka buffers ahead of
            # the loop (and may decompress) stays a few fetches, whatever the backlog.
            "max.partition.fetch.bytes": self.max_fetch_record_bytes,
            "fetch.max.bytes": FETCH_RECORDS * self.max_fetch_record_bytes,
            "receive.message.max.bytes": FETCH_RECORDS * self.max_fetch_record_bytes
            + _RECEIVE_ROOM_BYTES,
            "queued.max.messages.kbytes": PREFETCH_KIBIBYTES,
            # A new group starts from the oldest webhook kept: skipping to the end would
            # silently lose redemptions that arrived before the first deployment.
            "auto.offset.reset": "earliest",
            # Incremental rebalances: a joining replica does not stop the others.
            "partition.assignment.strategy": "cooperative-sticky",
            "statistics.interval.ms": self.statistics_interval_ms,
        }
        if self.broker_assigned_group:
            del config["session.timeout.ms"], config["partition.assignment.strategy"]
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
        if str(config.get("check.crcs", "false")).lower() == "true":
            # Measured with librdkafka 2.16: a batch that fails its CRC check is reported
            # once, then misread (an error at a made-up offset) and its partition stalls
            # with no record after it. Undetected damage still meets the signature check.
            raise ConfigError(
                f"{self.variable_for_property('check.crcs', 'consumer')}: check.crcs must "
                "stay false: librdkafka misreads the rest of a batch that fails the check "
                "and stalls its partition"
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
            # Delivery reports only for failures: the checkpoint waits for all outputs
            # (flush, or the transaction's commit) instead of counting them one by one.
            "delivery.report.only.error": True,
        }
        if self.exactly_once:
            config["transactional.id"] = self.transactional_id
            # Longer than a checkpoint plus a broker restart; the coordinator aborts a
            # transaction left open longer (a member that died mid-checkpoint).
            config["transaction.timeout.ms"] = max(
                _TRANSACTION_TIMEOUT_MIN_MS,
                _TRANSACTION_TIMEOUTS_PER_CHECKPOINT * self.checkpoint_interval_ms,
            )
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
        """Settings safe to log, one entry per VARIABLES field: values that may carry
        credentials are masked ('***', or a URL's user info)."""
        shown: dict[str, Any] = {}
        for variable in VARIABLES:
            value = getattr(self, variable.field)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, frozenset):
                value = sorted(value)
            if not variable.shown and value:
                value = _URL_USERINFO.sub("***@", value) if "://" in value else "***"
            shown[variable.field] = value
        shown["signature_checks"] = sorted(self.webhook_secrets)
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


def _refuse_unknown_variables(env: Mapping[str, str]) -> None:
    # A misspelt LOYALTY_* variable would silently leave its setting at the default
    # (a misspelt KAFKA_* one is refused by librdkafka).
    known = {variable.name for variable in VARIABLES} | set(TOOL_VARIABLES)
    for name in sorted(env):
        if name.startswith("LOYALTY_") and name not in known:
            raise ConfigError(unknown_variable_message(name))


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


def _user_info(text: str) -> str:
    user, colon, _password = text.partition(":")
    if not colon or not user.strip():
        raise ValueError("must be user:password")
    return text


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


def _on_internal_error(text: str) -> str:
    if text not in ON_INTERNAL_ERROR_CHOICES:
        raise ValueError(f"must be one of {', '.join(ON_INTERNAL_ERROR_CHOICES)}")
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
    """One environment variable: its name, the Settings field it sets, the parser that
    turns its text into the value (raising ValueError saying what is expected), and one
    line of help (`loyalty-consumer run --help` and the docs are generated from it)."""

    name: str
    field: str
    parse: Callable[[str], Any]
    # What the setting does, for people: `run --help` and the configuration page are
    # generated from it.
    help: str = ""
    # False for values that may carry credentials: an error names the variable only,
    # and describe() shows them masked.
    shown: bool = True
    # The default in words, where the field's default is computed or absent.
    default_shown: str | None = None


# Every named setting. A new setting is one line here and a field above.
VARIABLES: tuple[Variable, ...] = (
    Variable(
        "KAFKA_BOOTSTRAP_SERVERS",
        "bootstrap_servers",
        _text,
        "brokers to connect to",
        default_shown="none (required by `run`)",
    ),
    Variable("LOYALTY_RAW_TOPIC", "raw_topic", _topic, "raw webhooks to consume"),
    Variable("LOYALTY_CLEAN_TOPIC", "clean_topic", _topic, "canonical `LoyaltyRedemption` records"),
    Variable(
        "LOYALTY_DLQ_TOPIC",
        "dead_letter_topic",
        _topic,
        "rejected records with the reason in headers",
    ),
    Variable("LOYALTY_GROUP_ID", "group_id", _text, "consumer group"),
    Variable(
        "LOYALTY_MAX_PAYLOAD_BYTES",
        "max_payload_bytes",
        _positive_integer,
        "larger values are rejected as `payload_too_large`",
    ),
    Variable(
        "SCHEMA_REGISTRY_URL",
        "schema_registry_url",
        _http_url,
        "when set, the clean topic uses the Confluent wire format and registers "
        "`<clean topic>-value`: the production mode, which lets old readers read new records",
        shown=False,
        default_shown="none (single-object encoding)",
    ),
    Variable(
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        "schema_registry_basic_auth",
        _user_info,
        "`user:password` for the registry",
        shown=False,
    ),
    Variable("LOYALTY_BATCH_SIZE", "batch_size", _positive_integer, "records per `consume()` call"),
    Variable(
        "LOYALTY_POLL_TIMEOUT_SECONDS",
        "poll_timeout_seconds",
        _positive_number,
        "longest wait for a batch (bounds shutdown latency)",
    ),
    Variable(
        "LOYALTY_METRICS_PORT",
        "metrics_port",
        _port,
        "Prometheus metrics and probes (0: any free port)",
    ),
    Variable(
        "LOYALTY_METRICS_HOST",
        "metrics_host",
        _listen_host,
        "the address the metrics and probe endpoint listens on (`0.0.0.0`: every interface)",
    ),
    Variable(
        "LOYALTY_UNSIGNED_PROVIDERS",
        "unsigned_providers",
        _provider_names,
        "providers `run` accepts without a signature check (comma-separated; logged as a "
        "warning and exported as `loyalty_unsigned_providers`); every other provider needs "
        "its `<PROVIDER>_WEBHOOK_SECRET`",
        default_shown="none",
    ),
    Variable(
        "LOYALTY_LIVENESS_TIMEOUT_SECONDS",
        "liveness_timeout_seconds",
        _positive_number,
        "`/healthz` fails when the loop has not polled for this long",
    ),
    Variable(
        "LOYALTY_SHUTDOWN_DEADLINE_SECONDS",
        "shutdown_deadline_seconds",
        _positive_number,
        "after a stop signal, exit (status 3) by then even if the final commit still waits "
        "for the coordinator",
    ),
    Variable(
        "LOYALTY_STATISTICS_INTERVAL_MS",
        "statistics_interval_ms",
        _positive_integer,
        "librdkafka statistics (lag, round-trip, queue metrics; readiness)",
    ),
    Variable(
        "LOYALTY_LOG_LEVEL",
        "log_level",
        _log_level,
        "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`; logs are JSON lines on stderr",
    ),
    Variable(
        "LOYALTY_SCHEMA_DIR",
        "schema_dir",
        _directory,
        "a directory of `.avsc` files to use instead (same file names)",
        default_shown="the schemas inside the package",
    ),
    Variable(
        "LOYALTY_PROCESSING_GUARANTEE",
        "processing_guarantee",
        _guarantee,
        "`at-least-once` or `exactly-once` (see Guarantees and faults)",
    ),
    Variable(
        "LOYALTY_MEMBER_NAME",
        "member_name",
        _text,
        "this member's name, unique in the group: the exactly-once `transactional.id` is "
        "`<group>-<member name>`; in Kubernetes, the pod name",
        default_shown="the host name",
    ),
    Variable(
        "LOYALTY_STATIC_MEMBERSHIP",
        "static_membership",
        _boolean,
        "`true`: the member name is the static `group.instance.id`, so a restart within the "
        "session timeout keeps its partitions without a rebalance. For stable names (a "
        "StatefulSet); a static member does not leave the group on stop, so with names that "
        "change on every restart its partitions would idle for a session timeout",
    ),
    Variable(
        "LOYALTY_SESSION_TIMEOUT_MS",
        "session_timeout_ms",
        _positive_integer,
        "a member that stops heart-beating (killed, frozen) loses its partitions after this "
        f"long; the brokers accept {BROKER_SESSION_TIMEOUT_MIN_MS}.."
        f"{BROKER_SESSION_TIMEOUT_MAX_MS}. Not with KAFKA_CONSUMER_GROUP_PROTOCOL=consumer, "
        "where the brokers' group.consumer.session.timeout.ms applies",
    ),
    Variable(
        "LOYALTY_CHECKPOINT_INTERVAL_MS",
        "checkpoint_interval_ms",
        _positive_integer,
        "longest time between checkpoints (outputs acknowledged, then the input positions "
        "committed; exactly-once: the transaction committed); the latency a "
        "`read_committed` reader sees",
    ),
    Variable(
        "LOYALTY_CHECKPOINT_RECORDS",
        "checkpoint_records",
        _positive_integer,
        "a checkpoint also happens after this many records",
    ),
    Variable(
        "LOYALTY_ON_INTERNAL_ERROR",
        "on_internal_error",
        _on_internal_error,
        "what a record whose processing raised an unexpected exception (a bug) becomes: "
        "`dead-letter` (reason `internal_error`, logged with its traceback) or `stop`",
    ),
)

# LOYALTY_* variables read by the project's tools, not by the service: not a misspelling.
TOOL_VARIABLES = (
    "LOYALTY_KAFKA_CACHE",  # consumer.dev.local_broker: where the broker jars are cached
    "LOYALTY_CACHE_DIR",  # deploy/: where the deployment tools and images are cached
    "LOYALTY_REGISTRY_CACHE",  # the tests' schema registry download
    "LOYALTY_RAW_TOPIC_PARTITIONS",  # deploy/compose: partitions of the raw topic it creates
    "LOYALTY_IMAGE_BASE",  # deploy/container/build-image.sh: which base the image is built on
)


def unknown_variable_message(name: str) -> str:
    """A LOYALTY_* variable that no setting reads: named, with the nearest setting."""
    # Compared without the prefix they all share, which would make any two look alike.
    known = {
        known_name.removeprefix("LOYALTY_"): known_name
        for known_name in (*(variable.name for variable in VARIABLES), *TOOL_VARIABLES)
    }
    close = difflib.get_close_matches(name.removeprefix("LOYALTY_"), known, n=1, cutoff=0.6)
    hint = (
        f"; did you mean {known[close[0]]}?"
        if close
        else "; `loyalty-consumer run --help` lists them"
    )
    return f"{name}: no such setting{hint}"


def settings_help() -> str:
    """The settings part of `loyalty-consumer run --help`, generated from VARIABLES."""
    defaults = Settings()
    width = max(len(variable.name) for variable in VARIABLES) + 2
    lines = []
    for variable in VARIABLES:
        default = getattr(defaults, variable.field)
        if variable.field == "member_name":
            default = "the host name"
        elif isinstance(default, bool):
            default = str(default).lower()
        shown = "" if default in (None, "") else f" ({default})"
        lines.append(f"  {variable.name:<{width}}{variable.help}{shown}")
    return "\n".join(lines)
