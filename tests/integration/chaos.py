"""Fault scenarios on the real broker, for both processing guarantees, judged by the
ledger. The integration tests run them small; `make chaos` runs them at any size:

    python -m tests.integration.chaos --records 100000 --faults 3 --seed 7

Each scenario feeds a mixed stream (accepted, ignored, rejected, hostile) into a raw
topic of 6 partitions while the faults happen, waits until the group has committed
everything, and accounts for every raw record. Members are real `loyalty-consumer run`
processes, supervised as Kubernetes would: a member that exits is started again, and so
is one whose /healthz fails three probes in a row (SIGTERM, SIGKILL after the grace
period); both kinds of restart are counted. Per partition, the longest time with records
waiting and no commit is printed. Every member's and broker's log stays in a folder per
scenario and guarantee, named in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.__main__ import EXIT_USAGE
from consumer.config import AT_LEAST_ONCE, EXACTLY_ONCE
from consumer.dev.local_broker import LocalBroker, free_ports
from consumer.dev.samples import LOCAL_SECRETS, redemption_payload
from consumer.dev.signing import SIGNERS
from consumer.pipeline import Pipeline
from tests.helpers import processes
from tests.integration.ledger import Ledger, account

PARTITIONS = 6
COMMAND = Path(sys.executable).with_name("loyalty-consumer")
STOP_TIMEOUT_SECONDS = 40
SETTLE_TIMEOUT_SECONDS = 240
# Members' session timeout. Under the classic protocol the member asks for it; under
# KIP-848's (`--group-protocol consumer`) the brokers hold it, so theirs is lowered to
# the same 6 s (their defaults: 45 s, and no group may ask below it), with a heartbeat
# well inside it.
MEMBER_SESSION_TIMEOUT_MS = 6000
CHAOS_BROKER_SETTINGS = {
    "group.consumer.min.session.timeout.ms": str(MEMBER_SESSION_TIMEOUT_MS),
    "group.consumer.session.timeout.ms": str(MEMBER_SESSION_TIMEOUT_MS),
    "group.consumer.min.heartbeat.interval.ms": "1000",
    "group.consumer.heartbeat.interval.ms": "2000",
}
# The group protocol the members use: "classic" (the service's default) or "consumer".
group_protocol = "classic"


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
        self._stopping = threading.Event()
        self.produced = 0
        self.failed = 0

    def run(self) -> None:
        started = time.monotonic()
        for n, (value, headers) in enumerate(mixed_stream(self._count, self._seed)):
            if self._stopping.is_set():
                return
            while True:
                try:
                    self._producer.produce(
                        self._topic, value=value, headers=headers, on_delivery=self._on_delivery
                    )
                    break
                except BufferError:
                    if self._stopping.is_set():
                        return
                    self._producer.poll(0.1)
            self._producer.poll(0)
            ahead = started + self._seconds * (n + 1) / self._count - time.monotonic()
            if ahead > 0:
                self._stopping.wait(ahead)
        # Until everything is delivered: the producer retries through broker outages
        # (up to its message.timeout.ms); a stopped scenario does not wait for it.
        while self._producer.flush(1.0) and not self._stopping.is_set():
            pass

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        # Released now rather than whenever the scenario's objects are collected: a
        # producer left alive keeps reconnecting to its scenario's stopped broker and
        # logging until the interpreter exits.
        self._producer = None

    def _on_delivery(self, error, _message) -> None:
        if error is None:
            self.produced += 1
        else:
            self.failed += 1


# --- members and their orchestrator ----------------------------------------------------

# The liveness probe as the chart's would run it (deploy/helm: GET /healthz, 2 s timeout,
# 3 failures in a row), every 5 s rather than 10 so the scenarios stay short. The
# initial delay covers the interpreter's start-up on a loaded machine, when the port
# does not answer yet.
LIVENESS_PERIOD_SECONDS = 5.0
LIVENESS_TIMEOUT_SECONDS = 2.0
LIVENESS_FAILURE_THRESHOLD = 3
LIVENESS_INITIAL_DELAY_SECONDS = 10.0
# After a failed probe: SIGTERM, and SIGKILL when this is up (the chart's
# terminationGracePeriodSeconds), as the kubelet does.
TERMINATION_GRACE_SECONDS = 40.0
ORCHESTRATOR_TICK_SECONDS = 0.5


@dataclass
class Member:
    """One `loyalty-consumer run` process; restartable under the same name. Every
    process operation holds the lock: the scenario and the orchestrator share it."""

    name: str
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen | None = None
    port: int = 0
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    # Restarts by the orchestrator: after the member exited on its own (with the status),
    # and after its liveness probe failed.
    restarted_after_exit: list[int] = field(default_factory=list)
    restarted_after_probe: int = 0
    # False while a scenario holds it stopped: the orchestrator leaves it alone then.
    wanted: bool = False
    refused_settings: bool = False
    _probe_failures: int = 0
    _next_probe_at: float = 0.0
    _terminating_since: float | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def start(self) -> None:
        with self.lock:
            (self.port,) = free_ports(1)
            self.starts += 1
            with open(self.log_dir / f"{self.name}.{self.starts}.log", "wb") as log:
                self.process = processes.start(
                    [str(COMMAND), "run"],
                    env={
                        **self.env,
                        "LOYALTY_MEMBER_NAME": self.name,
                        "LOYALTY_METRICS_PORT": str(self.port),
                    },
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.wanted = True
            self._probe_failures = 0
            self._terminating_since = None
            self._next_probe_at = time.monotonic() + LIVENESS_INITIAL_DELAY_SECONDS

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would; the scenario starts it again."""
        with self.lock:
            self.wanted = False
            if self.process is not None:
                processes.kill(self.process)
                self.process = None

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL after STOP_TIMEOUT_SECONDS); the exit status."""
        with self.lock:
            self.wanted = False
            if self.process is None:
                return 0
            code = processes.stop(self.process, grace=STOP_TIMEOUT_SECONDS)
            self.exits.append(code)
            self.process = None
            return code

    def supervise(self, now: float) -> None:
        """One look by the orchestrator: a member that exited is started again; one whose
        /healthz failed LIVENESS_FAILURE_THRESHOLD times in a row gets SIGTERM, then
        SIGKILL after the grace period, then a new start."""
        with self.lock:
            if not self.wanted or self.process is None:
                return
            if self.process.poll() is not None:
                code = self.process.returncode
                self.exits.append(code)
                if self._terminating_since is not None:
                    self.restarted_after_probe += 1
                elif code == EXIT_USAGE:  # bad settings: a restart would fail the same way
                    self.refused_settings = True
                    self.wanted = False
                    return
                else:
                    self.restarted_after_exit.append(code)
                print(f"  {self.name}: exited {code}, restarting", flush=True)
                self.start()
                return
            if self._terminating_since is not None:
                if now - self._terminating_since > TERMINATION_GRACE_SECONDS:
                    processes.kill(self.process)  # the next look restarts it
                return
            if now < self._next_probe_at:
                return
            self._next_probe_at = now + LIVENESS_PERIOD_SECONDS
            healthy, detail = self.probe()
            self._probe_failures = 0 if healthy else self._probe_failures + 1
            if self._probe_failures >= LIVENESS_FAILURE_THRESHOLD:
                print(f"  {self.name}: liveness probe failed ({detail}), terminating", flush=True)
                self._terminating_since = now
                processes.signal_group(self.process, signal.SIGTERM)

    def probe(self) -> tuple[bool, str]:
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=LIVENESS_TIMEOUT_SECONDS) as response:
                return response.status == 200, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return False, f"{exc.code} {exc.read().decode(errors='replace').strip()}"
        except OSError as exc:
            return False, repr(exc)


class Orchestrator(threading.Thread):
    """What a Deployment's controller and kubelet do for the members: restart on exit,
    restart on a failed liveness probe."""

    def __init__(self, members: list[Member]) -> None:
        super().__init__(name="orchestrator", daemon=True)
        self._members = members
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(ORCHESTRATOR_TICK_SECONDS):
            for member in list(self._members):
                member.supervise(time.monotonic())

    def stop(self) -> None:
        self._stopping.set()
        self.join()


# How often the group's progress is sampled; the longest time without progress per
# partition is known to this resolution.
PROGRESS_SAMPLE_SECONDS = 0.5
PROGRESS_CALL_TIMEOUT_SECONDS = 5.0


class ProgressWatch(threading.Thread):
    """Samples the group's committed offsets and the raw topic's end offsets. A partition
    makes progress when its commit point moves, and has nothing to do when it is at the
    end; otherwise the clock runs: `longest_stall` is, per partition, the longest time
    it had records waiting and its commit point did not move (a broker outage counts)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        super().__init__(name="progress", daemon=True)
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0}
        )
        self._partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self._stopping = threading.Event()
        started = time.monotonic()
        self._last_progress = {p: started for p in range(PARTITIONS)}
        self._committed = {p: -1 for p in range(PARTITIONS)}
        self.longest_stall = {p: 0.0 for p in range(PARTITIONS)}
        self.caught_up_at: float | None = None  # last sample that found every partition done
        self.failed_samples = 0

    @property
    def committed_total(self) -> int:
        return sum(max(offset, 0) for offset in self._committed.values())

    def run(self) -> None:
        try:
            while not self._stopping.wait(PROGRESS_SAMPLE_SECONDS):
                self._sample()
        finally:
            self._consumer.close()

    def _sample(self) -> None:
        now = time.monotonic()
        try:
            committed = {
                tp.partition: tp.offset
                for tp in self._consumer.committed(
                    self._partitions, timeout=PROGRESS_CALL_TIMEOUT_SECONDS
                )
            }
            ends = {
                tp.partition: self._consumer.get_watermark_offsets(
                    tp, timeout=PROGRESS_CALL_TIMEOUT_SECONDS
                )[1]
                for tp in self._partitions
            }
        except KafkaException:  # the broker may be down: no progress seen, the clock runs
            self.failed_samples += 1
            committed, ends = None, None
        done = 0
        for p in range(PARTITIONS):
            if committed is not None:
                offset = max(committed[p], 0)
                if offset > self._committed[p] or offset >= ends[p]:
                    self._last_progress[p] = now
                    done += offset >= ends[p]
                self._committed[p] = max(offset, self._committed[p])
            self.longest_stall[p] = max(self.longest_stall[p], now - self._last_progress[p])
        if done == PARTITIONS:
            self.caught_up_at = now

    def stop(self) -> None:
        self._stopping.set()
        self.join()


