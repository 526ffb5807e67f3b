"""Fault scenarios on the real broker, for both processing guarantees, judged by the
ledger. The integration tests run them small; `make chaos` runs them at any size:

    python -m tests.integration.chaos --records 100000 --faults 3 --seed 7

Each scenario feeds a mixed stream (accepted, ignored, rejected, hostile) into a raw
topic of 6 partitions while the faults happen, waits until the group has committed
everything, and accounts for every raw record. Members are real `loyalty-consumer run`
processes. When a member exits on its own, the scenario restarts it, as an orchestrator
would, and counts the restart.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.__main__ import EXIT_USAGE
from consumer.config import AT_LEAST_ONCE, EXACTLY_ONCE
from consumer.dev.local_broker import LocalBroker, free_ports
from consumer.dev.samples import LOCAL_SECRETS, redemption_payload
from consumer.dev.signing import SIGNERS
from consumer.pipeline import Pipeline
from tests.integration.ledger import Ledger, account
from tests.integration.service_harness import committed_offsets, end_offsets

PARTITIONS = 6
COMMAND = Path(sys.executable).with_name("loyalty-consumer")
STOP_TIMEOUT_SECONDS = 40
SETTLE_TIMEOUT_SECONDS = 240


# --- the stream ------------------------------------------------------------------------


def mixed_stream(count: int, seed: int) -> Iterator[tuple[bytes | None, list]]:
    """`count` raw records: mostly distinct redemptions of both providers, then other
    events (ignored) and bad or hostile input (rejected), in a seeded order."""
    rng = random.Random(seed)
    rivo = orjson.loads(redemption_payload("rivo"))
    mage = orjson.loads(redemption_payload("mage_loyalty"))
    sign_rivo, sign_mage = SIGNERS["rivo"], SIGNERS["mage_loyalty"]
    rivo_secret, mage_secret = LOCAL_SECRETS["rivo"], LOCAL_SECRETS["mage_loyalty"]
    hostile: list[tuple[bytes | None, list]] = [
        (b"", []),
        (None, []),
        (b'{"event": "points.rede', []),
        (b"\xff\xfe not utf-8", []),
        (b'{"hello": "world"}', []),
        (b"[" * 5000, []),
        (orjson.dumps({"event": "points.redeemed", "data": {}, "pad": "x" * 200_000}), []),
    ]
    for n in range(count):
        roll = rng.random()
        if roll < 0.55:
            rivo["id"] = 10_000_000 + n
            rivo["customer"]["id"] = 9_000_000_000_000 + n % 97
            body = orjson.dumps(rivo)
            yield body, sign_rivo(rivo_secret, body, "points_redemption/created")
        elif roll < 0.75:
            mage["data"]["points_redeemed"] = 100 + n
            body = orjson.dumps(mage)
            yield body, sign_mage(mage_secret, body, "points.redeemed")
        elif roll < 0.85:
            mage["event"] = "points.earned"
            body = orjson.dumps(mage)
            mage["event"] = "points.redeemed"
            yield body, sign_mage(mage_secret, body, "points.earned")
        elif roll < 0.92:
            rivo["id"] = 10_000_000 + n
            body = orjson.dumps(rivo)
            yield body, sign_rivo("a-stale-secret", body, "points_redemption/created")
        else:
            yield rng.choice(hostile)


def ledger_pipeline() -> Pipeline:
    return Pipeline(secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()})


class Feeder(threading.Thread):
    """Produces the stream at a steady pace over `seconds`, riding out broker restarts
    (the producer retries until its message timeout)."""

    def __init__(self, bootstrap: str, topic: str, count: int, seed: int, seconds: float):
        super().__init__(name="feeder", daemon=True)
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.max.bytes": 2_000_000,
            }
        )
        self._topic, self._count, self._seed, self._seconds = topic, count, seed, seconds
        self.produced = 0
        self.failed = 0

    def run(self) -> None:
        started = time.monotonic()
        for n, (value, headers) in enumerate(mixed_stream(self._count, self._seed)):
            while True:
                try:
                    self._producer.produce(
                        self._topic, value=value, headers=headers, on_delivery=self._on_delivery
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self._producer.poll(0)
            ahead = started + self._seconds * (n + 1) / self._count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self._producer.flush(300)

    def _on_delivery(self, error, _message) -> None:
        if error is None:
            self.produced += 1
        else:
            self.failed += 1


# --- members -------------------------------------------------------------------------


@dataclass
class Member:
    """One `loyalty-consumer run` process; restartable under the same name."""

    name: str
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        (port,) = free_ports(1)
        self.starts += 1
        log = open(self.log_dir / f"{self.name}.{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(COMMAND), "run"],
            env={**self.env, "LOYALTY_MEMBER_NAME": self.name, "LOYALTY_METRICS_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> int:
        """SIGTERM and wait; the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.exits.append(code)
        self.process = None
        return code

    def restart_if_exited(self) -> bool:
        """The orchestrator's part: a member that exited on its own is started again."""
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            self.exits.append(code)
            if code == EXIT_USAGE:  # bad settings: a restart would fail the same way
                raise RuntimeError(f"{self.name} refused its settings; see {self.log_dir}")
            self.start()
            return True
        return False


