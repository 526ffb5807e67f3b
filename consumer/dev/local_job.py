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
import sys
import threading
from collections import Counter
from types import MappingProxyType

from confluent_kafka import Producer
from rich.console import Console
from rich.text import Text

from consumer import logs
from consumer.config import Settings
from consumer.console import HumanLogHandler, console, table
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from consumer.dev.topics import ensure_topics
from consumer.errors import ConfigError
from consumer.metrics import Metrics
from consumer.records import Accepted, Ignored, RawRecord, Rejected
from consumer.service import run_service

log = logging.getLogger(__name__)

_STYLES = {"accepted": "green", "ignored": "cyan", "rejected": "red"}


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
    logs.configure(settings.log_level, path=None if verbose else log_file)
    if not verbose:
        logging.getLogger().addHandler(HumanLogHandler(console(sys.stderr)))
        out.print(f"[dim]the service's JSON logs: {log_file} (--verbose shows them here)[/dim]")
    broker = None
    if not settings.bootstrap_servers:
        from consumer.dev.local_broker import LocalBroker

        out.print("starting a local Apache Kafka broker ...")
        broker = LocalBroker()
        broker.start()
        settings = dataclasses.replace(settings, bootstrap_servers=broker.bootstrap_servers)
        out.print(f"started a local Apache Kafka broker at {broker.bootstrap_servers}")
    if not settings.webhook_secrets:
        secrets = {name: (secret,) for name, secret in LOCAL_SECRETS.items()}
        settings = dataclasses.replace(settings, webhook_secrets=MappingProxyType(secrets))
    metrics = Metrics()
    view = LiveView(out)
    summarise = True
    try:
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
    lines = []
    bootstrap = settings.bootstrap_servers
    if broker_stopped:
        bootstrap = "localhost:9092"
        lines += [
            "the local broker stopped with this run; to look further, keep one running:",
            "  python -m consumer.dev.local_broker run --port 9092",
            f"  KAFKA_BOOTSTRAP_SERVERS={bootstrap} make run",
        ]
    env = f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}"
    lines += [
        f"metrics: http://localhost:{settings.metrics_port}/metrics  (probes: /healthz, /readyz)"
        if settings.metrics_port
        else "metrics: on a free port (LOYALTY_METRICS_PORT=0), shown in the log",
        "to look further:",
        f"  {env} loyalty-consumer tail --from-beginning              # clean records, decoded",
        f"  {env} loyalty-consumer tail dead-letter --from-beginning  # rejections and why",
        f"  {env} loyalty-consumer replay --reason signature_invalid --dry-run",
    ]
    return "\n".join(lines)
