"""Peak resident memory of `loyalty-consumer run` when the raw topic carries a
compression bomb: one gzip record of a few hundred kilobytes that expands to
BOMB_MIB mebibytes, beside ordinary webhooks. Prints the service's peak RSS (VmHWM)
with and without the bomb, on the project's local broker.

    .venv/bin/python -m tests.benchmarks.compression_bomb
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.config import Settings
from consumer.dev.local_broker import LocalBroker, free_ports
from consumer.dev.samples import LOCAL_SECRETS
from consumer.dev.topics import ensure_topics
from tests.integration.service_harness import produce_all
from tests.integration.test_service import rivo_redemptions

BOMB_MIB = 220
ORDINARY_RECORDS = 200
# How long the service may take to get through the records on a busy machine.
DONE_TIMEOUT_SECONDS = 180


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _committed(bootstrap: str, group: str, topic: str) -> int:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = reader.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset
    finally:
        reader.close()


def measure(broker: LocalBroker, with_bomb: bool) -> float:
    name = f"bomb-{uuid.uuid4().hex[:8]}"
    raw, clean, dlq = f"{name}-raw", f"{name}-clean", f"{name}-dlq"
    ensure_topics(Settings(bootstrap_servers=broker.bootstrap_servers), (raw, clean, dlq), 1)
    records = produce_all(broker.bootstrap_servers, raw, rivo_redemptions(ORDINARY_RECORDS))
    if with_bomb:
        bomber = Producer(
            {
                "bootstrap.servers": broker.bootstrap_servers,
                "compression.type": "gzip",
                "message.max.bytes": (BOMB_MIB + 16) * 1024 * 1024,
            }
        )
        bomber.produce(raw, value=bytes(BOMB_MIB * 1024 * 1024))
        assert bomber.flush(60) == 0, "the bomb was not delivered"
        records += 1
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "LOYALTY_RAW_TOPIC": raw,
        "LOYALTY_CLEAN_TOPIC": clean,
        "LOYALTY_DLQ_TOPIC": dlq,
        "LOYALTY_GROUP_ID": name,
        "LOYALTY_METRICS_PORT": str(port),
        "MAGE_LOYALTY_WEBHOOK_SECRET": LOCAL_SECRETS["mage_loyalty"],
        "RIVO_WEBHOOK_SECRET": LOCAL_SECRETS["rivo"],
    }
    with tempfile.TemporaryFile() as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"], env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + DONE_TIMEOUT_SECONDS
            peak = 0.0
            while _committed(broker.bootstrap_servers, name, raw) < records:
                if service.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"the service did not finish:\n{log.read().decode()[-3000:]}")
                peak = max(peak, _peak_rss_mib(service.pid))
                time.sleep(0.5)
            return max(peak, _peak_rss_mib(service.pid))
        finally:
            service.terminate()
            service.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    broker = LocalBroker()
    broker.start()
    try:
        without = measure(broker, with_bomb=False)
        bomb = measure(broker, with_bomb=True)
    finally:
        broker.stop()
    print(f"peak RSS, {ORDINARY_RECORDS} webhooks:                  {without:6.0f} MiB")
    print(f"peak RSS, the same and a {BOMB_MIB} MiB gzip bomb: {bomb:6.0f} MiB")


if __name__ == "__main__":
    main()
