"""The hostile-input catalogue (tests/helpers/hostile.py) through the pipeline alone:
every case gets its documented outcome and field, and nothing raises. The same cases
go through the running service in tests/integration/test_hostile_input.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.dev.samples import LOCAL_SECRETS
from consumer.pipeline import Pipeline
from consumer.records import Accepted, Ignored, RawRecord, Rejected
from tests.helpers.hostile import ACCEPTED, IGNORED, catalogue, readme_table

CASES = catalogue()
PIPELINE = Pipeline(secrets={name: (secret,) for name, secret in LOCAL_SECRETS.items()})


def test_the_catalogue_covers_at_least_40_classes():
    assert len({case.row or case.name for case in CASES}) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_hostile_case_gets_its_documented_outcome(case):
    outcome = PIPELINE.process(RawRecord(value=case.value, headers=case.headers, topic="raw"))
    if case.expected == ACCEPTED:
        assert isinstance(outcome, Accepted), outcome
    elif case.expected == IGNORED:
        assert isinstance(outcome, Ignored), outcome
    else:
        assert isinstance(outcome, Rejected), outcome
        assert (outcome.reason, outcome.field) == (case.expected, case.field)


def test_the_docs_document_the_catalogue_as_it_is():
    docs = (Path(__file__).parents[2] / "docs" / "hostile-input.md").read_text()
    # To regenerate: python -c 'from tests.helpers.hostile import *; print(readme_table())'
    assert readme_table(CASES) in docs
