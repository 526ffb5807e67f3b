"""`loyalty-consumer replay`: puts dead letters back through the service.

Reads the dead-letter topic and produces each selected record's original value, key and
original headers (the error headers stripped) to the raw topic, with lineage headers:

  loyalty.replay.of   the dead letter replayed: <dead-letter topic>/<partition>@<offset>
  loyalty.replay.at   when it was replayed (ISO-8601 UTC)
  loyalty.replay.id   the replay's id: its consumer group

Resumable and not doubled: the replay keeps its position in a consumer group of its own,
committed only after every record of a batch is acknowledged by the raw topic. An
interrupted replay continues where it stopped; running the same command again replays
nothing twice. The group is derived from the filter (`<group>-replay-<digest>`), so a
replay with another filter starts from the beginning of the dead-letter topic and is not
blocked by an earlier one; overlapping filters do replay their overlap once each (name
the group with --group to share positions on purpose). A run stops at the end offsets
it saw when it started, so records that fail again and come back to the dead-letter
topic are not replayed in a loop; the next run picks them up.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consumer import dead_letter
from consumer.config import Settings
from consumer.console import ProgressReport, console, error_console, table
from consumer.kafka_io import TopicUnavailable, construct_client, produce, topic_partitions
from consumer.records import HeaderList, iso_utc

log = logging.getLogger(__name__)

REPLAY_OF = "loyalty.replay.of"
REPLAY_AT = "loyalty.replay.at"
REPLAY_ID = "loyalty.replay.id"
# Headers the service adds to a dead letter, and lineage of an earlier replay: none of
# them belongs on the record the provider sent.
_STRIPPED_PREFIXES = ("__connect.errors.", "loyalty.error.", "loyalty.replay.")

BATCH_SIZE = 500
# Every produced record of a batch must be acknowledged before its offsets are committed.
FLUSH_TIMEOUT_SECONDS = 60.0
METADATA_TIMEOUT_SECONDS = 10.0

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters to replay; an empty criterion selects everything. Source
    partition and offsets are the raw-topic coordinates the record was rejected at."""

    reasons: frozenset[str] = frozenset()
    providers: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    failed_after: datetime | None = None
    failed_before: datetime | None = None
    source_partitions: frozenset[int] = frozenset()
    source_offset_min: int | None = None
    source_offset_max: int | None = None

    def matches(self, facts: dict[str, str]) -> bool:
        if self.reasons and facts.get(dead_letter.REASON) not in self.reasons:
            return False
        if self.providers and facts.get(dead_letter.PROVIDER, "unknown") not in self.providers:
            return False
        if self.event_types and facts.get(dead_letter.EVENT_TYPE) not in self.event_types:
            return False
        if self.failed_after or self.failed_before:
            failed_at = _parse_time(facts.get(dead_letter.FAILED_AT))
            if failed_at is None:
                return False
            if self.failed_after and failed_at < self.failed_after:
                return False
            if self.failed_before and failed_at >= self.failed_before:
                return False
        if (
            self.source_partitions
            or self.source_offset_min is not None
            or (self.source_offset_max is not None)
        ):
            partition = _parse_int(facts.get(dead_letter.CONNECT_PARTITION))
            offset = _parse_int(facts.get(dead_letter.CONNECT_OFFSET))
            if self.source_partitions and partition not in self.source_partitions:
                return False
            if self.source_offset_min is not None and (
                offset is None or offset < self.source_offset_min
            ):
                return False
            if self.source_offset_max is not None and (
                offset is None or offset > self.source_offset_max
            ):
                return False
        return True

    def digest(self) -> str:
        """A short stable name for the filter, for the replay's consumer group."""
        parts = [
            ",".join(sorted(self.reasons)),
            ",".join(sorted(self.providers)),
            ",".join(sorted(self.event_types)),
            iso_utc(self.failed_after) if self.failed_after else "",
            iso_utc(self.failed_before) if self.failed_before else "",
            ",".join(str(p) for p in sorted(self.source_partitions)),
            str(self.source_offset_min),
            str(self.source_offset_max),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def dead_letter_facts(headers: HeaderList | None) -> dict[str, str]:
    """The service's dead-letter headers by name (the last occurrence: they follow the
    original headers). The service writes every one of them, empty where it does not
    apply: an empty value is no fact."""
    facts = {}
    for name, value in headers or ():
        if name.startswith(("__connect.errors.", "loyalty.error.")) and value is not None:
            facts[name] = value.decode("utf-8", errors="replace")
    return {name: value for name, value in facts.items() if value}


def original_headers(headers: HeaderList | None) -> list[tuple[str, bytes | None]]:
    """The headers the record arrived with, in order, without the service's additions."""
    return [(n, v) for n, v in headers or () if not n.startswith(_STRIPPED_PREFIXES)]


def replay_headers(
    headers: HeaderList | None, source: str, replay_id: str, replayed_at: datetime
) -> list[tuple[str, bytes | None]]:
    return [
        *original_headers(headers),
        (REPLAY_OF, source.encode()),
        (REPLAY_AT, iso_utc(replayed_at).encode()),
        (REPLAY_ID, replay_id.encode()),
    ]


def replay_group(settings: Settings, selection: ReplayFilter) -> str:
    return f"{settings.group_id}-replay-{selection.digest()}"


@dataclass
class ReplayResult:
    read: int = 0
    selected: Counter = field(default_factory=Counter)  # (reason, provider) -> count
    replayed: int = 0
    failed: int = 0  # produced but not acknowledged
    not_replayable: int = 0  # sent to the dead-letter topic without their value
    interrupted: bool = False

    @property
    def selected_total(self) -> int:
        return sum(self.selected.values())


@dataclass
class _Partition:
    number: int
    start: int
    end: int  # the end offset when the replay started: it stops there
    next_offset: int = -1
    done: bool = False


def run_replay(
    settings: Settings,
    selection: ReplayFilter,
    dry_run: bool = False,
    rate: float | None = None,
    group: str | None = None,
    result: ReplayResult | None = None,
) -> int:
    """The exit status; `result`, when given, is filled in with the counts."""
    group = group or replay_group(settings, selection)
    out, err = console(), error_console()
    consumer = construct_client(
        Consumer,
        settings,
        "consumer",
        settings.client_config(
            {
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            },
            "consumer",
        ),
        {},
    )
    producer = None
    if not dry_run:
        producer = construct_client(
            Producer,
            settings,
            "producer",
            settings.client_config(
                {"enable.idempotence": True, "acks": "all", "linger.ms": 10}, "producer"
            ),
            {},
        )
    result = result if result is not None else ReplayResult()
    failure = None
    try:
        partitions = _partitions(consumer, settings.dead_letter_topic, settings)
        total = sum(p.end - p.start for p in partitions)
        verb = "would replay" if dry_run else "replaying"
        err.print(
            f"{verb} from {settings.dead_letter_topic} to {settings.raw_topic}: "
            f"{total} dead letters to read, group {group}"
        )
        description = "dry run" if dry_run else "replay"
        with _interruptible() as interrupted, ProgressReport(err, description, total) as progress:
            _replay(
                consumer,
                producer,
                settings,
                selection,
                partitions,
                group,
                rate,
                result,
                progress,
                interrupted,
            )
    except ReplayFailed as exc:
        failure = str(exc)
    finally:
        consumer.close()
    if failure is not None and not result.read:
        err.print(f"loyalty-consumer replay: {failure}")
        return EXIT_FAILED
    _report(out, err, result, dry_run, settings, group)
    if failure is not None:
        err.print(f"loyalty-consumer replay: {failure}")
        return EXIT_FAILED
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failed or result.not_replayable else EXIT_OK


def _partitions(consumer: Consumer, topic: str, settings: Settings) -> list[_Partition]:
    try:
        numbers = topic_partitions(
            consumer, topic, settings.bootstrap_servers, METADATA_TIMEOUT_SECONDS
        )
    except TopicUnavailable as exc:
        raise ReplayFailed(f"{exc} (the dead-letter topic, LOYALTY_DLQ_TOPIC)") from None
    committed = consumer.committed(
        [TopicPartition(topic, n) for n in numbers], timeout=METADATA_TIMEOUT_SECONDS
    )
    found = []
    for tp in committed:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, tp.partition), timeout=METADATA_TIMEOUT_SECONDS
        )
        start = max(tp.offset, low) if tp.offset >= 0 else low
        found.append(_Partition(tp.partition, start, high, next_offset=start, done=start >= high))
    return found


