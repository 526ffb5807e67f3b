"""A real Prometheus scrapes the running service; its counters equal what was sent.
The metrics tables (README and docs/) match what /metrics exposes."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from consumer.dev.samples import LOCAL_SECRETS, sample_webhooks
from tests.integration.prometheus_server import PrometheusServer
from tests.integration.service_harness import (
    everything_committed,
    produce_all,
    service_settings,
    start_service,
    wait_until,
)

README = Path(__file__).resolve().parents[2] / "README.md"
DOCS = README.parent / "docs"
# Several scrapes at 1 s; Prometheus needs a scrape after the last change to see it.
SCRAPE_WAIT_SECONDS = 60.0


def test_prometheus_scrapes_counters_equal_to_what_was_sent(
    kafka_bootstrap_servers, new_topic, group_id
):
    raw, clean, dlq = new_topic("raw", 3), new_topic("clean", 3), new_topic("dlq", 1)
    samples = sample_webhooks()
    produce_all(kafka_bootstrap_servers, raw, ((s.value, s.headers) for s in samples))
    expected = Counter(s.expected for s in samples)
    rejected = {
        reason: n for reason, n in expected.items() if reason not in ("accepted", "ignored")
    }

    settings = service_settings(
        kafka_bootstrap_servers,
        raw,
        clean,
        dlq,
        group_id,
        secrets=LOCAL_SECRETS,
        statistics_interval_ms=1000,
    )
    service = start_service(settings, serve=True)
    try:
        with PrometheusServer(f"127.0.0.1:{service.http_port}") as prometheus:
            wait_until(
                lambda: everything_committed(kafka_bootstrap_servers, group_id, raw, 3),
                "every raw offset committed",
            )
            consumed = f'sum(loyalty_records_consumed_total{{topic="{raw}"}})'
            wait_until(
                lambda: (
                    prometheus.value(consumed) == len(samples)
                    and prometheus.value("sum(loyalty_consumer_lag_records)") == 0
                ),
                "Prometheus to scrape every record and a lag of zero",
                timeout=SCRAPE_WAIT_SECONDS,
            )
            by_outcome = {
                r["metric"]["outcome"]: float(r["value"][1])
                for r in prometheus.query("sum by (outcome) (loyalty_records_processed_total)")
            }
            assert by_outcome == {
                "accepted": expected["accepted"],
                "ignored": expected["ignored"],
                "rejected": sum(rejected.values()),
            }
            by_reason = {
                r["metric"]["reason"]: float(r["value"][1])
                for r in prometheus.query(
                    'sum by (reason) (loyalty_records_processed_total{outcome="rejected"})'
                )
            }
            assert by_reason == rejected
            dead = {
                r["metric"]["reason"]: float(r["value"][1])
                for r in prometheus.query("sum by (reason) (loyalty_dead_letter_records_total)")
            }
            assert dead == rejected
            assert prometheus.value("sum(loyalty_clean_records_total)") == expected["accepted"]
            assert (
                prometheus.value("sum(loyalty_end_to_end_latency_seconds_count)")
                == (expected["accepted"])
            )
            assert prometheus.value("loyalty_assigned_partitions") == 3
            assert prometheus.value("max(loyalty_kafka_broker_rtt_seconds)") > 0
            assert prometheus.value('count(loyalty_build_info{version!=""})') == 1

            assert _get(service.http_port, "/healthz")[0] == 200
            status, body = _get(service.http_port, "/readyz")
            assert status == 200, body
            exposed = _exposed_metrics(_get(service.http_port, "/metrics")[1])
    finally:
        service.stop()

    documented = _documented_metrics()
    assert set(documented) == set(exposed), "docs/operating.md metrics table and /metrics differ"
    for name, (kind, labels) in exposed.items():
        assert documented[name][0] == kind, name
        if labels is not None:  # a labelled metric with no sample yet shows no labels
            assert documented[name][1] == labels, name


def test_probes_fail_when_the_loop_stops_polling(kafka_bootstrap_servers, new_topic, group_id):
    raw, clean, dlq = new_topic("raw"), new_topic("clean"), new_topic("dlq", 1)
    settings = service_settings(
        kafka_bootstrap_servers,
        raw,
        clean,
        dlq,
        group_id,
        liveness_timeout_seconds=2.0,
        statistics_interval_ms=500,
    )
    service = start_service(settings, serve=True)
    try:
        wait_until(lambda: _get(service.http_port, "/readyz")[0] == 200, "readiness")
        assert _get(service.http_port, "/healthz")[0] == 200
        service.runner.request_stop()
        service.thread.join(30)
        # The loop has stopped: after the liveness timeout, /healthz says so.
        wait_until(lambda: _get(service.http_port, "/healthz")[0] == 503, "liveness to fail")
        assert _get(service.http_port, "/readyz")[0] == 503
    finally:
        service.stop()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _exposed_metrics(text: str) -> dict[str, tuple[str, frozenset[str] | None]]:
    """name -> (type, label names, or None when it has no sample) from the exposition."""
    types = dict(re.findall(r"^# TYPE (loyalty_\w+) (\w+)$", text, re.MULTILINE))
    labels: dict[str, set[str] | None] = dict.fromkeys(types)
    for sample_name, label_text in re.findall(
        r"^(loyalty_\w+)(?:\{([^}]*)\})? ", text, re.MULTILINE
    ):
        base = max((n for n in types if sample_name.startswith(n)), key=len)
        found = labels[base] if labels[base] is not None else set()
        found.update(set(re.findall(r'(\w+)="', label_text)) - {"le"})
        labels[base] = found
    return {
        name: (kind, None if labels[name] is None else frozenset(labels[name]))
        for name, kind in types.items()
    }


def _documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """The metrics tables of docs/: | `name` | type | `label`, ... | meaning |"""
    text = "\n".join(path.read_text() for path in [README, *sorted(DOCS.glob("*.md"))])
    rows = re.findall(r"^\| `(loyalty_\w+)` \| (\w+) \|([^|]*)\|", text, re.MULTILINE)
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def test_only_the_documented_paths_answer_and_the_versions_are_whole():
    import confluent_kafka

    from consumer.metrics import Metrics, serve_http

    metrics = Metrics()
    server = serve_http(
        metrics, 0, lambda: (True, "ok"), lambda: (False, "starting"), host="127.0.0.1"
    )
    try:
        port = server.server_port
        assert _get(port, "/metrics")[0] == 200
        assert _get(port, "/healthz")[0] == 200
        assert _get(port, "/readyz")[0] == 503
        assert _get(port, "/")[0] == 200  # lists the three paths
        for path in ("/metric", "/favicon.ico", "/metrics/extra"):
            assert _get(port, path)[0] == 404, path
        body = _get(port, "/metrics")[1]
        assert f'confluent_kafka="{confluent_kafka.__version__}"' in body
        assert confluent_kafka.__version__.count(".") == 2
    finally:
        server.shutdown()
