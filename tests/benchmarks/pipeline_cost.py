"""Cost of the pure pipeline per record, without Kafka: process() alone, and process()
plus the Avro single-object encoding the service does for accepted records; for each
kind of record, and for the benchmark's mix (tests/benchmarks/workload.py), next to
`orjson.loads` of the same values.

    make bench-pipeline        (or: .venv/bin/python -m tests.benchmarks.pipeline_cost)

Figures are CPU time of this process (time.process_time), not wall time: on a shared
machine another process' burst would otherwise count as ours. REPEATS rounds each run
every case once, interleaved; each case's best round is reported (noise only ever adds
time), so their ratios are comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import orjson

from consumer.dev.samples import LOCAL_SECRETS, redemption_payload
from consumer.dev.signing import mage_loyalty_headers, rivo_wire_headers
from consumer.pipeline import Pipeline
from consumer.records import Accepted, RawRecord
from consumer.schemas import SingleObjectCodec
from tests.benchmarks.workload import mixed_records

ROUND = 1000
REPEATS = 15
# The mix: as many records as one round, so each case weighs the same.
MIX_RECORDS = ROUND


def cases() -> list[tuple[str, Pipeline, list[RawRecord]]]:
    unsigned = Pipeline()
    signed = Pipeline(secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()})
    mage, rivo_body = redemption_payload("mage_loyalty"), redemption_payload("rivo")
    mage_headers = mage_loyalty_headers(LOCAL_SECRETS["mage_loyalty"], mage, "points.redeemed")
    rivo_headers = rivo_wire_headers(LOCAL_SECRETS["rivo"], rivo_body, "points_redemption/created")
    ignored_headers = rivo_wire_headers(
        LOCAL_SECRETS["rivo"], rivo_body, "notification/reward_expiry_last_chance"
    )
    mix = [
        RawRecord(r.value, r.headers, topic="raw", partition=0, offset=i)
        for i, r in enumerate(mixed_records(MIX_RECORDS).records)
    ]
    return [
        ("mage_loyalty accepted, no secret", unsigned, [RawRecord(mage, topic="raw")]),
        ("mage_loyalty accepted, signature verified", signed, [RawRecord(mage, mage_headers)]),
        ("rivo accepted, no secret", unsigned, [RawRecord(rivo_body, topic="raw")]),
        ("rivo accepted, signature verified", signed, [RawRecord(rivo_body, rivo_headers)]),
        ("rivo ignored (other event)", signed, [RawRecord(rivo_body, ignored_headers)]),
        ("rejected: invalid_json", unsigned, [RawRecord(mage[:40])]),
        ("the benchmark's mix (7 accepted, 2 ignored, 1 rejected)", signed, mix),
    ]


def cpu_microseconds(run: Callable[[RawRecord], object], batch: Sequence[RawRecord]) -> float:
    started = time.process_time()
    for record in batch:
        run(record)
    return (time.process_time() - started) / len(batch) * 1e6


def _loads(record: RawRecord) -> None:
    # Not contextlib.suppress: entering a context manager costs more than loads.
    try:  # noqa: SIM105
        orjson.loads(record.value)
    except orjson.JSONDecodeError:
        pass


def main() -> None:
    codec = SingleObjectCodec()

    def process_and_encode(pipeline: Pipeline):
        def run(record: RawRecord) -> None:
            outcome = pipeline.process(record)
            if isinstance(outcome, Accepted):
                codec.encode(outcome.record)

        return run

    header = f"{'case (CPU µs per record)':58} {'process':>8} {'+encode':>8} {'loads':>6}"
    print(f"{header} {'ratio':>6}")
    measured = []
    for name, pipeline, records in cases():
        batch = [records[i % len(records)] for i in range(ROUND)]
        runs = (pipeline.process, process_and_encode(pipeline), _loads)
        measured.append((name, batch, runs, [float("inf")] * len(runs)))
    # Round after round over every case and kind, keeping each one's best: a burst of
    # load on a shared machine then hits all of them alike instead of one case.
    for _ in range(REPEATS):
        for _, batch, runs, best in measured:
            for i, run in enumerate(runs):
                best[i] = min(best[i], cpu_microseconds(run, batch))
    for name, _, _, (process_only, with_encode, loads) in measured:
        print(
            f"{name:58} {process_only:8.1f} {with_encode:8.1f} {loads:6.2f} "
            f"{with_encode / loads:5.1f}x"
        )
    print("ratio: process + encode ÷ orjson.loads of the same values")


if __name__ == "__main__":
    main()
