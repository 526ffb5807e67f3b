"""Both processing guarantees under the faults production brings, judged by the ledger
(tests/integration/ledger.py) over a mixed stream with hostile records interleaved, on
a raw topic of 6 partitions. The same scenarios run at any size with `make chaos`.

Members are supervised as an orchestrator would (restarted after an exit or three failed
liveness probes); the broker scenarios take down the broker the scenario starts for
itself: twice for a few seconds, and once for a minute.

At-least-once: nothing lost; duplicates only where a member died or lost its partitions
without committing (they are counted and printed). Exactly-once: nothing lost and no
duplicates as a read_committed reader sees it, while a read_uncommitted reader does see
the aborted records of the killed members (so the check is not vacuous).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.config import AT_LEAST_ONCE, EXACTLY_ONCE
from tests.helpers import processes
from tests.integration import chaos
from tests.integration.conftest import CALL_FAILED

RECORDS = 1500
# The outage dwarfs the feed: a few hundred records are enough to have work pending on
# every partition when the broker goes, and to account for afterwards.
OUTAGE_RECORDS = 600
OUTAGE_SECONDS = 60
GUARANTEES = [AT_LEAST_ONCE, EXACTLY_ONCE]


def report(outcome: chaos.Outcome) -> None:
    print()
    chaos.print_table([outcome])
    # A member the orchestrator had to kill for failing its liveness probe was stuck for
    # longer than the liveness timeout without ending itself: a silent hang, which the
    # service's own watchdog exists to turn into a prompt exit (and an exit restart).
    assert outcome.restarts_after_probe == 0, (
        f"{outcome.restarts_after_probe} member(s) hung until the liveness probe killed "
        f"them; logs in {outcome.log_dir}"
    )


@pytest.fixture
def log_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Every member's and broker's log of the scenario, in a folder outside pytest's
    rotating temp dirs (which other runs on the machine clean up): kept, and named,
    when the test fails; removed when it passes."""
    path = Path(tempfile.mkdtemp(prefix="loyalty-chaos-test-"))
    yield path
    if request.node.stash.get(CALL_FAILED, True):
        print(f"\nchaos logs kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_member_killed_three_times_mid_stream(
    kafka_bootstrap_servers, guarantee, log_dir, capsys
):
    outcome = chaos.kill_member_repeatedly(
        kafka_bootstrap_servers, guarantee, RECORDS, faults=3, seed=11, log_dir=log_dir
    )
    with capsys.disabled():
        report(outcome)
    ledger = outcome.ledger
    assert ledger.records == RECORDS
    assert ledger.lost == []
    assert ledger.misrouted == []
    if guarantee == EXACTLY_ONCE:
        assert ledger.duplicated == {}
        # The killed members' open transactions were written, then aborted.
        assert outcome.uncommitted_view.extra_outputs > 0


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_members_joining_and_leaving_while_records_arrive(
    kafka_bootstrap_servers, guarantee, log_dir, capsys
):
    outcome = chaos.members_join_and_leave(
        kafka_bootstrap_servers, guarantee, RECORDS, faults=3, seed=12, log_dir=log_dir
    )
    with capsys.disabled():
        report(outcome)
    ledger = outcome.ledger
    assert ledger.lost == []
    assert ledger.misrouted == []
    # Every stop here is graceful, during rebalances: each member commits what it
    # delivered before giving its partitions up, so even at-least-once repeats nothing.
    assert ledger.duplicated == {}


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_the_broker_stopped_and_killed_mid_stream(guarantee, log_dir, capsys):
    outcome = chaos.broker_restarts(guarantee, RECORDS, faults=2, seed=13, log_dir=log_dir)
    with capsys.disabled():
        report(outcome)
    ledger = outcome.ledger
    assert ledger.records == RECORDS
    assert ledger.lost == []
    assert ledger.misrouted == []
    if guarantee == EXACTLY_ONCE:
        assert ledger.duplicated == {}


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_the_broker_down_for_a_minute_mid_stream(guarantee, log_dir, capsys):
    outcome = chaos.broker_outage(
        guarantee, OUTAGE_RECORDS, seed=14, log_dir=log_dir, outage_seconds=OUTAGE_SECONDS
    )
    with capsys.disabled():
        report(outcome)
    ledger = outcome.ledger
    assert ledger.records == OUTAGE_RECORDS
    assert ledger.lost == []
    assert ledger.misrouted == []
    if guarantee == EXACTLY_ONCE:
        assert ledger.duplicated == {}


def test_a_failed_scenario_leaves_no_member_running(kafka_bootstrap_servers, log_dir):
    class ScenarioFailed(Exception):
        pass

    run = chaos.Run(kafka_bootstrap_servers, AT_LEAST_ONCE, log_dir, "fails")
    with pytest.raises(ScenarioFailed), run:
        member = run.member("solo")
        member.start()
        process = member.process
        run.feed(100, seed=15, seconds=30)
        raise ScenarioFailed
    assert process.returncode == -signal.SIGKILL
    assert not run.feeder.is_alive()
    assert process.pid not in {info.pid for info in processes.descendants()}