# --- the harness -----------------------------------------------------------------------


@dataclass
class Outcome:
    scenario: str
    guarantee: str
    ledger: Ledger
    uncommitted_view: Ledger | None
    restarts: int
    seconds: float

    def row(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "guarantee": self.guarantee,
            **self.ledger.summary(),
            "aborted_visible_uncommitted": (
                self.uncommitted_view.extra_outputs if self.uncommitted_view else "-"
            ),
            "restarts": self.restarts,
            "seconds": round(self.seconds, 1),
        }


class Run:
    """Topics, group and members of one scenario on one broker."""

    def __init__(self, bootstrap: str, guarantee: str, log_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.guarantee = guarantee
        self.log_dir = log_dir
        suffix = uuid.uuid4().hex[:8]
        self.raw, self.clean, self.dlq = (f"chaos-{k}-{suffix}" for k in ("raw", "clean", "dlq"))
        self.group = f"chaos-{suffix}"
        self.members: list[Member] = []
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics(
            [NewTopic(t, PARTITIONS, 1) for t in (self.raw, self.clean, self.dlq)]
        )
        for future in futures.values():
            future.result()

    def member(self, name: str, static: bool = True) -> Member:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "LOYALTY_RAW_TOPIC": self.raw,
            "LOYALTY_CLEAN_TOPIC": self.clean,
            "LOYALTY_DLQ_TOPIC": self.dlq,
            "LOYALTY_GROUP_ID": self.group,
            "LOYALTY_PROCESSING_GUARANTEE": self.guarantee,
            "LOYALTY_STATIC_MEMBERSHIP": "true" if static else "false",
            "LOYALTY_SESSION_TIMEOUT_MS": "6000",
            # Short polls: a trickle of records keeps a transaction open most of the time,
            # so a kill lands inside one.
            "LOYALTY_POLL_TIMEOUT_SECONDS": "0.2",
            "LOYALTY_STATISTICS_INTERVAL_MS": "60000",
            "LOYALTY_SHUTDOWN_DEADLINE_SECONDS": "25",
            "LOYALTY_LOG_LEVEL": "INFO",
            "MAGE_LOYALTY_WEBHOOK_SECRET": LOCAL_SECRETS["mage_loyalty"],
            "RIVO_WEBHOOK_SECRET": LOCAL_SECRETS["rivo"],
        }
        member = Member(name, env, self.log_dir)
        self.members.append(member)
        return member

    def restarts(self) -> int:
        return sum(m.restart_if_exited() for m in self.members if m.process is not None)

    def all_committed(self) -> bool:
        try:
            ends = end_offsets(self.bootstrap, self.raw, PARTITIONS)
            committed = committed_offsets(self.bootstrap, self.group, self.raw, PARTITIONS)
        except Exception:  # the broker may be restarting
            return False
        return all(committed.get(p) == end for p, end in ends.items() if end)

    def committed_total(self) -> int:
        try:
            committed = committed_offsets(self.bootstrap, self.group, self.raw, PARTITIONS)
        except Exception:
            return -1
        return sum(max(offset, 0) for offset in committed.values())

    def wait_for_progress(self, since: int, timeout: float = 60) -> int:
        """Wait until the group has committed more than `since`; the new total. A fault
        injected before the member got going would prove nothing."""
        deadline = time.monotonic() + timeout
        while (total := self.committed_total()) <= since:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.group} made no progress in {timeout} s")
            self.restarts()
            time.sleep(0.2)
        return total

    def settle(self, feeder: Feeder, count: int) -> int:
        """Wait for the feed to finish and the group to commit all of it, restarting
        members that exit; then stop them. Returns the number of restarts."""
        restarts = 0
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while feeder.is_alive() or not self.all_committed():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.group} did not commit everything in time")
            restarts += self.restarts()
            time.sleep(0.5)
        assert feeder.produced == count, (feeder.produced, feeder.failed)
        for member in self.members:
            member.stop()
        return restarts

    def outcome(self, scenario: str, restarts: int, started: float) -> Outcome:
        pipeline = ledger_pipeline()
        ledger = account(self.bootstrap, self.raw, self.clean, self.dlq, pipeline)
        uncommitted = None
        if self.guarantee == EXACTLY_ONCE:
            uncommitted = account(
                self.bootstrap, self.raw, self.clean, self.dlq, pipeline, "read_uncommitted"
            )
        return Outcome(
            scenario, self.guarantee, ledger, uncommitted, restarts, time.monotonic() - started
        )


