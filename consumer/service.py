"""Wires settings into clients and runs the service: the composition root.

Start-up order, so that every mistake is reported before anything claims to run:
settings (validated when read) -> clients (librdkafka checks the KAFKA_* properties)
-> the metrics port -> "starting" -> the brokers answer -> the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaException

from consumer.checkpoint import AtLeastOnce, Checkpoint, ExactlyOnce
from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.kafka_errors import describe
from consumer.kafka_io import (
    DeliveryReports,
    Encoder,
    clean_record_encoder,
    new_consumer,
    new_producer,
    output_limits,
)
from consumer.metrics import Metrics, serve_http
from consumer.pipeline import Pipeline
from consumer.records import Accepted, Ignored, RawRecord, Rejected
from consumer.registry_encoder import RegistryEncoder, wait_until_registered
from consumer.runner import Runner, stop_on_signals
from consumer.waiting import StartupWait
from consumer.watchdog import Watchdog

log = logging.getLogger(__name__)

# The start-up check: how long one metadata request may take, and the back-off between
# attempts (doubling up to the cap). A repeated "cannot reach" line at most this often.
BROKER_CHECK_TIMEOUT_SECONDS = 5.0
BROKER_RETRY_FIRST_SECONDS = 1.0
BROKER_RETRY_MAX_SECONDS = 30.0
BROKER_REMINDER_SECONDS = 60.0

Outcome = Accepted | Ignored | Rejected
OutcomeObserver = Callable[[RawRecord, Outcome], None]


class ObservedPipeline:
    """The pipeline, telling an observer each outcome (the live view of `local`)."""

    def __init__(self, pipeline: Pipeline, observe: OutcomeObserver) -> None:
        self._pipeline = pipeline
        self._observe = observe

    def process(self, raw: RawRecord) -> Outcome:
        outcome = self._pipeline.process(raw)
        self._observe(raw, outcome)
        return outcome


def build_runner(
    settings: Settings,
    metrics: Metrics,
    observe: OutcomeObserver | None = None,
    watchdog: Watchdog | None = None,
    encoder: Encoder | None = None,
) -> Runner:
    """The runner with its clients and the checkpoint of the configured guarantee. A
    watchdog that is never started (tests driving the runner in a thread) only
    records what the loop expects."""
    pipeline = Pipeline.from_settings(settings)
    watchdog = watchdog or Watchdog(settings.shutdown_deadline_seconds)
    reports = DeliveryReports(metrics)
    consumer = new_consumer(settings, metrics)
    producer = new_producer(settings, metrics, reports)
    checkpoint: Checkpoint
    if settings.exactly_once:
        checkpoint = ExactlyOnce(
            consumer, producer, reports, metrics, watchdog, settings.transactional_id
        )
    else:
        checkpoint = AtLeastOnce(consumer, producer, reports, metrics, watchdog)
    return Runner(
        settings=settings,
        pipeline=ObservedPipeline(pipeline, observe) if observe else pipeline,  # type: ignore[arg-type]
        consumer=consumer,
        producer=producer,
        encoder=encoder or clean_record_encoder(settings),
        metrics=metrics,
        checkpoint=checkpoint,
        reports=reports,
        watchdog=watchdog,
    )


@dataclass
class StartupState:
    """What the start-up check found; the probes report it until the brokers answer."""

    waiting_for_brokers: str | None = "not checked yet"
    # What is wrong while the start-up waits for the schema registry (registry_encoder).
    waiting_for_schema_registry: str | None = None

    def waiting_for(self) -> str | None:
        if self.waiting_for_brokers:
            return f"waiting for the brokers: {self.waiting_for_brokers}"
        if self.waiting_for_schema_registry:
            return f"waiting for the schema registry: {self.waiting_for_schema_registry}"
        return None


def probes(
    settings: Settings, runner: Runner, metrics: Metrics, startup: StartupState | None = None
):
    """(live, ready) checks for /healthz and /readyz; each returns (ok, detail)."""

    def live() -> tuple[bool, str]:
        if startup is not None and (waiting := startup.waiting_for()):
            # Waiting for the brokers is what the process should be doing: not stuck.
            return True, waiting
        idle = time.monotonic() - runner.last_poll_monotonic
        return idle < settings.liveness_timeout_seconds, f"last poll {idle:.1f}s ago"

    def ready() -> tuple[bool, str]:
        if startup is not None and (waiting := startup.waiting_for()):
            return False, waiting
        brokers_up = metrics.kafka_stats.brokers_up()
        if brokers_up is None:
            return False, "no client statistics yet (the first arrive after statistics.interval.ms)"
        if brokers_up == 0:
            return False, "no broker reachable (per the latest client statistics)"
        if runner.assigned_partitions == 0:
            return False, "no partition assigned"
        return True, f"{runner.assigned_partitions} partitions, {brokers_up} brokers up"

    return live, ready


def wait_for_brokers(runner: Runner, settings: Settings, startup: StartupState) -> bool:
    """Until a broker answers a metadata request: one clear line when none does, a
    reminder at most every minute, retries with back-off. False when a stop was asked
    for meanwhile. Waiting rather than exiting: a broker outage during a deployment is
    transient, and a crash loop would add restarts (and their back-off) without fixing
    anything; the liveness probe stays green and readiness says what is wrong."""
    wait = StartupWait(
        log,
        f"cannot reach the brokers at {settings.bootstrap_servers}",
        "KAFKA_BOOTSTRAP_SERVERS",
        lambda: runner.stop_requested,
        BROKER_RETRY_FIRST_SECONDS,
        BROKER_RETRY_MAX_SECONDS,
        BROKER_REMINDER_SECONDS,
    )
    while not runner.stop_requested:
        try:
            metadata = runner.cluster_metadata(BROKER_CHECK_TIMEOUT_SECONDS)
        except KafkaException as exc:
            problem = describe(exc)
        else:
            if metadata.brokers:
                startup.waiting_for_brokers = None
                _check_raw_topic(metadata, settings)
                if wait.said_anything:
                    log.info("brokers reachable", extra={"waited_seconds": wait.waited_seconds})
                return True
            problem = "the metadata lists no broker"
        startup.waiting_for_brokers = f"cannot reach the brokers at {settings.bootstrap_servers}"
        wait.failed(problem)
    return False


def wait_for_schema_registry(
    encoder: Encoder, runner: Runner, startup: StartupState, metrics: Metrics
) -> bool:
    """With a registry configured, the clean schema is registered before the loop starts
    (so the loop never calls the registry), waiting for the registry like for the
    brokers. False when a stop was asked for meanwhile."""
    if not isinstance(encoder, RegistryEncoder):
        return True

    def report(problem: str | None) -> None:
        startup.waiting_for_schema_registry = problem
        metrics.schema_registry_waiting.set(1 if problem else 0)

    return wait_until_registered(encoder, lambda: runner.stop_requested, report)


def _check_raw_topic(metadata, settings: Settings) -> None:
    topic = metadata.topics.get(settings.raw_topic)
    if topic is None or topic.error is not None:
        log.warning(
            f"the raw topic {settings.raw_topic} does not exist (yet); waiting for it",
            extra={"variable": "LOYALTY_RAW_TOPIC"},
        )


def run_service(
    settings: Settings,
    metrics: Metrics | None = None,
    observe: OutcomeObserver | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> None:
    """Runs until a stop signal (or `stop_when` turns true, checked a few times a
    second). Raises ConfigError, before anything starts, for settings that cannot work."""
    metrics = metrics or Metrics()
    watchdog = Watchdog(settings.shutdown_deadline_seconds)
    encoder = clean_record_encoder(settings)
    runner = build_runner(settings, metrics, observe, watchdog, encoder)
    startup = StartupState()
    live, ready = probes(settings, runner, metrics, startup)
    try:
        server = serve_http(metrics, settings.metrics_port, live, ready, settings.metrics_host)
    except OSError as exc:
        raise ConfigError(
            f"LOYALTY_METRICS_PORT={settings.metrics_port} (LOYALTY_METRICS_HOST="
            f"{settings.metrics_host}): cannot listen there: {exc.strerror or exc}"
        ) from None
    log.info(
        "starting",
        extra={"settings": settings.describe(), "metrics_port": server.server_port},
    )
    if stop_when is not None:
        _stop_when(runner, stop_when)
    try:
        with watchdog, stop_on_signals(runner, watchdog):
            if wait_for_brokers(runner, settings, startup) and wait_for_schema_registry(
                encoder, runner, startup, metrics
            ):
                limits = output_limits(settings, (settings.clean_topic, settings.dead_letter_topic))
                log.info("output limits", extra={"max_record_bytes": limits})
                runner.run(limits)
    finally:
        runner.close()
        server.shutdown()


def _stop_when(runner: Runner, condition: Callable[[], bool]) -> None:
    def watch() -> None:
        while not runner.stop_requested:
            if condition():
                log.info("done: stopping")
                runner.request_stop()
                return
            time.sleep(0.2)

    threading.Thread(target=watch, name="stop-when", daemon=True).start()
