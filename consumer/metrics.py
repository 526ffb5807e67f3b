"""Every metric the service exposes, in one place, on a registry of its own (so tests
can build as many services as they like in one process), and the HTTP endpoint that
serves them with the health probes.

Labels stay low-cardinality: provider and reason come from closed sets, and event types
outside a provider's documented list are reported as 'other' (the header is free text
that any sender controls). The pipeline decides that label and it travels on the
outcome, so this module knows nothing of providers.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import platform
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import confluent_kafka
import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from waitress.server import create_server

from consumer import __version__

log = logging.getLogger(__name__)

# A `_created` series beside every counter and histogram doubles the exposition for
# nothing Prometheus' rate() needs. (Process-wide: this module owns the process' metrics.)
disable_created_metrics()

# Pipeline cost per record is tens of microseconds; a batch is up to a few hundred ms.
RECORD_SECONDS_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1)
BATCH_SECONDS_BUCKETS = (1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# A checkpoint is about LOYALTY_CHECKPOINT_INTERVAL_MS (1 s) plus the commit round trips.
TRANSACTION_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 5, 10, 30)
# Webhooks arrive seconds to minutes after the redemption; a backlog makes it hours.
LATENCY_SECONDS_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


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
        self.produce_errors = Counter(
            "loyalty_produce_errors_total",
            "Records the producer refused outright (not queue-full, which waits).",
            ["topic"],
            registry=r,
        )
        self.producer_queue_full = Counter(
            "loyalty_producer_queue_full_total",
            "Times the producer queue was full and the loop waited for acknowledgements "
            "(back-pressure: the broker is slower than the input).",
            registry=r,
        )
        self.client_errors = Counter(
            "loyalty_kafka_client_errors_total",
            "Errors librdkafka reported outside any one record (broker down, auth, ...).",
            ["client", "error"],
            registry=r,
        )
        self.commit_errors = Counter(
            "loyalty_commit_errors_total", "Failed offset commits.", registry=r
        )
        self.final_commit_failures = Counter(
            "loyalty_final_commit_failures_total",
            "Shutdowns whose last commit did not go through (the process exits with 4).",
            registry=r,
        )
        self.transactions = Counter(
            "loyalty_transactions_total",
            "Exactly-once checkpoints, by result (committed, aborted).",
            ["result"],
            registry=r,
        )
        self.transaction_seconds = Histogram(
            "loyalty_transaction_seconds",
            "Exactly-once: time from a transaction's first record to its commit.",
            buckets=TRANSACTION_SECONDS_BUCKETS,
            registry=r,
        )
        self.last_poll = Gauge(
            "loyalty_last_poll_timestamp_seconds",
            "Unix time the loop last returned from polling the consumer.",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "loyalty_batch_processing_seconds",
            "Time to process and hand one consumed batch to the producer.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        # Observed once per record: the loop's own histogram type (see LoopHistogram).
        self.record_seconds = LoopHistogram(
            "loyalty_record_processing_seconds",
            "Loop time per record: pipeline, encoding, and handing the output to the "
            "producer (including any wait for queue space).",
            RECORD_SECONDS_BUCKETS,
        )
        r.register(self.record_seconds)
        self.end_to_end_seconds = LoopHistogram(
            "loyalty_end_to_end_latency_seconds",
            "From the redemption's occurred_at to the clean record's acknowledgement.",
            LATENCY_SECONDS_BUCKETS,
        )
        r.register(self.end_to_end_seconds)
        self.assigned_partitions = Gauge(
            "loyalty_assigned_partitions",
            "Raw-topic partitions assigned to this consumer.",
            registry=r,
        )
        # 1 only while the start-up waits for a configured schema registry (the loop has
        # not started); the loop itself never calls the registry.
        self.schema_registry_waiting = Gauge(
            "loyalty_schema_registry_waiting",
            "1 while the start-up waits for the schema registry to register the clean "
            "schema (the loop has not started yet), else 0.",
            registry=r,
        )
        self.rebalances = Counter(
            "loyalty_rebalances_total",
            "Rebalance callbacks, by kind (assign, revoke, lost).",
            ["kind"],
            registry=r,
        )
        self.unsigned_providers = Gauge(
            "loyalty_unsigned_providers",
            "1 for each provider whose webhooks are accepted without a signature check "
            "(LOYALTY_UNSIGNED_PROVIDERS).",
            ["provider"],
            registry=r,
        )
        self.kafka_stats = KafkaClientStats()
        r.register(self.kafka_stats)
        self.build = Info("loyalty_build", "Version of the service and its runtime.", registry=r)
        self.build.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                # The distribution's version: confluent_kafka.version() became a plain
                # string in 2.16, and indexing it gave "2".
                "confluent_kafka": importlib.metadata.version("confluent-kafka"),
                "librdkafka": confluent_kafka.libversion()[0],
            }
        )


class LoopHistogram(Collector):
    """A histogram observed by the loop's thread only, exposed like prometheus-client's.

    prometheus-client's Histogram takes a lock and walks every bucket on each observe,
    which at tens of thousands of records per second was a visible share of the loop.
    Here an observation is one binary search and two additions on plain numbers; the
    scrape thread reads them (each read is atomic under the GIL, and the counts only
    grow) and makes the buckets cumulative.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(float(b) for b in buckets)
        # One count per bucket (not cumulative) and a last one for +Inf.
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs in that bound's bucket (le).
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        family = HistogramMetricFamily(self._name, self._documentation)
        family.add_metric([], buckets, total)
        yield family