def kill_member_repeatedly(
    bootstrap: str, guarantee: str, count: int, faults: int, seed: int, log_dir: Path
) -> Outcome:
    """One member, SIGKILLed `faults` times mid-stream and started again at once under
    its name (static membership: it gets its partitions back without a rebalance)."""
    started = time.monotonic()
    run = Run(bootstrap, guarantee, log_dir)
    member = run.member("solo")
    member.start()
    seconds = max(15.0, count / 1500)
    feeder = Feeder(bootstrap, run.raw, count, seed, seconds)
    feeder.start()
    rng = random.Random(seed)
    progress = 0
    for _ in range(faults):
        # Kill mid-checkpoint: after a commit, while the next batch is in flight.
        progress = run.wait_for_progress(progress)
        time.sleep(rng.uniform(0.2, 0.8))
        member.kill()
        member.start()
    restarts = run.settle(feeder, count)
    return run.outcome(f"member SIGKILL x{faults}", restarts, started)


def members_join_and_leave(
    bootstrap: str, guarantee: str, count: int, faults: int, seed: int, log_dir: Path
) -> Outcome:
    """Three members; while records arrive, members leave (SIGTERM) and join again,
    `faults` times each way, so rebalances overlap stops (a rolling deploy)."""
    started = time.monotonic()
    run = Run(bootstrap, guarantee, log_dir)
    members = [run.member(f"m{i}", static=False) for i in range(3)]
    members[0].start()
    seconds = max(12.0, count / 1500)
    feeder = Feeder(bootstrap, run.raw, count, seed, seconds)
    feeder.start()
    rng = random.Random(seed)
    for member in members[1:]:
        time.sleep(1.0)
        member.start()
    exits = []
    for _ in range(faults):
        time.sleep(rng.uniform(0.5, 1.5) * seconds / (faults + 2))
        leaving = rng.choice(members)
        exits.append(leaving.stop())
        rng.choice([m for m in members if m is not leaving]).restart_if_exited()
        leaving.start()
    restarts = run.settle(feeder, count)
    outcome = run.outcome(f"3 members join/leave x{faults}", restarts, started)
    bad = [code for member in members for code in member.exits if code != 0]
    assert not bad, f"a member stopped with a failure exit status: {bad}"
    return outcome


def broker_restarts(guarantee: str, count: int, faults: int, seed: int, log_dir: Path) -> Outcome:
    """The broker stopped with SIGTERM, then killed with SIGKILL (alternating, `faults`
    times), and started again after a few seconds on its own log; the member is left
    running. It rides out a short outage on its own (librdkafka reconnects and retries);
    when it gives up (a delivery or a transaction times out), it exits non-zero and is
    restarted, and the ledger shows that nothing was lost."""
    started = time.monotonic()
    broker = LocalBroker(workdir=Path(tempfile.mkdtemp(prefix="chaos-broker-", dir=log_dir)))
    broker.start()
    try:
        run = Run(broker.bootstrap_servers, guarantee, log_dir)
        member = run.member("solo")
        member.start()
        seconds = max(15.0, count / 1500)
        feeder = Feeder(broker.bootstrap_servers, run.raw, count, seed, seconds)
        feeder.start()
        for fault in range(faults):
            time.sleep(seconds / (faults + 1))
            if fault % 2 == 0:
                broker.stop(keep_data=True)
            else:
                broker.kill()
            time.sleep(4)
            broker.start()
        restarts = run.settle(feeder, count)
        return run.outcome(f"broker SIGTERM/SIGKILL x{faults}", restarts, started)
    finally:
        broker.stop()


SCENARIOS: dict[str, Callable[..., Outcome]] = {
    "kill": kill_member_repeatedly,
    "rebalance": members_join_and_leave,
}


def print_table(outcomes: list[Outcome]) -> None:
    rows = [o.row() for o in outcomes]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[c]).ljust(widths[c]) for c in columns) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--guarantee", choices=[AT_LEAST_ONCE, EXACTLY_ONCE], action="append", default=None
    )
    args = parser.parse_args(argv)
    guarantees = args.guarantee or [AT_LEAST_ONCE, EXACTLY_ONCE]
    log_dir = Path(tempfile.mkdtemp(prefix="loyalty-chaos-"))
    print(f"member and broker logs: {log_dir}", flush=True)
    shared = LocalBroker()
    shared.start()
    outcomes = []
    try:
        for guarantee in guarantees:
            for name, scenario in SCENARIOS.items():
                print(f"running {name} ({guarantee})...", flush=True)
                outcomes.append(
                    scenario(
                        shared.bootstrap_servers,
                        guarantee,
                        args.records,
                        args.faults,
                        args.seed,
                        log_dir,
                    )
                )
            print(f"running broker restarts ({guarantee})...", flush=True)
            outcomes.append(
                broker_restarts(guarantee, args.records, args.faults, args.seed, log_dir)
            )
    finally:
        shared.stop()
    print_table(outcomes)
    failed = [
        o
        for o in outcomes
        if o.ledger.lost
        or o.ledger.misrouted
        or (o.guarantee == EXACTLY_ONCE and o.ledger.duplicated)
    ]
    print("verdict:", "FAILED" if failed else "0 lost everywhere; 0 duplicates in exactly-once")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
