"""Wires settings into clients and runs the service: the composition root."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from consumer.config import Settings
from consumer.kafka_io import clean_record_encoder, new_consumer, new_producer
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from consumer.runner import Runner, install_signal_handlers

log = logging.getLogger(__name__)


def build_runner(settings: Settings, metrics: Metrics) -> Runner:
    return Runner(
        settings=settings,
        pipeline=Pipeline.from_settings(settings),
        consumer=new_consumer(settings),
        producer=new_producer(settings),
        encoder=clean_record_encoder(settings),
        metrics=metrics,
    )


def run_service(settings: Settings) -> None:
    log.info("starting", extra={"settings": settings.describe()})
    metrics = Metrics()
    runner = build_runner(settings, metrics)
    start_http_server(settings.metrics_port, registry=metrics.registry)
    install_signal_handlers(runner)
    runner.run()