# --- the harness -----------------------------------------------------------------------


@dataclass
class Outcome:
    scenario: str
    guarantee: str
    ledger: Ledger
    uncommitted_view: Ledger | None
    restarts_after_exit: list[int]
    restarts_after_probe: int
    longest_stall: dict[int, float]
    seconds: float
    log_dir: Path

    @property
    def restarts(self) -> int:
        return len(self.restarts_after_exit) + self.restarts_after_probe

    def row(self) -> dict[str, object]:
        codes = self.restarts_after_exit
        return {
            "scenario": self.scenario,
            "guarantee": self.guarantee,
            **self.ledger.summary(),
            "aborted_visible_uncommitted": (
                self.uncommitted_view.extra_outputs if self.uncommitted_view else "-"
            ),
            # "2 (exit 6, 6)": restarted twice, each after the member exited with 6.
            "restarts_after_exit": (
                f"{len(codes)} (exit {', '.join(map(str, codes))})" if codes else 0
            ),
            "restarts_after_probe": self.restarts_after_probe,
            "max_stall_s": round(max(self.longest_stall.values()), 1),
            "seconds": round(self.seconds, 1),
        }

    def stalls(self) -> str:
        return ", ".join(f"p{p} {s:.1f}" for p, s in sorted(self.longest_stall.items()))


