"""Topic creation for local runs and tests. Production topics are provisioned with
their own retention and replication, never by the service."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.config import Settings
from consumer.kafka_errors import kafka_error, topic_already_exists

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, names: Iterable[str], partitions: int = 3) -> None:
    """Create the topics that do not exist yet."""
    admin = AdminClient(
        {"bootstrap.servers": settings.bootstrap_servers, **settings.kafka_common},
        logger=logging.getLogger("consumer.kafka"),
    )
    futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if not topic_already_exists(kafka_error(exc)):
                raise
            log.debug("topic exists", extra={"topic": name})
