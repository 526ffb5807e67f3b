"""`loyalty-consumer local`: the service on an embedded default, for a first look.

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts the project's local Apache Kafka
broker; creates the three topics; feeds the sample webhooks (signed as the providers
sign them); runs the service; prints every clean and dead-letter record as it arrives.
Ctrl-C stops the service (flush, commit, leave the group), then the broker.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from types import MappingProxyType

from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.config import Settings
from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from consumer.dev.topics import ensure_topics
from consumer.reader import RedemptionReader
from consumer.service import run_service

log = logging.getLogger(__name__)


def run_local(settings: Settings, feed_samples: bool = True) -> None:
    broker = None
    if not settings.bootstrap_servers:
        from consumer.dev.local_broker import LocalBroker

        broker = LocalBroker()
        broker.start()
        settings = dataclasses.replace(settings, bootstrap_servers=broker.bootstrap_servers)
        print(f"started a local Apache Kafka broker at {broker.bootstrap_servers}", flush=True)
    if not settings.webhook_secrets:
        secrets = {name: (secret,) for name, secret in LOCAL_SECRETS.items()}
        settings = dataclasses.replace(settings, webhook_secrets=MappingProxyType(secrets))
    stop_tail = threading.Event()
    try:
        topics = (settings.raw_topic, settings.clean_topic, settings.dead_letter_topic)
        ensure_topics(settings, topics)
        # The tail starts where the output topics end now, so it shows what this run
        # produces, and all of it, however soon the service gets to it.
        start = _end_offsets(settings, (settings.clean_topic, settings.dead_letter_topic))
        if feed_samples:
            _feed(settings)
        tail = threading.Thread(target=_tail, args=(settings, start, stop_tail), daemon=True)
        tail.start()
        print("consuming; Ctrl-C to stop", flush=True)
        run_service(settings)
    finally:
        stop_tail.set()
        if broker is not None:
            broker.stop()


def _feed(settings: Settings) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, **settings.kafka_common})
    samples = sample_webhooks()
    for sample in samples:
        producer.produce(settings.raw_topic, value=sample.value, headers=list(sample.headers))
        print(f"fed: {sample.description} (expect {sample.expected})", flush=True)
    producer.flush(30)


def _end_offsets(settings: Settings, topics: tuple[str, ...]) -> list[TopicPartition]:
    consumer = _tail_consumer(settings)
    try:
        metadata = consumer.list_topics(timeout=10)
        positions = []
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                tp = TopicPartition(topic, partition)
                tp.offset = consumer.get_watermark_offsets(tp, timeout=10)[1]
                positions.append(tp)
        return positions
    finally:
        consumer.close()


def _tail_consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"loyalty-local-tail-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **settings.kafka_common,
        }
    )


def _tail(settings: Settings, start: list[TopicPartition], stop: threading.Event) -> None:
    reader = RedemptionReader(settings.schema_registry_url, settings.clean_topic)
    consumer = _tail_consumer(settings)
    consumer.assign(start)
    try:
        while not stop.is_set():
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if message.topic() == settings.clean_topic:
                record = reader.decode(message.value())
                print(
                    f"clean: {record['event_id']} {record['provider']} "
                    f"customer={record['customer']['shopify_customer_id']} "
                    f"points={record['points_redeemed']} credits={record['credits_redeemed']} "
                    f"reward={record['reward']['name']!r}",
                    flush=True,
                )
            else:
                headers = {name: (value or b"").decode() for name, value in message.headers()}
                print(
                    f"dead-letter: reason={headers.get('loyalty.error.reason')} "
                    f"message={headers.get('__connect.errors.exception.message')!r}",
                    flush=True,
                )
    finally:
        consumer.close()
