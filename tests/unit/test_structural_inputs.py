"""Generated structural input (tests/helpers/structures.py) through Pipeline.process: a
bounded number of seeded cases of deep nesting (to 10,000 levels), strings (to 2 MB),
numbers in other scripts and hostile header values. Whatever the case, process()
returns one Outcome and never raises, and an accepted record is small: free text is
bounded, so no input can make a clean record too large for its topic."""

from __future__ import annotations

import pytest

from consumer.dev.samples import LOCAL_SECRETS
from consumer.pipeline import MAX_NESTING_DEPTH, Pipeline, nesting_depth_exceeds
from consumer.records import Accepted, Ignored, RawRecord, Rejected
from consumer.schemas import SingleObjectCodec
from tests.helpers.structures import (
    DEPTHS,
    STRING_LENGTHS,
    RandomChooser,
    nested,
    structural_case,
)

CASES = 300
SIGNED = Pipeline(secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()})
# A payload limit above the largest generated string, so 2 MB strings reach the
# normalisers rather than stopping at the size check.
ROOMY = Pipeline(max_payload_bytes=4 * 1024 * 1024)
CODEC = SingleObjectCodec()
# Every free-text field at its bound, in the worst case of 4 UTF-8 bytes a character,
# is well under this; the clean topic's limit is about 1 MB.
MAX_CLEAN_RECORD_BYTES = 32 * 1024


@pytest.mark.parametrize("seed", range(CASES))
def test_a_generated_structure_gets_an_outcome(seed):
    case = structural_case(RandomChooser(seed))
    for pipeline in (SIGNED, ROOMY):
        outcome = pipeline.process(RawRecord(value=case.value, headers=case.headers, topic="t"))
        assert isinstance(outcome, Accepted | Ignored | Rejected), case.name
        if isinstance(outcome, Accepted):
            assert len(CODEC.encode(outcome.record)) < MAX_CLEAN_RECORD_BYTES, case.name
        if isinstance(outcome, Rejected):
            assert outcome.message and len(outcome.message) < 300, case.name


def test_the_generator_reaches_every_class_and_the_extremes():
    names = [structural_case(RandomChooser(seed)).name for seed in range(CASES)]
    assert any(f"{max(DEPTHS)}-deep" in name for name in names)
    assert any(f"{max(STRING_LENGTHS)}-character" in name for name in names)
    assert any("hostile headers" in name for name in names)
    assert any("'\\u0661" in name or "\u0661" in name for name in names)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", [0, 1, 2])
def test_the_nesting_check_agrees_with_the_depth(depth, shape):
    value = b'{"x":' + nested(depth, shape) + b"}"
    assert nesting_depth_exceeds(value) == (depth + 1 > MAX_NESTING_DEPTH)


@pytest.mark.parametrize(
    ("value", "exceeds"),
    [
        (b'{"a":"' + b"[" * 10_000 + b'"}', False),  # brackets in a string are text
        (b'{"a":"\\"' + b"[" * 100 + b'"}', False),  # after an escaped quote, still text
        (b'{"a":"\\\\"' + b',"b":' + b"[" * 100 + b"]" * 100 + b"}", True),
        (b"[" * 65, True),  # unterminated: refused either way
        (b"[]" * 10_000, False),  # many brackets, shallow
    ],
)
def test_the_nesting_check_reads_strings_as_text(value, exceeds):
    assert nesting_depth_exceeds(value) is exceeds


def test_deep_nesting_is_refused_as_invalid_json_naming_the_limit():
    value = b'{"event":"points.redeemed","data":' + nested(10_000, 2) + b"}"
    outcome = SIGNED.process(RawRecord(value=value))
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "invalid_json"
    assert f"deeper than {MAX_NESTING_DEPTH} levels" in outcome.message