class Run:
    """Topics, group, members, feeder and orchestrator of one scenario on one broker; a
    context manager: on the way out, whatever happened, every member is stopped (killed
    when the scenario failed) and the threads end."""

    def __init__(self, bootstrap: str, guarantee: str, log_dir: Path, scenario: str) -> None:
        self.bootstrap = bootstrap
        self.guarantee = guarantee
        # One folder per scenario and guarantee: no member's log overwrites another's.
        self.log_dir = log_dir / f"{guarantee}-{scenario}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        suffix = uuid.uuid4().hex[:8]
        self.raw, self.clean, self.dlq = (f"chaos-{k}-{suffix}" for k in ("raw", "clean", "dlq"))
        self.group = f"chaos-{suffix}"
        self.members: list[Member] = []
        self.feeder: Feeder | None = None
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics(
            [NewTopic(t, PARTITIONS, 1) for t in (self.raw, self.clean, self.dlq)]
        )
        for future in futures.values():
            future.result()
        self.orchestrator = Orchestrator(self.members)
        self.progress = ProgressWatch(bootstrap, self.group, self.raw)

    def __enter__(self) -> Run:
        self.orchestrator.start()
        self.progress.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.orchestrator.stop()
        for member in self.members:
            if exc_type is None:
                member.stop()
            else:
                member.kill()
        if self.feeder is not None:
            self.feeder.stop()
        self.progress.stop()

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
            "LOYALTY_SESSION_TIMEOUT_MS": str(MEMBER_SESSION_TIMEOUT_MS),
            # Short polls: a trickle of records keeps a transaction open most of the time,
            # so a kill lands inside one.
            "LOYALTY_POLL_TIMEOUT_SECONDS": "0.2",
            "LOYALTY_STATISTICS_INTERVAL_MS": "60000",
            "LOYALTY_SHUTDOWN_DEADLINE_SECONDS": "25",
            "LOYALTY_LOG_LEVEL": "INFO",
            "MAGE_LOYALTY_WEBHOOK_SECRET": LOCAL_SECRETS["mage_loyalty"],
            "RIVO_WEBHOOK_SECRET": LOCAL_SECRETS["rivo"],
        }
        if group_protocol == "consumer":
            env["KAFKA_CONSUMER_GROUP_PROTOCOL"] = "consumer"
            del env["LOYALTY_SESSION_TIMEOUT_MS"]
        member = Member(name, env, self.log_dir)
        self.members.append(member)
        return member

    def feed(self, count: int, seed: int, seconds: float) -> Feeder:
        self.feeder = Feeder(self.bootstrap, self.raw, count, seed, seconds)
        self.feeder.start()
        return self.feeder

    def wait_for_progress(self, since: int, timeout: float = 60) -> int:
        """Wait until the group has committed more than `since`; the new total. A fault
        injected before the member got going would prove nothing."""
        deadline = time.monotonic() + timeout
        while (total := self.progress.committed_total) <= since:
            self._check(deadline, f"made no progress in {timeout} s")
            time.sleep(0.2)
        return total

    def settle(self, count: int) -> None:
        """Wait for the feed to finish and the group to commit all of it (the
        orchestrator restarting members as needed); then stop the members."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        assert self.feeder is not None
        while self.feeder.is_alive():
            self._check(deadline, "did not get the feed out in time")
            time.sleep(0.5)
        fed_at = time.monotonic()
        while (self.progress.caught_up_at or 0) <= fed_at:
            self._check(deadline, "did not commit everything in time")
            time.sleep(0.5)
        assert self.feeder.produced == count, (self.feeder.produced, self.feeder.failed)
        for member in self.members:
            member.stop()

    def _check(self, deadline: float, failure: str) -> None:
        refused = [m.name for m in self.members if m.refused_settings]
        if refused:
            raise RuntimeError(f"{refused} refused their settings; see {self.log_dir}")
        if time.monotonic() > deadline:
            stalls = ", ".join(f"p{p} {s:.0f}s" for p, s in self.progress.longest_stall.items())
            alive = {m.name: m.alive for m in self.members}
            raise TimeoutError(
                f"{self.group} {failure}; committed {self.progress.committed_total}, longest "
                f"stalls {stalls}, members alive {alive}; logs in {self.log_dir}"
            )

    def outcome(self, scenario: str) -> Outcome:
        pipeline = ledger_pipeline()
        ledger = account(self.bootstrap, self.raw, self.clean, self.dlq, pipeline)
        uncommitted = None
        if self.guarantee == EXACTLY_ONCE:
            uncommitted = account(
                self.bootstrap, self.raw, self.clean, self.dlq, pipeline, "read_uncommitted"
            )
        return Outcome(
            scenario,
            self.guarantee,
            ledger,
            uncommitted,
            [code for m in self.members for code in m.restarted_after_exit],
            sum(m.restarted_after_probe for m in self.members),
            dict(self.progress.longest_stall),
            time.monotonic() - self.started,
            self.log_dir,
        )


def kill_member_repeatedly(
    bootstrap: str, guarantee: str, count: int, faults: int, seed: int, log_dir: Path
) -> Outcome:
    """One member, SIGKILLed `faults` times mid-stream and started again at once under
    its name (static membership: it gets its partitions back without a rebalance)."""
    with Run(bootstrap, guarantee, log_dir, "kill") as run:
        member = run.member("solo")
        member.start()
        run.feed(count, seed, seconds=max(15.0, count / 1500))
        rng = random.Random(seed)
        progress = 0
        for _ in range(faults):
            # Kill mid-checkpoint: after a commit, while the next batch is in flight.
            progress = run.wait_for_progress(progress)
            time.sleep(rng.uniform(0.2, 0.8))
            member.kill()
            member.start()
        run.settle(count)
    return run.outcome(f"member SIGKILL x{faults}")


def members_join_and_leave(
    bootstrap: str, guarantee: str, count: int, faults: int, seed: int, log_dir: Path
) -> Outcome:
    """Three members; while records arrive, members leave (SIGTERM) and join again,
    `faults` times each way, so rebalances overlap stops (a rolling deploy)."""
    with Run(bootstrap, guarantee, log_dir, "rebalance") as run:
        members = [run.member(f"m{i}", static=False) for i in range(3)]
        members[0].start()
        seconds = max(12.0, count / 1500)
        run.feed(count, seed, seconds)
        rng = random.Random(seed)
        for member in members[1:]:
            time.sleep(1.0)
            member.start()
        for _ in range(faults):
            time.sleep(rng.uniform(0.5, 1.5) * seconds / (faults + 2))
            leaving = rng.choice(members)
            leaving.stop()
            leaving.start()
        run.settle(count)
    outcome = run.outcome(f"3 members join/leave x{faults}")
    bad = [code for member in members for code in member.exits if code != 0]
    assert not bad, f"a member stopped with a failure exit status: {bad}; see {run.log_dir}"
    return outcome


@contextlib.contextmanager
def own_broker(log_dir: Path, name: str) -> Iterator[LocalBroker]:
    """A broker of the scenario's own, whose data and logs stay in the scenario's folder."""
    broker = LocalBroker(workdir=log_dir / name, settings=CHAOS_BROKER_SETTINGS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def broker_restarts(guarantee: str, count: int, faults: int, seed: int, log_dir: Path) -> Outcome:
    """The broker stopped with SIGTERM, then killed with SIGKILL (alternating, `faults`
    times), and started again after a few seconds on its own log; the member is left
    running. It rides out a short outage on its own (librdkafka reconnects and retries);
    when it gives up, it exits non-zero and is restarted, and the ledger shows that
    nothing was lost."""
    with own_broker(log_dir, f"broker-{guarantee}-restarts") as broker:
        with Run(broker.bootstrap_servers, guarantee, log_dir, "broker-restarts") as run:
            member = run.member("solo")
            member.start()
            seconds = max(15.0, count / 1500)
            run.feed(count, seed, seconds)
            for fault in range(faults):
                time.sleep(seconds / (faults + 1))
                if fault % 2 == 0:
                    broker.stop(keep_data=True)
                else:
                    broker.kill()
                time.sleep(4)
                broker.start()
            run.settle(count)
        return run.outcome(f"broker SIGTERM/SIGKILL x{faults}")


def broker_outage(
    guarantee: str, count: int, seed: int, log_dir: Path, outage_seconds: float = 60.0
) -> Outcome:
    """Two members; a third into the feed the broker stops (SIGTERM) and stays away for
    `outage_seconds`, far longer than the members' session timeout, then starts again on
    the same log. The members must come back to work on their own (or exit and be
    restarted); the feeder's producer holds its records meanwhile."""
    with own_broker(log_dir, f"broker-{guarantee}-outage") as broker:
        with Run(broker.bootstrap_servers, guarantee, log_dir, "broker-outage") as run:
            for name in ("m0", "m1"):
                run.member(name).start()
            seconds = max(15.0, count / 1500)
            run.feed(count, seed, seconds)
            run.wait_for_progress(0)
            time.sleep(seconds / 3)
            broker.stop(keep_data=True)
            time.sleep(outage_seconds)
            broker.start()
            run.settle(count)
        return run.outcome(f"broker down {outage_seconds:.0f} s")


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
    print("longest time without progress per partition (s), and the logs:")
    for o in outcomes:
        print(f"  {o.scenario} ({o.guarantee}): {o.stalls()}; {o.log_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument(
        "--guarantee", choices=[AT_LEAST_ONCE, EXACTLY_ONCE], action="append", default=None
    )
    parser.add_argument(
        "--scenario", choices=[*SCENARIOS, "restarts", "outage"], action="append", default=None
    )
    parser.add_argument("--group-protocol", choices=["classic", "consumer"], default="classic")
    args = parser.parse_args(argv)
    global group_protocol
    group_protocol = args.group_protocol
    guarantees = args.guarantee or [AT_LEAST_ONCE, EXACTLY_ONCE]
    chosen = args.scenario or [*SCENARIOS, "restarts", "outage"]
    log_dir = Path(tempfile.mkdtemp(prefix="loyalty-chaos-"))
    print(f"member and broker logs: {log_dir}", flush=True)
    outcomes = []
    try:
        with own_broker(log_dir, "broker-shared") as shared:
            for guarantee in guarantees:
                for name, scenario in SCENARIOS.items():
                    if name not in chosen:
                        continue
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
                if "restarts" in chosen:
                    print(f"running broker restarts ({guarantee})...", flush=True)
                    outcomes.append(
                        broker_restarts(guarantee, args.records, args.faults, args.seed, log_dir)
                    )
                if "outage" in chosen:
                    print(
                        f"running broker outage of {args.outage_seconds:.0f} s ({guarantee})...",
                        flush=True,
                    )
                    outcomes.append(
                        broker_outage(
                            guarantee, args.records, args.seed, log_dir, args.outage_seconds
                        )
                    )
    finally:
        if outcomes:
            print_table(outcomes)
        processes.kill_registered()
    failed = [
        o
        for o in outcomes
        if o.ledger.lost
        or o.ledger.misrouted
        or (o.guarantee == EXACTLY_ONCE and o.ledger.duplicated)
    ]
    print(f"group protocol: {group_protocol}")
    print("verdict:", "FAILED" if failed else "0 lost everywhere; 0 duplicates in exactly-once")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
