"""The benchmark's contenders other than the service itself, each run as a process of
its own by tests/benchmarks/end_to_end.py (so its CPU time and peak memory are its own):

    python -m tests.benchmarks.contenders passthrough '<json job>'
    python -m tests.benchmarks.contenders quix '<json job>'
    python -m tests.benchmarks.contenders pipeline '<json job>'

A job names the broker, the raw topic, the output topics and the group. The Kafka
contenders run until SIGTERM; `pipeline` runs its loops and prints one JSON line.
"""

from __future__ import annotations

import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from consumer import __version__
from consumer.config import Settings
from consumer.pipeline import Pipeline
from consumer.records import Accepted, RawRecord, Rejected
from consumer.schemas import SingleObjectCodec
from tests.benchmarks.workload import SECRETS, mixed_records


def _settings(job: dict[str, Any]) -> Settings:
    """The service's own settings for this job: the same batch size and the same
    producer configuration (idempotence, linger, compression) for every contender."""
    return Settings(
        bootstrap_servers=job["bootstrap_servers"],
        raw_topic=job["raw_topic"],
        clean_topic=job["clean_topic"],
        dead_letter_topic=job["dead_letter_topic"],
        group_id=job["group_id"],
        webhook_secrets={name: (secret,) for name, secret in SECRETS.items()},
    )


def _pipeline(settings: Settings) -> Pipeline:
    return Pipeline.from_settings(settings)


def passthrough(job: dict[str, Any]) -> None:
    """The ceiling: consume a batch, produce every record's bytes unchanged to the clean
    topic. No processing and no offset bookkeeping (offsets are stored on consume)."""
    from confluent_kafka import Consumer, Producer

    settings = _settings(job)
    consumer_config = settings.consumer_config()
    consumer_config.update({"enable.auto.offset.store": True})
    consumer = Consumer(consumer_config)
    producer = Producer(settings.producer_config())
    stopping = _stop_flag()
    consumer.subscribe([settings.raw_topic])
    topic = settings.clean_topic
    try:
        while not stopping:
            producer.poll(0)
            for message in consumer.consume(settings.batch_size, 0.5):
                if message.error():
                    continue
                while True:
                    try:
                        producer.produce(
                            topic, message.value(), message.key(), headers=message.headers()
                        )
                        break
                    except BufferError:
                        producer.poll(0.1)
    finally:
        producer.flush(20)
        consumer.close()


def quix(job: dict[str, Any]) -> None:
    """The same job in Quix Streams: its consumer loop, checkpointing and producer, calling
    this project's pipeline and encoder; clean and dead-letter records go out with the
    service's keys and headers."""
    from quixstreams import Application, message_context
    from quixstreams.models.serializers import Serializer

    from consumer.dead_letter import dead_letter_headers

    settings = _settings(job)
    pipeline = _pipeline(settings)
    encode = SingleObjectCodec().encode
    app = Application(
        broker_address=settings.bootstrap_servers,
        consumer_group=settings.group_id,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        auto_create_topics=False,
        loglevel="WARNING",
        producer_extra_config={
            k: v
            for k, v in settings.producer_config().items()
            if k not in ("bootstrap.servers", "statistics.interval.ms")
        },
    )

    class OutputValue(Serializer):
        def __call__(self, routed: tuple, ctx: Any) -> bytes:
            return routed[3]

    raw = app.topic(settings.raw_topic, value_deserializer="bytes", key_deserializer="bytes")
    clean = app.topic(settings.clean_topic, value_serializer=OutputValue())
    dead = app.topic(settings.dead_letter_topic, value_serializer=OutputValue())

    def route(value: bytes, key: Any, timestamp: int, headers: Any) -> tuple | None:
        context = message_context()
        raw_record = RawRecord(
            value=value,
            headers=headers or (),
            topic=context.topic,
            partition=context.partition,
            offset=context.offset,
            key=key,
        )
        outcome = pipeline.process(raw_record)
        if isinstance(outcome, Accepted):
            out_headers = [
                ("provider", outcome.provider.encode()),
                ("event_type", outcome.event_type.encode()),
                ("event_id", outcome.event_id.encode()),
            ]
            return clean, outcome.key, out_headers, encode(outcome.record)
        if isinstance(outcome, Rejected):
            failed_at = datetime.now(UTC)
            out_headers = dead_letter_headers(raw_record, outcome, failed_at, __version__)
            return dead, key, out_headers, value
        return None

    sdf = app.dataframe(raw)
    sdf = sdf.apply(route, metadata=True)
    sdf = sdf.filter(lambda routed: routed is not None)
    sdf = sdf.set_headers(lambda routed, key, timestamp, headers: routed[2])
    sdf.to_topic(lambda routed, *_: routed[0], key=lambda routed: routed[1])
    app.run()


def pipeline_alone(job: dict[str, Any]) -> None:
    """Without Kafka: Pipeline.process plus the clean-record encoding over the benchmark's
    records, and orjson.loads of the same values; prints records per CPU second of both
    (the best of three passes)."""
    workload = mixed_records(job["records"])
    settings = _settings(job)
    pipeline = _pipeline(settings)
    encode = SingleObjectCodec().encode
    records = [
        RawRecord(value=r.value, headers=r.headers, topic="raw", partition=0, offset=i)
        for i, r in enumerate(workload.records)
    ]
    values = [r.value for r in records]

    def run_pipeline() -> None:
        for record in records:
            outcome = pipeline.process(record)
            if isinstance(outcome, Accepted):
                encode(outcome.record)

    def run_loads() -> None:
        for value in values:
            # Not contextlib.suppress: entering a context manager costs more than loads.
            try:  # noqa: SIM105
                orjson.loads(value)
            except orjson.JSONDecodeError:
                pass

    results = {}
    for name, run in (("pipeline", run_pipeline), ("orjson_loads", run_loads)):
        best = None
        for _ in range(job.get("repeats", 3)):
            # CPU time of this process, not wall time: on a shared machine another
            # process' burst would otherwise count as ours.
            started = time.process_time()
            run()
            elapsed = time.process_time() - started
            best = elapsed if best is None else min(best, elapsed)
        results[name] = {"seconds": best, "records_per_second": len(records) / best}
    results["peak_rss_mb"] = peak_rss_mb()
    print(orjson.dumps(results).decode(), flush=True)


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _stop_flag() -> list[bool]:
    """A list that becomes truthy on SIGTERM or SIGINT."""
    flag: list[bool] = []

    def handle(*_: Any) -> None:
        flag.append(True)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return flag


CONTENDERS = {"passthrough": passthrough, "quix": quix, "pipeline": pipeline_alone}


if __name__ == "__main__":
    CONTENDERS[sys.argv[1]](orjson.loads(sys.argv[2]))
