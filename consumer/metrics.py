"""Every metric the service exposes, in one place, on a registry of its own (so tests
can build as many services as they like in one process).

Labels stay low-cardinality: provider and reason come from closed sets, and event types
outside a provider's documented list are reported as 'other' (the header is free text
that any sender controls).
"""

from __future__ import annotations

import platform

import confluent_kafka
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from consumer import __version__
from consumer.providers import PROVIDERS

KNOWN_EVENT_TYPES = frozenset(event for p in PROVIDERS for event in p.known_event_types)

# Pipeline cost per record is tens of microseconds; a batch is up to a few hundred ms.
RECORD_SECONDS_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1)
BATCH_SECONDS_BUCKETS = (1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Webhooks arrive seconds to minutes after the redemption; a backlog makes it hours.
LATENCY_SECONDS_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def event_type_label(event_type: str | None) -> str:
    if event_type is None:
        return "none"
    return event_type if event_type in KNOWN_EVENT_TYPES else "other"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_consumed = Counter(
            "loyalty_records_consumed_total",
            "Raw records read from the raw topic.",
            ["topic"],
            registry=r,
        )
        self.outcomes = Counter(
            "loyalty_records_processed_total",
            "Raw records by outcome (accepted, ignored, rejected); the outcomes add up to "
            "the records consumed.",
            ["outcome", "provider", "event_type", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "loyalty_dead_letter_records_total",
            "Records the dead-letter topic acknowledged, by rejection reason.",
            ["reason"],
            registry=r,
        )
        self.clean_records = Counter(
            "loyalty_clean_records_total",
            "Canonical records the clean topic acknowledged, by provider.",
            ["provider"],
            registry=r,
        )
        self.delivery_errors = Counter(
            "loyalty_delivery_errors_total",
            "Produced records the broker did not acknowledge (the service stops).",
            ["topic"],
            registry=r,
        )
        self.consume_errors = Counter(
            "loyalty_consume_errors_total",
            "Errors reported by the consumer client, by librdkafka error name.",
            ["error"],
            registry=r,
        )
        self.commit_errors = Counter(
            "loyalty_commit_errors_total", "Failed offset commits.", registry=r
        )
        self.batch_seconds = Histogram(
            "loyalty_batch_processing_seconds",
            "Time to process and hand one consumed batch to the producer.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.record_seconds = Histogram(
            "loyalty_record_processing_seconds",
            "Pipeline time per record (validate, normalise, encode).",
            buckets=RECORD_SECONDS_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "loyalty_end_to_end_latency_seconds",
            "From the redemption's occurred_at to the clean record's acknowledgement.",
            buckets=LATENCY_SECONDS_BUCKETS,
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "loyalty_assigned_partitions",
            "Raw-topic partitions assigned to this consumer.",
            registry=r,
        )
        self.rebalances = Counter(
            "loyalty_rebalances_total",
            "Rebalance callbacks, by kind (assign, revoke, lost).",
            ["kind"],
            registry=r,
        )
        self.build = Info("loyalty_build", "Version of the service and its runtime.", registry=r)
        self.build.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "confluent_kafka": confluent_kafka.version()[0],
                "librdkafka": confluent_kafka.libversion()[0],
            }
        )
