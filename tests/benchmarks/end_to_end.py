"""Side-by-side throughput benchmark on one local broker (`make bench`).

    python -m tests.benchmarks.end_to_end [--records 60000] [--rounds 3] [--only A,B]

One broker, one raw topic of 6 partitions filled once with mixed webhooks
(tests/benchmarks/workload.py), then rounds in which every contender runs once, in
turn (interleaved, so a slow minute on a shared machine hits all of them alike):

  A   passthrough: confluent-kafka consume -> produce the same bytes (the ceiling)
  B   the service, at-least-once (`loyalty-consumer run`)
  B'  the service, exactly-once (only once the mode exists)
  C   the same job in Quix Streams, calling this project's pipeline and encoder
  D   the pipeline alone, without Kafka, and orjson.loads alone
  E   two service processes in one group
  M   the service, at-least-once, with a bounded prefetch (BOUNDED_PREFETCH below):
      the memory check

Each Kafka contender starts as a fresh process with a new group and new output topics
(broker-stamped LogAppendTime), and is stopped with SIGTERM once the outputs are all
there. The figures (defined in docs/performance.md):

  e2e rec/s     raw records / (time of the last output - process start)
  steady rec/s  raw records in the window / (last output - first output), where the
                window is what was processed between them (all records minus one)
  CPU µs/rec    user + system CPU of the contender's processes / raw records
  peak RSS      the largest resident set of any of the contender's processes

Correctness is checked, speed is not: every contender's output count must equal the
expected count (every record for A; accepted + rejected for the others), else the run
fails. Results go to .bench/<time>.json; the table is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.dev.local_broker import LocalBroker
from tests.benchmarks.workload import SECRETS, mixed_records

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / ".bench"
PARTITIONS = 6
# A contender that has not produced everything by then is broken, not slow.
RUN_TIMEOUT_SECONDS = 300.0
WATERMARK_POLL_SECONDS = 0.25
CONFIG_SOURCE = REPO_ROOT / "consumer" / "config.py"
# Contender M: librdkafka's prefetch bounded through the service's own KAFKA_CONSUMER_*
# pass-through, so its peak memory shows what a bounded deployment needs. librdkafka's
# defaults (queued.max.messages.kbytes 64 MiB, fetch.max.bytes 50 MiB) let the prefetch
# queue alone grow to tens of MiB on a backlog; 4 MiB still holds several batches of
# webhooks (1-2 KiB each, 500 per batch), and a 1 MiB fetch (above the consumer's
# message.max.bytes, as librdkafka requires) keeps one response small.
BOUNDED_PREFETCH = {
    "KAFKA_CONSUMER_QUEUED_MAX_MESSAGES_KBYTES": "4096",
    "KAFKA_CONSUMER_FETCH_MAX_BYTES": str(1024 * 1024),
    "KAFKA_CONSUMER_MAX_PARTITION_FETCH_BYTES": str(256 * 1024),
}


@dataclasses.dataclass
class Contender:
    key: str
    title: str
    processes: int = 1

    def available(self) -> str | None:
        """None when it can run, else why not."""
        if self.key == "B'" and "LOYALTY_PROCESSING_GUARANTEE" not in CONFIG_SOURCE.read_text():
            return "n/a (mode not present)"
        if self.key == "C":
            try:
                import quixstreams  # noqa: F401
            except ImportError:
                return "n/a (quixstreams not installed: pip install '.[bench]')"
        return None


CONTENDERS = [
    Contender("A", "passthrough (ceiling)"),
    Contender("B", "service, at-least-once"),
    Contender("B'", "service, exactly-once"),
    Contender("C", "Quix Streams + pipeline"),
    Contender("E", "service x2, one group", processes=2),
    Contender("M", "service, bounded prefetch"),
    Contender("D", "pipeline alone (no Kafka)"),
]


# -- broker set-up -----------------------------------------------------------------


def create_topics(bootstrap: str, names: list[str], log_append_time: bool) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
    futures = admin.create_topics([NewTopic(n, PARTITIONS, 1, config=config) for n in names])
    for future in futures.values():
        future.result()


def fill_raw_topic(bootstrap: str, topic: str, records: list) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"}
    )
    for i, record in enumerate(records):
        while True:
            try:
                # Round-robin over partitions, as keyless webhooks spread.
                producer.produce(
                    topic, record.value, partition=i % PARTITIONS, headers=list(record.headers)
                )
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60):
        raise RuntimeError("could not fill the raw topic")


def end_offsets(consumer: Consumer, topics: list[str]) -> int:
    """Sum of the topics' high watermarks; 0 while a new topic has no leader yet."""
    total = 0
    for topic in topics:
        for partition in range(PARTITIONS):
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
            except KafkaException:
                return 0
            total += high
    return total


