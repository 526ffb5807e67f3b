"""Inputs the fuzzer (tests/fuzz/pipeline_fuzz.py, `make fuzz`) found that made
Pipeline.process raise instead of returning an Outcome; each must now be a plain
rejection. A raise there stops the service, and again on every restart."""

from __future__ import annotations

import pytest

from consumer.dev.samples import LOCAL_SECRETS
from consumer.pipeline import Pipeline
from consumer.records import RawRecord, Rejected
from tests.helpers import hostile, payloads

PIPELINE = Pipeline()
SIGNED = Pipeline(secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()})


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        # str.strip() removes the ASCII separators \x1c-\x1f, int() does not: the count
        # passed the digit check stripped and was then converted unstripped.
        ("points_amount", "\x1e8", None),
        ("customer.points_tally", "\x1c12\x1f", None),
        # Other scripts' digits matched \d and int() read them.
        ("points_amount", "\u0663", "points_amount"),
    ],
)
def test_counts_found_by_the_fuzzer(path, value, field):
    body = hostile.dumps(payloads.set_path(payloads.rivo_seed(), path, value))
    outcome = SIGNED.process(RawRecord(value=body, headers=hostile.rivo_signed(body)))
    if field is None:
        assert not isinstance(outcome, Rejected), outcome
    else:
        assert isinstance(outcome, Rejected)
        assert (outcome.reason, outcome.field) == ("normalization_error", field)
