"""A small fault-injection run: the whole of ``make chaos`` (private broker and moto server, poller
SIGKILLed three times mid-batch, broker restarted, 5% of AWS calls failing, poison and duplicate records)
with a few hundred chunks instead of 10,000."""

from __future__ import annotations

import pytest

from cotwatch_local.chaos import run_chaos

pytestmark = [pytest.mark.e2e]


def test_small_chaos_run_loses_nothing_and_counts_nothing_twice() -> None:
    # Given 300 records (1% poison of every kind, 1% producer duplicates) and every fault of make chaos
    # When they are drained through the local stack and compared with a fault-free run of the same input
    outcome = run_chaos(300, batch_size=20)
    # Then every record has exactly one outcome and the effects are those of the fault-free run
    assert outcome.scored + outcome.dead_lettered + outcome.deduplicated == outcome.n == 300
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert (outcome.mismatched_alerts, outcome.mismatched_counters) == (0, 0)
    assert outcome.dead_lettered > 0 and outcome.deduplicated > 0