def count_outputs(bootstrap: str, topics: list[str]) -> tuple[int, int | None, int | None]:
    """(committed records, first and last broker timestamp in ms) over the topics,
    reading what a read_committed consumer sees (transaction markers are not records)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-count-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    assignment = [TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)]
    consumer.assign(assignment)
    remaining = {(tp.topic, tp.partition) for tp in assignment}
    count, first, last = 0, None, None
    deadline = time.monotonic() + 120
    try:
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(5000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard((message.topic(), message.partition()))
                    continue
                count += 1
                stamp = message.timestamp()[1]
                first = stamp if first is None else min(first, stamp)
                last = stamp if last is None else max(last, stamp)
    finally:
        consumer.close()
    return count, first, last


# -- running one contender -----------------------------------------------------------


def _python() -> str:
    return sys.executable


def _service_env(job: dict[str, Any], exactly_once: bool, bounded: bool = False) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "LOYALTY_")) and not k.endswith("_WEBHOOK_SECRET")
    }
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=job["bootstrap_servers"],
        LOYALTY_RAW_TOPIC=job["raw_topic"],
        LOYALTY_CLEAN_TOPIC=job["clean_topic"],
        LOYALTY_DLQ_TOPIC=job["dead_letter_topic"],
        LOYALTY_GROUP_ID=job["group_id"],
        LOYALTY_METRICS_PORT="0",
        MAGE_LOYALTY_WEBHOOK_SECRET=SECRETS["mage_loyalty"],
        RIVO_WEBHOOK_SECRET=SECRETS["rivo"],
    )
    if exactly_once:
        env["LOYALTY_PROCESSING_GUARANTEE"] = "exactly-once"
    if bounded:
        env.update(BOUNDED_PREFETCH)
    return env


def _commands(contender: Contender, job: dict[str, Any]) -> tuple[list[list[str]], dict]:
    encoded = orjson.dumps(job).decode()
    if contender.key in ("B", "B'", "E", "M"):
        command = [_python(), "-m", "consumer", "run"]
        if job.get("profile_to"):
            command[1:1] = ["-m", "cProfile", "-o", job["profile_to"]]
        env = _service_env(job, exactly_once=contender.key == "B'", bounded=contender.key == "M")
        return [command] * contender.processes, env
    name = {"A": "passthrough", "C": "quix", "D": "pipeline"}[contender.key]
    command = [_python(), "-m", "tests.benchmarks.contenders", name, encoded]
    return [command], dict(os.environ)


def run_contender(
    contender: Contender,
    bootstrap: str,
    raw_topic: str,
    workload,
    round_number: int,
    logs: Path,
    profile: bool = False,
) -> dict[str, Any]:
    suffix = f"{contender.key.replace(chr(39), 'x')}-{round_number}-{uuid.uuid4().hex[:6]}"
    job = {
        "bootstrap_servers": bootstrap,
        "raw_topic": raw_topic,
        "clean_topic": f"bench.clean.{suffix}",
        "dead_letter_topic": f"bench.dlq.{suffix}",
        "group_id": f"bench-{suffix}",
        "records": len(workload.records),
    }
    if profile and contender.key in ("B", "B'"):
        job["profile_to"] = str(logs / f"{suffix}.prof")
    records = len(workload.records)
    if contender.key == "D":
        return _run_pipeline_alone(contender, job, logs, suffix)
    outputs = [job["clean_topic"], job["dead_letter_topic"]]
    create_topics(bootstrap, outputs, log_append_time=True)
    expected = records if contender.key == "A" else workload.pipeline_outputs
    commands, env = _commands(contender, job)
    log_file = (logs / f"{suffix}.log").open("wb")
    started = time.time()
    processes = [
        subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log_file, stderr=log_file)
        for command in commands
    ]
    watcher = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"{contender.title} exited early; see {log_file.name}")
            # High watermarks are cheap to ask; the exact count (which reads every
            # record) only once they say enough may be there.
            if end_offsets(watcher, outputs) >= expected:
                count, _, _ = count_outputs(bootstrap, outputs)
                if count >= expected:
                    break
            time.sleep(WATERMARK_POLL_SECONDS)
    finally:
        watcher.close()
        usage = _stop(processes)
        log_file.close()
    count, first_ms, last_ms = count_outputs(bootstrap, outputs)
    result = {
        "contender": contender.key,
        "title": contender.title,
        "round": round_number,
        "records": records,
        "expected_outputs": expected,
        "outputs": count,
        "processes": len(processes),
        **usage,
    }
    if first_ms is not None and last_ms is not None and last_ms > first_ms:
        result["e2e_records_per_second"] = records / (last_ms / 1000 - started)
        # The window opens with the first output, so the records in it are all but one.
        result["steady_records_per_second"] = (records - 1) / ((last_ms - first_ms) / 1000)
    result["cpu_us_per_record"] = usage["cpu_seconds"] / records * 1e6
    if count != expected:
        result["error"] = f"{count} outputs, expected {expected}"
    if job.get("profile_to"):
        result["profile"] = job["profile_to"]
    return result


def _run_pipeline_alone(
    contender: Contender, job: dict[str, Any], logs: Path, suffix: str
) -> dict[str, Any]:
    commands, env = _commands(contender, job)
    with (logs / f"{suffix}.log").open("wb") as log_file:
        process = subprocess.Popen(
            commands[0], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log_file
        )
        output = process.stdout.read()
        _, status, rusage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"pipeline contender failed; see {log_file.name}")
    measured = orjson.loads(output)
    pipeline_rate = measured["pipeline"]["records_per_second"]
    loads_rate = measured["orjson_loads"]["records_per_second"]
    return {
        "contender": contender.key,
        "title": contender.title,
        "records": job["records"],
        "pipeline_records_per_second": pipeline_rate,
        "pipeline_us_per_record": 1e6 / pipeline_rate,
        "orjson_loads_us_per_record": 1e6 / loads_rate,
        "pipeline_vs_orjson_loads": loads_rate / pipeline_rate,
        "cpu_seconds": rusage.ru_utime + rusage.ru_stime,
        "peak_rss_mb": measured["peak_rss_mb"],
    }


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process' high-water resident set (VmHWM). Not getrusage's ru_maxrss, which
    for a child counts the parent's memory at fork time."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _stop(processes: list[subprocess.Popen]) -> dict[str, float]:
    rss = 0.0
    for process in processes:
        if process.poll() is None:
            rss = max(rss, peak_rss_mb(process.pid))
            process.terminate()
    cpu = 0.0
    for process in processes:
        if process.returncode is not None:
            continue  # exited early and already reaped; the run fails anyway
        # wait4, not Popen.wait: the child's own CPU time comes with it.
        _, _, rusage = os.wait4(process.pid, 0)
        cpu += rusage.ru_utime + rusage.ru_stime
    return {"cpu_seconds": cpu, "peak_rss_mb": rss}


# -- report --------------------------------------------------------------------------


def summarise(results: list[dict[str, Any]], skipped: dict[str, str]) -> dict[str, Any]:
    """Median over rounds per contender, and ratios to the ceiling (A) and to Quix (C)."""
    summary: dict[str, dict[str, Any]] = {}
    for contender in CONTENDERS:
        rows = [r for r in results if r["contender"] == contender.key]
        if not rows:
            continue
        medians = {}
        for field in rows[0]:
            values = [r[field] for r in rows if isinstance(r.get(field), int | float)]
            if values and field not in ("round", "records", "processes"):
                medians[field] = statistics.median(values)
        summary[contender.key] = {"title": contender.title, **medians}
    ceiling = summary.get("A", {}).get("steady_records_per_second")
    quix = summary.get("C", {}).get("steady_records_per_second")
    for key, row in summary.items():
        steady = row.get("steady_records_per_second")
        if steady and ceiling:
            row["steady_vs_ceiling"] = steady / ceiling
        if steady and quix and key != "C":
            row["steady_vs_quix"] = steady / quix
    return {"contenders": summary, "skipped": skipped}


def render_table(summary: dict[str, Any]) -> str:
    lines = [
        "| | contender | e2e rec/s | steady rec/s | vs ceiling | vs Quix | CPU µs/rec "
        "| peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def number(value: Any, pattern: str) -> str:
        return format(value, pattern) if isinstance(value, int | float) else "-"

    for contender in CONTENDERS:
        row = summary["contenders"].get(contender.key)
        if contender.key in summary["skipped"]:
            why = summary["skipped"][contender.key]
            lines.append(f"| {contender.key} | {contender.title} | {why} | | | | | |")
            continue
        if row is None:
            continue
        if contender.key == "D":
            lines.append(
                f"| D | pipeline + encoding, no Kafka | "
                f"{number(row['pipeline_records_per_second'], ',.0f')} | | | | "
                f"{number(row['pipeline_us_per_record'], '.1f')} | "
                f"{number(row['peak_rss_mb'], '.0f')} |"
            )
            lines.append(
                f"| D | orjson.loads alone | "
                f"{number(1e6 / row['orjson_loads_us_per_record'], ',.0f')} | | | | "
                f"{number(row['orjson_loads_us_per_record'], '.2f')} | |"
            )
            continue
        lines.append(
            f"| {contender.key} | {contender.title} | "
            f"{number(row.get('e2e_records_per_second'), ',.0f')} | "
            f"{number(row.get('steady_records_per_second'), ',.0f')} | "
            f"{number(row.get('steady_vs_ceiling'), '.0%')} | "
            f"{number(row.get('steady_vs_quix'), '.2f')} | "
            f"{number(row.get('cpu_us_per_record'), '.1f')} | "
            f"{number(row.get('peak_rss_mb'), '.0f')} |"
        )
    d = summary["contenders"].get("D")
    if d:
        lines.append("")
        lines.append(
            f"pipeline + encoding = {d['pipeline_vs_orjson_loads']:.1f}x orjson.loads "
            f"({d['pipeline_us_per_record']:.1f} µs vs {d['orjson_loads_us_per_record']:.2f} µs "
            "per record)"
        )
    if "M" in summary["contenders"]:
        limits = ", ".join(f"{name}={value}" for name, value in BOUNDED_PREFETCH.items())
        lines.append(f"M's prefetch limits: {limits}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated contender keys")
    parser.add_argument("--label", default="", help="a word stored with the results")
    parser.add_argument(
        "--bootstrap-servers",
        help="use this broker rather than starting the project's local one",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the service under cProfile (slower) and print where its time goes",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.records < 10:
        parser.error("at least 1 round of 10 records")
    chosen = [c for c in CONTENDERS if not args.only or c.key in args.only.split(",")]
    skipped = {c.key: why for c in chosen if (why := c.available())}
    runnable = [c for c in chosen if c.key not in skipped]

    results_dir = args.results_dir
    results_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    logs = results_dir / f"{stamp}-logs"
    logs.mkdir()
    workload = mixed_records(args.records)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    info = machine()
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers
        if not bootstrap:
            bootstrap = stack.enter_context(LocalBroker()).bootstrap_servers
        raw_topic = f"bench.raw.{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, [raw_topic], log_append_time=False)
        fill_raw_topic(bootstrap, raw_topic, workload.records)
        print(
            f"broker {bootstrap}; {args.records} records in {raw_topic} "
            f"({workload.accepted} accepted, {workload.ignored} ignored, "
            f"{workload.rejected} rejected); {args.rounds} rounds",
            flush=True,
        )
        for round_number in range(1, args.rounds + 1):
            for contender in runnable:
                result = run_contender(
                    contender, bootstrap, raw_topic, workload, round_number, logs, args.profile
                )
                results.append(result)
                if "error" in result:
                    failures.append(f"{contender.title}, round {round_number}: {result['error']}")
                rate = result.get("steady_records_per_second") or result.get(
                    "pipeline_records_per_second", 0
                )
                print(
                    f"round {round_number} {contender.key:2} {contender.title:28} "
                    f"{rate:>10,.0f} rec/s  {result.get('error', 'ok')}",
                    flush=True,
                )
    summary = summarise(results, skipped)
    report = {
        "label": args.label,
        "time": stamp,
        "machine": info,
        "records": args.records,
        "rounds": args.rounds,
        "mix": {
            "accepted": workload.accepted,
            "ignored": workload.ignored,
            "rejected": workload.rejected,
        },
        "summary": summary,
        "runs": results,
        "failures": failures,
    }
    path = results_dir / f"{stamp}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    shutil.copyfile(path, results_dir / "latest.json")
    print()
    print(render_table(summary))
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores; results in {path}")
    for result in results:
        if "profile" in result:
            print(f"\nprofile of {result['title']}, round {result['round']}:")
            pstats.Stats(result["profile"]).sort_stats("tottime").print_stats(30)
    if failures:
        print("\nFAILED: output counts differ from the expected ones:", *failures, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
