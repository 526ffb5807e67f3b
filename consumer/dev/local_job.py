"""`loyalty-consumer local`: the service on an embedded default, for a first look.

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts the project's local Apache Kafka
broker; creates the three topics; feeds the sample webhooks (signed as the providers
sign them); runs the service and shows each record's outcome as it happens, in words.
The service's JSON logs go to a file (or, with --verbose, to stderr as well); warnings
and errors are shown in words. Ctrl-C (or, with --exit-when-done, the last sample
acknowledged) stops the service (flush, commit, leave the group), then the broker, and
prints a summary table of the outcomes by provider and reason.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from collections import Counter
from types import MappingProxyType

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.text import Text

from consumer import logs
from consumer.config import Settings
from consumer.console import HumanLogHandler, console, how_to_run, table
from consumer.dev.ports import why_port_is_taken
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from consumer.dev.topics import ensure_topics
from consumer.errors import ConfigError, OperatorCommandError
from consumer.kafka_errors import describe
from consumer.kafka_io import construct_client
from consumer.metrics import Metrics
from consumer.records import Accepted, Ignored, RawRecord, Rejected
from consumer.service import run_service

log = logging.getLogger(__name__)

_STYLES = {"accepted": "green", "ignored": "cyan", "rejected": "red"}

# How long the first look waits for KAFKA_BOOTSTRAP_SERVERS to answer before saying it
# cannot reach them: a broker on the network answers in milliseconds.
REACH_TIMEOUT_SECONDS = 5.0
# Where the end-of-run hints tell a person to keep a broker running.
HINT_BROKER_PORT = 9092


class LocalRunFailed(OperatorCommandError):
    """The first look cannot go on: what happened and what to do, in one or two lines."""


class LiveView:
    """One line per record as the pipeline decides its outcome, and the counts."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()

    def observe(self, raw: RawRecord, outcome: Accepted | Ignored | Rejected) -> None:
        where = f"{raw.partition}@{raw.offset}"
        if isinstance(outcome, Accepted):
            record = outcome.record
            kind, provider = "accepted", outcome.provider
            amounts = [f"{record['points_redeemed']} points"]
            if record["credits_redeemed"] not in (None, "0.00"):
                amounts.append(f"{record['credits_redeemed']} credits")
            detail = (
                f"{outcome.event_type}  {record['event_id'][:40]}  "
                f"customer {record['customer']['shopify_customer_id']}, "
                f"{', '.join(amounts)}, reward {record['reward']['name']!r}"
            )
        elif isinstance(outcome, Ignored):
            kind, provider = "ignored", outcome.provider
            detail = f"{outcome.event_type}  not a redemption"
        else:
            kind, provider = "rejected", outcome.provider or "unknown"
            field = f" at {outcome.field}" if outcome.field else ""
            detail = f"{outcome.reason}{field}  {outcome.message}"
        line = Text()
        line.append(f"{kind:<9}", style=f"bold {_STYLES[kind]}")
        line.append(f"{provider:<13}")
        line.append(detail)
        line.append(f"  ({raw.topic} {where})", style="dim")
        with self._lock:
            self.outcomes[kind] += 1
            self._out.print(line)

    @property
    def seen(self) -> int:
        return sum(self.outcomes.values())


def run_local(
    settings: Settings,
    feed_samples: bool = True,
    exit_when_done: bool = False,
    verbose: bool = False,
    log_file: str = "loyalty-consumer-local.log",
) -> None:
    out = console()
    if threading.current_thread() is threading.main_thread():
        # "Ctrl-C stops" is on the screen, so it is honoured however we were started: a
        # shell that starts us in the background (a script, `make ... &`) hands SIGINT
        # over ignored, and Python then never raises KeyboardInterrupt. `run_service`
        # installs its own handlers once the service starts.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Before anything starts: a port in use would otherwise be found only after the
    # broker started and the samples were fed.
    _check_port_free(settings.metrics_port)
    logs.configure(settings.log_level, path=None if verbose else log_file)
    if not verbose:
        logging.getLogger().addHandler(HumanLogHandler(console(sys.stderr)))
        out.print(f"[dim]the service's JSON logs: {log_file} (--verbose shows them here)[/dim]")
    broker = None
    summarise = False  # a summary only once the service has run
    try:
        if settings.bootstrap_servers:
            _check_reachable(settings)
        else:
            broker = _start_local_broker(out, verbose)
            settings = dataclasses.replace(settings, bootstrap_servers=broker.bootstrap_servers)
        if not settings.webhook_secrets:
            secrets = {name: (secret,) for name, secret in LOCAL_SECRETS.items()}
            settings = dataclasses.replace(settings, webhook_secrets=MappingProxyType(secrets))
        out.print(
            f"consumer group {settings.group_id}"
            + (
                " (a group of its own; LOYALTY_GROUP_ID chooses one)"
                if settings.group_id.startswith(LOCAL_GROUP_PREFIX)
                else ""
            )
        )
        metrics = Metrics()
        view = LiveView(out)
        topics = (settings.raw_topic, settings.clean_topic, settings.dead_letter_topic)
        ensure_topics(settings, topics)
        fed = _feed(settings, out) if feed_samples else 0
        out.print(
            f"consuming {settings.raw_topic}; "
            + ("stops when every sample is done" if exit_when_done else "Ctrl-C to stop")
        )
        out.print(_look_further(settings), style="dim")

        def done() -> bool:
            acknowledged = _total(metrics.clean_records) + _total(metrics.dead_letters)
            expected_outputs = view.outcomes["accepted"] + view.outcomes["rejected"]
            return view.seen >= fed and acknowledged >= expected_outputs

        summarise = True
        run_service(
            settings, metrics, observe=view.observe, stop_when=done if exit_when_done else None
        )
    except ConfigError:
        summarise = False  # nothing ran; the one-line error says what to change
        raise
    finally:
        if broker is not None:
            broker.stop()
        if summarise:
            out.print()
            out.print(_summary(metrics))
            out.print(_look_further(settings, broker_stopped=broker is not None))