class KafkaClientStats(Collector):
    """Metrics from librdkafka's statistics (statistics.interval.ms), rendered from the
    latest snapshot of each client at scrape time rather than copied into gauges on
    every callback."""

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Any]] = {}

    def update(self, stats_json: str) -> None:
        """The clients' stats_cb. Runs on the loop's thread, inside poll()."""
        stats = orjson.loads(stats_json)
        self._latest[stats["type"]] = stats  # one assignment: safe for the scrape thread

    def brokers_up(self, client_type: str = "consumer") -> int | None:
        """Brokers in state UP in the client's latest snapshot; None before the first."""
        stats = self._latest.get(client_type)
        if stats is None:
            return None
        return sum(
            1
            for broker in stats["brokers"].values()
            if _is_cluster_broker(broker) and broker["state"] == "UP"
        )

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily(
            "loyalty_consumer_lag_records",
            "Records between the group's committed offset and the end of each assigned "
            "partition (the whole partition before the first commit).",
            labels=["topic", "partition"],
        )
        committed = GaugeMetricFamily(
            "loyalty_committed_offset",
            "The group's committed offset per assigned partition.",
            labels=["topic", "partition"],
        )
        rtt = GaugeMetricFamily(
            "loyalty_kafka_broker_rtt_seconds",
            "Mean request round-trip time to each broker over the last statistics window.",
            labels=["client", "broker"],
        )
        queue = GaugeMetricFamily(
            "loyalty_producer_queue_messages",
            "Records waiting in the producer's queue for transmission or acknowledgement.",
        )
        tx_errors = CounterMetricFamily(
            "loyalty_kafka_transmit_errors",
            "Request transmission errors, summed over brokers.",
            labels=["client"],
        )
        rx_errors = CounterMetricFamily(
            "loyalty_kafka_receive_errors",
            "Response receive errors, summed over brokers.",
            labels=["client"],
        )
        for client, stats in list(self._latest.items()):  # the loop thread may add one
            brokers = [b for b in stats["brokers"].values() if _is_cluster_broker(b)]
            for broker in brokers:
                if broker["rtt"]["cnt"]:
                    rtt.add_metric([client, broker["name"]], broker["rtt"]["avg"] / 1e6)
            tx_errors.add_metric([client], sum(b["txerrs"] for b in brokers))
            rx_errors.add_metric([client], sum(b["rxerrs"] for b in brokers))
            if client == "producer":
                queue.add_metric([], stats["msg_cnt"])
            if client == "consumer":
                for topic, partition, p in _owned_partitions(stats):
                    # librdkafka's own lag (it knows read_committed's stable offset) once
                    # the group has committed; before that, the whole partition.
                    behind = p["consumer_lag"]
                    if behind < 0:
                        behind = max(p["hi_offset"] - max(p["lo_offset"], 0), 0)
                    lag.add_metric([topic, partition], behind)
                    if p["committed_offset"] >= 0:
                        committed.add_metric([topic, partition], p["committed_offset"])
        yield from (lag, committed, rtt, queue, tx_errors, rx_errors)


