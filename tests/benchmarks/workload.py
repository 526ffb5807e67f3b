"""The benchmark's input: mixed raw webhooks, the same for every contender.

A repeating cycle of ten records: seven accepted redemptions (the three accepted
samples in turn), two ignored events, one rejection (the rejected samples in turn).
Every record carries the headers a provider sends, signed with the local secrets the
contenders are configured with, so signature checks run as in production.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from consumer.dev.samples import LOCAL_SECRETS, SampleWebhook, sample_webhooks

ACCEPTED_PER_CYCLE = 7
IGNORED_PER_CYCLE = 2
REJECTED_PER_CYCLE = 1
CYCLE = ACCEPTED_PER_CYCLE + IGNORED_PER_CYCLE + REJECTED_PER_CYCLE

SECRETS = LOCAL_SECRETS


@dataclass(frozen=True)
class Workload:
    records: list[SampleWebhook]

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.records if r.expected == "accepted")

    @property
    def ignored(self) -> int:
        return sum(1 for r in self.records if r.expected == "ignored")

    @property
    def rejected(self) -> int:
        return len(self.records) - self.accepted - self.ignored

    @property
    def pipeline_outputs(self) -> int:
        """Records the service writes: one clean or dead-letter record per input that is
        not ignored."""
        return self.accepted + self.rejected


def mixed_records(count: int) -> Workload:
    samples = sample_webhooks(SECRETS)
    accepted = itertools.cycle([s for s in samples if s.expected == "accepted"])
    ignored = itertools.cycle([s for s in samples if s.expected == "ignored"])
    rejected = itertools.cycle([s for s in samples if s.expected not in ("accepted", "ignored")])
    cycle = [accepted] * ACCEPTED_PER_CYCLE + [ignored] * IGNORED_PER_CYCLE
    cycle += [rejected] * REJECTED_PER_CYCLE
    source = itertools.cycle(cycle)
    return Workload([next(next(source)) for _ in range(count)])
