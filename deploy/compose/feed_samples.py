"""The compose file's one-shot samples service: creates the three topics (the raw one
with LOYALTY_RAW_TOPIC_PARTITIONS partitions) and feeds the sample webhooks, signed with
the secrets the consumer is given, to the raw topic."""

from __future__ import annotations

import os

from confluent_kafka import Producer

from consumer.config import Settings
from consumer.dev.samples import sample_webhooks
from consumer.dev.topics import ensure_topics

settings = Settings.from_env()
ensure_topics(
    settings, [settings.raw_topic], partitions=int(os.environ["LOYALTY_RAW_TOPIC_PARTITIONS"])
)
ensure_topics(settings, [settings.clean_topic, settings.dead_letter_topic])
producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
for sample in sample_webhooks():
    producer.produce(settings.raw_topic, value=sample.value, headers=list(sample.headers))
    print(f"fed: {sample.description} (expect {sample.expected})", flush=True)
if producer.flush(30):
    raise SystemExit("some samples were not acknowledged within 30 s")