def _owned_partitions(stats: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Partitions this member consumes now. librdkafka keeps reporting a revoked
    partition (fetch_state 'stopped'); its frozen numbers would double-count in sums."""
    for topic, topic_stats in stats["topics"].items():
        for partition, p in topic_stats["partitions"].items():
            if partition == "-1" or not p.get("desired", True) or p["hi_offset"] < 0:
                continue
            if p["fetch_state"] in ("none", "stopped"):
                continue
            yield topic, partition, p


def _is_cluster_broker(broker: dict[str, Any]) -> bool:
    # Bootstrap and internal pseudo-brokers have node id -1.
    return broker.get("nodeid", -1) >= 0


ProbeCheck = Callable[[], tuple[bool, str]]


# The HTTP endpoint is waitress: its I/O loop reads each request whole before a worker
# thread sees it, so a client that sends half a request (or nothing) holds a connection
# slot until the timeout, never a thread. The bounds:
# Probes and scrapes are answered in microseconds to milliseconds; two workers let a
# probe answer while a scrape renders.
HTTP_WORKER_THREADS = 2
# Open connections beyond which the server stops accepting until some close (the
# kernel's backlog holds the next ones). Prometheus and the kubelet need a few; the
# rest is room for the short-lived connections of probes. Each idle one costs a few KB.
HTTP_CONNECTION_LIMIT = 512
# A connection that sends no complete request for this long is closed: a probe's own
# timeout is 1-5 s, and a scrape's request is one packet.
HTTP_CONNECTION_TIMEOUT_SECONDS = 10.0
# How often idle connections are looked for (waitress' cleanup interval).
HTTP_CLEANUP_INTERVAL_SECONDS = 1
# Our three paths take GET requests with a few headers and no body.
HTTP_MAX_REQUEST_HEADER_BYTES = 16 * 1024
HTTP_MAX_REQUEST_BODY_BYTES = 1024
# Pending connections the kernel holds while the server is at its connection limit.
HTTP_BACKLOG = 128


class HttpServer:
    """The running endpoint: `server_port` (the bound port) and `shutdown()`."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.server_port = int(server.effective_port)  # waitress reports it as text

    def shutdown(self) -> None:
        """Closes the listening socket and every connection, then stops the workers."""
        self._server.close()
        self._server.task_dispatcher.shutdown(timeout=5)
        self._thread.join(5)


def serve_http(
    metrics: Metrics,
    port: int,
    live: ProbeCheck,
    ready: ProbeCheck,
    host: str = "0.0.0.0",
    *,
    connection_limit: int = HTTP_CONNECTION_LIMIT,
    connection_timeout_seconds: float = HTTP_CONNECTION_TIMEOUT_SECONDS,
) -> HttpServer:
    """/metrics, /healthz and /readyz, served from daemon threads (a fixed number, see
    HTTP_WORKER_THREADS); / lists them, any other path is 404. Port 0 picks a free port
    (server.server_port). Raises OSError when the address cannot be bound."""
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        check = {"/healthz": live, "/readyz": ready}.get(path)
        if check is None:
            found = path == "/"
            start_response(
                "200 OK" if found else "404 Not Found",
                [("Content-Type", "text/plain; charset=utf-8")],
            )
            return [_INDEX if found else f"not found: {path}\n{_INDEX.decode()}".encode()]
        ok, detail = check()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{'ok' if ok else 'not ok'}: {detail}\n".encode()]

    server = create_server(
        app,
        host=host,
        port=port,
        threads=HTTP_WORKER_THREADS,
        connection_limit=connection_limit,
        channel_timeout=connection_timeout_seconds,
        cleanup_interval=HTTP_CLEANUP_INTERVAL_SECONDS,
        max_request_header_size=HTTP_MAX_REQUEST_HEADER_BYTES,
        max_request_body_size=HTTP_MAX_REQUEST_BODY_BYTES,
        backlog=HTTP_BACKLOG,
        # poll(), not select(): select() cannot watch a descriptor numbered over 1023.
        asyncore_use_poll=True,
        ident="loyalty-consumer",
    )
    thread = threading.Thread(target=server.run, name="metrics-http", daemon=True)
    thread.start()
    return HttpServer(server, thread)


_INDEX = b"loyalty-consumer: /metrics (Prometheus), /healthz (liveness), /readyz (readiness)\n"