class ReplayFailed(Exception):
    """The replay cannot start or go on; the message says why, in one line."""


def _replay(
    consumer: Consumer,
    producer: Producer | None,
    settings: Settings,
    selection: ReplayFilter,
    partitions: list[_Partition],
    replay_id: str,
    rate: float | None,
    result: ReplayResult,
    progress: ProgressReport,
    interrupted: list[bool],
) -> None:
    by_number = {p.number: p for p in partitions}
    topic = settings.dead_letter_topic
    pending = [TopicPartition(topic, p.number, p.start) for p in partitions if not p.done]
    if not pending:
        return
    consumer.assign(pending)
    failures: list[str] = []
    started = time.monotonic()
    while not all(p.done for p in partitions):
        if interrupted[0]:
            result.interrupted = True
            return
        # Rate-limited, a batch is about a second's worth, so an interruption or a
        # failure leaves little to redo.
        batch = consumer.consume(min(BATCH_SIZE, max(1, int(rate or BATCH_SIZE))), 1.0)
        produced_in_batch = 0
        for message in batch:
            if interrupted[0]:
                break  # what was produced is flushed and committed below
            partition = by_number.get(message.partition())
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                    partition.done = True
                    continue
                raise ReplayFailed(f"reading {topic} failed: {error.str()}")
            if partition is None or partition.done or message.offset() >= partition.end:
                if partition is not None:
                    partition.done = True
                continue
            partition.next_offset = message.offset() + 1
            if partition.next_offset >= partition.end:
                partition.done = True
            result.read += 1
            facts = dead_letter_facts(message.headers())
            if selection.matches(facts):
                reason = facts.get(dead_letter.REASON, "unknown")
                provider = facts.get(dead_letter.PROVIDER, "unknown")
                result.selected[(reason, provider)] += 1
                if producer is not None:
                    if _replay_one(producer, settings, message, facts, replay_id, failures):
                        produced_in_batch += 1
                        _wait_for_rate(rate, started, result.replayed + produced_in_batch)
                    else:
                        result.not_replayable += 1
            progress.advance(note=f"{result.selected_total} selected")
        if producer is not None:
            left = producer.flush(FLUSH_TIMEOUT_SECONDS)
            if failures or left:
                result.failed += len(failures) + left
                for failure in failures[:5]:
                    log.error("replay not acknowledged", extra={"error": failure})
                result.replayed += produced_in_batch - len(failures) - left
                # The batch's offsets are not committed: a rerun replays it again.
                raise ReplayFailed(
                    f"{len(failures) + left} replayed records were not acknowledged by "
                    f"{settings.raw_topic}; nothing of this batch was committed"
                )
            result.replayed += produced_in_batch
            positions = [
                TopicPartition(topic, p.number, p.next_offset)
                for p in partitions
                if p.next_offset > p.start
            ]
            if positions:
                consumer.commit(offsets=positions, asynchronous=False)
        paused = [TopicPartition(topic, p.number) for p in partitions if p.done]
        if paused:
            consumer.pause(paused)