# `local` joins a group of its own unless LOYALTY_GROUP_ID names one: in the production
# group it would share the partitions with the running service (and see nothing).
LOCAL_GROUP_PREFIX = "loyalty-consumer-local-"


def _check_port_free(port: int) -> None:
    if not port:
        return  # 0: any free port
    # As the metrics server binds: every address.
    reason = why_port_is_taken("", port)
    if reason is not None:
        raise ConfigError(
            f"LOYALTY_METRICS_PORT={port}: cannot listen there: {reason} "
            "(another service or `make run`?); choose a free port, or 0 for any"
        )


def _check_reachable(settings: Settings) -> None:
    # Its connection failures would repeat what the one line below says.
    admin = construct_client(
        AdminClient,
        settings,
        "consumer",
        {**settings.client_config({}, "consumer"), "log_level": 0},
        {},
    )
    try:
        metadata = admin.list_topics(timeout=REACH_TIMEOUT_SECONDS)
    except KafkaException as exc:
        problem = describe(exc)
    else:
        if metadata.brokers:
            return
        problem = "the metadata lists no broker"
    raise LocalRunFailed(
        f"cannot reach the brokers at {settings.bootstrap_servers} "
        f"(KAFKA_BOOTSTRAP_SERVERS) within {REACH_TIMEOUT_SECONDS:.0f} s: {problem}\n"
        "start them, or unset KAFKA_BOOTSTRAP_SERVERS to run on a local broker"
    )


def _start_local_broker(out: Console, verbose: bool):
    from consumer.dev.local_broker import LocalBroker, LocalBrokerError

    out.print("starting a local Apache Kafka broker (Ctrl-C stops) ...")
    broker = LocalBroker()
    try:
        broker.start()
    except LocalBrokerError as exc:
        # The first line says what happened; the broker's log tail follows only with
        # --verbose.
        lines = str(exc).splitlines() or [""]
        shown = str(exc) if verbose else lines[0]
        raise LocalRunFailed(
            f"{shown}\nor set KAFKA_BOOTSTRAP_SERVERS to a running broker"
            + (" (--verbose shows the broker's log)" if shown != str(exc) else "")
        ) from None
    out.print(f"started a local Apache Kafka broker at {broker.bootstrap_servers}")
    return broker


def _feed(settings: Settings, out: Console) -> int:
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, **settings.kafka_common},
        logger=logging.getLogger("consumer.kafka"),
    )
    samples = sample_webhooks()
    for sample in samples:
        producer.produce(settings.raw_topic, value=sample.value, headers=list(sample.headers))
    producer.flush(30)
    expected = Counter(sample.expected for sample in samples)
    shown = ", ".join(f"{count} {what}" for what, count in sorted(expected.items()))
    out.print(f"fed {len(samples)} sample webhooks to {settings.raw_topic}; expected: {shown}")
    return len(samples)


def _total(counter) -> float:
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _summary(metrics: Metrics):
    counts: Counter[tuple[str, str, str]] = Counter()
    for metric in metrics.outcomes.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.value:
                labels = sample.labels
                detail = labels["reason"] or labels["event_type"]
                counts[(labels["outcome"], labels["provider"], detail)] += int(sample.value)
    order = {"accepted": 0, "ignored": 1, "rejected": 2}
    rows = [
        (outcome, provider, detail, count)
        for (outcome, provider, detail), count in sorted(
            counts.items(), key=lambda item: (order.get(item[0][0], 3), item[0])
        )
    ]
    rows.append(("total", "", "", sum(counts.values())))
    return table("outcomes", ("outcome", "provider", "reason / event type", "records"), rows)


def _look_further(settings: Settings, broker_stopped: bool = False) -> str:
    """Commands to look further, written so they work pasted into a fresh shell."""
    lines = []
    bootstrap = settings.bootstrap_servers
    command = how_to_run()
    if broker_stopped:
        bootstrap = f"127.0.0.1:{HINT_BROKER_PORT}"
        lines += [
            "the local broker stopped with this run; to look further, keep one running:",
            f"  {how_to_run('consumer.dev.local_broker')} run --port {HINT_BROKER_PORT}",
            f"  KAFKA_BOOTSTRAP_SERVERS={bootstrap} make run",
        ]
    env = f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}"
    topics = (
        f"LOYALTY_RAW_TOPIC={settings.raw_topic} "
        if settings.raw_topic != Settings.raw_topic
        else ""
    )
    if settings.clean_topic != Settings.clean_topic:
        topics += f"LOYALTY_CLEAN_TOPIC={settings.clean_topic} "
    if settings.dead_letter_topic != Settings.dead_letter_topic:
        topics += f"LOYALTY_DLQ_TOPIC={settings.dead_letter_topic} "
    lines += [
        f"metrics: http://localhost:{settings.metrics_port}/metrics  (probes: /healthz, /readyz)"
        if settings.metrics_port
        else "metrics: on a free port (LOYALTY_METRICS_PORT=0), shown in the log",
        "to look further:",
        f"  {env} {topics}{command} tail --from-beginning              # clean records",
        f"  {env} {topics}{command} tail dead-letter --from-beginning  # rejections and why",
        f"  {env} {topics}LOYALTY_GROUP_ID={settings.group_id} {command} status  # lag",
        f"  {env} {topics}{command} replay --reason signature_invalid --dry-run",
    ]
    return "\n".join(lines)
