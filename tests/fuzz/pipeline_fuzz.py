"""Coverage-guided fuzzing of Pipeline.process with atheris (libFuzzer for Python).

    make fuzz FUZZ_SECONDS=600
    .venv/bin/python -m tests.fuzz.pipeline_fuzz -max_total_time=60 .fuzz/corpus

The property: process() returns exactly one Outcome for ANY input and never raises,
and an Accepted record always encodes with the canonical schema (the service would
otherwise stop on it, and again on every restart). Four shapes of input, chosen by the
first byte:
  0: raw bytes as the value, no secret configured (parser, routing, schema, normalising);
  1: a seed payload with one value replaced by fuzzed JSON, signed (normalising, encoding);
  2: the seed's value with fuzzed headers, secrets configured (header and signature code);
  3: generated structure (tests/helpers/structures.py), the fuzzer choosing: nesting to
     10,000 levels, strings to 2 MB, digits of other scripts, hostile header values.
The catalogue of hostile input and the providers' documented payloads are the seeds.
A crash found here becomes a case in tests/unit/test_fuzz_regressions.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["consumer"]):
    from consumer.dev.samples import LOCAL_SECRETS
    from consumer.pipeline import Pipeline
    from consumer.records import Accepted, Ignored, RawRecord, Rejected
    from consumer.schemas import SingleObjectCodec, package_schemas

import orjson

from tests.helpers import hostile, payloads
from tests.helpers.structures import structural_case

UNSIGNED = Pipeline()
SIGNED = Pipeline(secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()})
CODEC = SingleObjectCodec(package_schemas().canonical())
SEEDS = {"rivo": payloads.rivo_seed, "mage_loyalty": payloads.mage_seed}
SIGNERS = {"rivo": hostile.rivo_signed, "mage_loyalty": hostile.mage_signed}


def check(pipeline: Pipeline, raw: RawRecord) -> None:
    outcome = pipeline.process(raw)
    assert isinstance(outcome, Accepted | Ignored | Rejected), outcome
    if isinstance(outcome, Accepted):
        CODEC.encode(outcome.record)


def fuzzed_json(data: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = data.ConsumeIntInRange(0, 8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return data.ConsumeBool()
    if kind == 2:
        return data.ConsumeInt(data.ConsumeIntInRange(1, 8))
    if kind == 3:
        return data.ConsumeRegularFloat()
    if kind in (4, 5):
        return data.ConsumeUnicodeNoSurrogates(data.ConsumeIntInRange(0, 40))
    if kind in (6, 7):
        return {
            data.ConsumeUnicodeNoSurrogates(8): fuzzed_json(data, depth + 1)
            for _ in range(data.ConsumeIntInRange(0, 3))
        }
    return [fuzzed_json(data, depth + 1) for _ in range(data.ConsumeIntInRange(0, 3))]


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    return found


class FuzzedChooser:
    """The structure generator's choices, made by the fuzzer's data."""

    def __init__(self, data: atheris.FuzzedDataProvider) -> None:
        self._data = data

    def below(self, n: int) -> int:
        return self._data.ConsumeIntInRange(0, n - 1)


# Large enough that a generated 2 MB string reaches the normalisers.
ROOMY = Pipeline(max_payload_bytes=4 * 1024 * 1024)


def test_one_input(raw_input: bytes) -> None:
    data = atheris.FuzzedDataProvider(raw_input)
    shape = data.ConsumeIntInRange(0, 3)
    if shape == 3:
        case = structural_case(FuzzedChooser(data))
        for pipeline in (SIGNED, ROOMY):
            check(pipeline, RawRecord(value=case.value, headers=case.headers, topic="f"))
        return
    if shape == 0:
        check(UNSIGNED, RawRecord(value=data.ConsumeBytes(data.remaining_bytes()), topic="f"))
        return
    provider = "rivo" if data.ConsumeBool() else "mage_loyalty"
    body = SEEDS[provider]()
    if shape == 1:
        for _ in range(data.ConsumeIntInRange(1, 3)):
            where = paths(body)
            *parents, last = where[data.ConsumeIntInRange(0, len(where) - 1)]
            target = body
            for key in parents:
                target = target[key]
            if data.ConsumeIntInRange(0, 5) == 0:
                del target[last]
            else:
                target[last] = fuzzed_json(data)
        value = orjson.dumps(body)
        check(UNSIGNED, RawRecord(value=value, topic="f"))
        check(SIGNED, RawRecord(value=value, headers=SIGNERS[provider](value), topic="f"))
        return
    value = orjson.dumps(body)
    headers = list(SIGNERS[provider](value))
    for _ in range(data.ConsumeIntInRange(0, 4)):
        name = data.ConsumeUnicodeNoSurrogates(data.ConsumeIntInRange(0, 30))
        if headers and data.ConsumeBool():
            name = headers[data.ConsumeIntInRange(0, len(headers) - 1)][0]
        header_value = data.ConsumeBytes(data.ConsumeIntInRange(0, 100))
        headers.insert(data.ConsumeIntInRange(0, len(headers)), (name, header_value))
    check(SIGNED, RawRecord(value=value, headers=headers, topic="f"))


def write_seeds(corpus: Path) -> None:
    """Shape-0 inputs for every catalogue case and seed payload: a leading 0 byte
    selects raw bytes (ConsumeIntInRange reads one byte for a range of 4)."""
    corpus.mkdir(parents=True, exist_ok=True)
    values = [case.value for case in hostile.catalogue() if case.value is not None]
    values += [payloads.rivo_seed_bytes(), payloads.mage_seed_bytes()]
    for number, value in enumerate(values):
        if len(value) <= 64 * 1024:  # libFuzzer's default -max_len would cut the rest
            (corpus / f"seed-{number:04d}").write_bytes(b"\x00" + value)


def main() -> None:
    corpus_dirs = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    for directory in corpus_dirs[:1]:
        write_seeds(Path(directory))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
