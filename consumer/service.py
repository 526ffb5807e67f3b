"""Wires settings into clients and runs the service: the composition root."""

from __future__ import annotations

import logging
import time

from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.kafka_io import clean_record_encoder, new_consumer, new_producer
from consumer.metrics import Metrics, serve_http
from consumer.pipeline import Pipeline
from consumer.runner import Runner, stop_on_signals

log = logging.getLogger(__name__)


def build_runner(settings: Settings, metrics: Metrics) -> Runner:
    return Runner(
        settings=settings,
        pipeline=Pipeline.from_settings(settings),
        consumer=new_consumer(settings, metrics),
        producer=new_producer(settings, metrics),
        encoder=clean_record_encoder(settings),
        metrics=metrics,
    )


def probes(settings: Settings, runner: Runner, metrics: Metrics):
    """(live, ready) checks for /healthz and /readyz; each returns (ok, detail)."""

    def live() -> tuple[bool, str]:
        idle = time.monotonic() - runner.last_poll_monotonic
        return idle < settings.liveness_timeout_seconds, f"last poll {idle:.1f}s ago"

    def ready() -> tuple[bool, str]:
        brokers_up = metrics.kafka_stats.brokers_up()
        if brokers_up is None:
            return False, "starting: no client statistics yet"
        if not brokers_up:
            return False, "no broker reachable (per the latest client statistics)"
        if runner.assigned_partitions == 0:
            return False, "no partition assigned"
        return True, f"{runner.assigned_partitions} partitions, {brokers_up} brokers up"

    return live, ready


def run_service(settings: Settings, metrics: Metrics | None = None) -> None:
    metrics = metrics or Metrics()
    # Everything that can refuse the settings comes first, so a bad setting is one line
    # (exit 2) and "starting" means the service really is starting.
    runner = build_runner(settings, metrics)
    live, ready = probes(settings, runner, metrics)
    try:
        server = serve_http(metrics, settings.metrics_port, live, ready)
    except OSError as exc:
        raise ConfigError(
            f"LOYALTY_METRICS_PORT={settings.metrics_port}: cannot serve metrics there "
            f"({exc.strerror})"
        ) from None
    log.info("starting", extra={"settings": settings.describe()})
    try:
        with stop_on_signals(runner, settings.shutdown_deadline_seconds):
            runner.run()
    finally:
        server.shutdown()
