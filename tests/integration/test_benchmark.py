"""The benchmark (`make bench`) counts right: every contender it runs here writes
exactly the expected number of outputs, and the report says so. Its speed figures are
printed, never asserted. (Quix Streams, contender C, lives in the separate `bench`
environment and is exercised by `make bench` itself.)"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from tests.benchmarks.workload import CYCLE, mixed_records
from tests.helpers import processes

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORDS = 2 * CYCLE * 10


def test_every_contender_writes_the_expected_outputs(kafka_bootstrap_servers, tmp_path):
    completed = processes.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.end_to_end",
            "--records",
            str(RECORDS),
            "--rounds",
            "1",
            "--only",
            "A,B,B',E,M,D",
            "--bootstrap-servers",
            kafka_bootstrap_servers,
            "--results-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = orjson.loads((tmp_path / "latest.json").read_bytes())
    assert report["failures"] == []
    assert report["summary"]["skipped"] == {}
    workload = mixed_records(RECORDS)
    runs = {run["contender"]: run for run in report["runs"]}
    assert set(runs) == {"A", "B", "B'", "E", "M", "D"}
    assert runs["A"]["outputs"] == RECORDS
    for key in ("B", "B'", "E", "M"):
        assert runs[key]["outputs"] == workload.pipeline_outputs == runs[key]["expected_outputs"]
    assert runs["E"]["processes"] == 2
    assert "| B' | service, exactly-once |" in completed.stdout
    # Every Kafka contender and the pipeline alone report CPU per record and peak memory.
    for key in ("A", "B", "B'", "E", "M", "D"):
        assert runs[key]["cpu_seconds"] > 0
        assert runs[key]["peak_rss_mb"] > 0
    assert "M's prefetch limits: KAFKA_CONSUMER_QUEUED_MAX_MESSAGES_KBYTES=" in completed.stdout


def test_the_mix_is_seven_accepted_two_ignored_one_rejected_in_ten():
    workload = mixed_records(1000)
    assert (workload.accepted, workload.ignored, workload.rejected) == (700, 200, 100)
