"""Cost of the pure pipeline per record, without Kafka: process() alone, and process()
plus the Avro single-object encoding the service does for accepted records.

    make bench-pipeline        (or: .venv/bin/python -m tests.benchmarks.pipeline_cost)

Each case runs REPEATS rounds of ROUND records; the median round is reported, so one
noisy round on a shared machine does not move the result. All cases run in one
process, one after another, so their ratios are comparable.
"""

from __future__ import annotations

import statistics
import time

from consumer.dev.samples import LOCAL_SECRETS, redemption_payload
from consumer.dev.signing import mage_loyalty_headers, rivo_wire_headers
from consumer.pipeline import Pipeline
from consumer.records import Accepted, RawRecord
from consumer.schemas import SingleObjectCodec

ROUND = 2000
REPEATS = 7


def cases() -> list[tuple[str, Pipeline, RawRecord]]:
    unsigned = Pipeline()
    signed = Pipeline(secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()})
    mage, rivo_body = redemption_payload("mage_loyalty"), redemption_payload("rivo")
    mage_headers = mage_loyalty_headers(LOCAL_SECRETS["mage_loyalty"], mage, "points.redeemed")
    rivo_headers = rivo_wire_headers(LOCAL_SECRETS["rivo"], rivo_body, "points_redemption/created")
    ignored_headers = rivo_wire_headers(
        LOCAL_SECRETS["rivo"], rivo_body, "notification/reward_expiry_last_chance"
    )
    return [
        ("mage_loyalty accepted, no secret", unsigned, RawRecord(mage, topic="raw")),
        ("mage_loyalty accepted, signature verified", signed, RawRecord(mage, mage_headers)),
        ("rivo accepted, no secret", unsigned, RawRecord(rivo_body, topic="raw")),
        ("rivo accepted, signature verified", signed, RawRecord(rivo_body, rivo_headers)),
        ("rivo ignored (other event)", signed, RawRecord(rivo_body, ignored_headers)),
        ("rejected: invalid_json", unsigned, RawRecord(mage[:40])),
    ]


def microseconds_per_record(run, record: RawRecord) -> float:
    rounds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(ROUND):
            run(record)
        rounds.append((time.perf_counter() - started) / ROUND * 1e6)
    return statistics.median(rounds)


def main() -> None:
    codec = SingleObjectCodec()

    def process_and_encode(pipeline: Pipeline):
        def run(record: RawRecord) -> None:
            outcome = pipeline.process(record)
            if isinstance(outcome, Accepted):
                codec.encode(outcome.record)

        return run

    print(f"{'case':45} {'process µs':>11} {'+encode µs':>11}")
    baseline = None
    for name, pipeline, record in cases():
        process_only = microseconds_per_record(pipeline.process, record)
        with_encode = microseconds_per_record(process_and_encode(pipeline), record)
        baseline = baseline or with_encode
        print(f"{name:45} {process_only:11.1f} {with_encode:11.1f}   x{with_encode / baseline:.2f}")


if __name__ == "__main__":
    main()