def _replay_one(
    producer: Producer,
    settings: Settings,
    message: Message,
    facts: dict[str, str],
    replay_id: str,
    failures: list[str],
) -> bool:
    if dead_letter.VALUE_OMITTED_BYTES in facts:
        log.error(
            "dead letter has no value (too large); replay it from the raw topic",
            extra={
                "dead_letter": f"{message.topic()}/{message.partition()}@{message.offset()}",
                "source_partition": facts.get(dead_letter.CONNECT_PARTITION),
                "source_offset": facts.get(dead_letter.CONNECT_OFFSET),
            },
        )
        return False
    source = f"{message.topic()}/{message.partition()}@{message.offset()}"

    def delivered(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failures.append(f"{source}: {error.str()}")

    produce(
        producer,
        settings.raw_topic,
        key=message.key(),
        value=message.value(),
        headers=replay_headers(message.headers(), source, replay_id, datetime.now(UTC)),
        on_delivery=delivered,
    )
    return True


def _wait_for_rate(rate: float | None, started: float, produced: int) -> None:
    if not rate:
        return
    ahead = started + produced / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)


class _interruptible:
    """Ctrl-C (or SIGTERM) finishes the batch in hand, commits it, and stops."""

    def __enter__(self) -> list[bool]:
        self.flag = [False]
        self.previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in self.previous:
            signal.signal(signum, self._handle)
        return self.flag

    def _handle(self, signum: int, _frame: Any) -> None:
        self.flag[0] = True
        for signum_ in self.previous:
            signal.signal(signum_, signal.SIG_DFL)  # a second one stops at once

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _report(out, err, result: ReplayResult, dry_run: bool, settings: Settings, group: str):
    rows = sorted(
        ((reason, provider, count) for (reason, provider), count in result.selected.items()),
        key=lambda row: (-row[2], row[0], row[1]),
    )
    title = "would be replayed" if dry_run else "selected for replay"
    out.print(table(title, ("reason", "provider", "records"), rows or [("-", "-", 0)]))
    if dry_run:
        out.print(
            f"dry run: read {result.read} dead letters, {result.selected_total} would be "
            f"replayed to {settings.raw_topic}; nothing was produced or committed"
        )
        return
    out.print(
        f"read {result.read} dead letters, replayed {result.replayed} to {settings.raw_topic}"
        f" (replay id {group})"
        + (
            f", {result.not_replayable} without a value (see the log)"
            if result.not_replayable
            else ""
        )
        + (f", {result.failed} NOT acknowledged" if result.failed else "")
    )
    if result.interrupted:
        err.print("interrupted: run the same command again to continue where this one stopped")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_time_argument(text: str) -> datetime:
    """--failed-after / --failed-before: ISO-8601; without an offset, UTC."""
    parsed = _parse_time(text)
    if parsed is None:
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    return parsed
