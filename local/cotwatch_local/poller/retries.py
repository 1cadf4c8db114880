"""Retries: how often a failing position has been tried, and records past their maximum age."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cotwatch.kafka_event import KafkaRecord
from cotwatch_local.poller.records import TP, group_by_partition
from cotwatch_local.poller.responses import BatchVerdict


@dataclass(frozen=True)
class PartitionAction:
    """What to do with one partition after an invocation."""

    topic: str
    partition: int
    commit_offset: int  # the next offset to consume, as Kafka commits it
    seek_offset: int | None = None  # set when the partition must be redelivered from here
    dead_letter: tuple[KafkaRecord, ...] = ()
    attempt: int = 0  # failed invocations so far at this position (0 = the partition succeeded)
    exhausted: bool = False

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


@dataclass
class _Position:
    offset: int
    attempts: int


class RetryTracker:
    """Counts failed attempts per partition position and decides commit / seek / dead-letter.

    ``maximum_retry_attempts`` counts retries after the first attempt (Lambda's meaning); -1 is unlimited.
    """

    def __init__(self, maximum_retry_attempts: int) -> None:
        if maximum_retry_attempts < -1:
            raise ValueError("maximum_retry_attempts must be -1 (unlimited) or >= 0")
        self.maximum_retry_attempts = maximum_retry_attempts
        self._positions: dict[TP, _Position] = {}

    def attempts(self, tp: TP) -> int:
        pos = self._positions.get(tp)
        return pos.attempts if pos else 0

    def forget(self, tp: TP) -> None:
        self._positions.pop(tp, None)

    def settle(self, records: Sequence[KafkaRecord], verdict: BatchVerdict) -> list[PartitionAction]:
        actions: list[PartitionAction] = []
        for tp, recs in group_by_partition(records).items():
            first, last = recs[0].offset, recs[-1].offset
            if verdict.outcome == "failure":
                failed = frozenset(r.offset for r in recs)
            else:
                failed = verdict.failed.get(tp, frozenset())
            if not failed:
                self._positions.pop(tp, None)
                actions.append(PartitionAction(*tp, commit_offset=last + 1))
                continue
            lowest = min(failed)
            previous = self._positions.get(tp)
            # Same position: nothing before the lowest failure was delivered in between (tolerates offset
            # gaps from compaction or transaction markers between the seek target and the first record).
            same = previous is not None and previous.offset <= lowest and first == lowest
            attempt = previous.attempts + 1 if same and previous else 1
            if self.maximum_retry_attempts >= 0 and attempt - 1 >= self.maximum_retry_attempts:
                self._positions.pop(tp, None)
                dead = tuple(r for r in recs if r.offset in failed)
                actions.append(
                    PartitionAction(*tp, commit_offset=last + 1, dead_letter=dead, attempt=attempt, exhausted=True)
                )
            else:
                self._positions[tp] = _Position(offset=lowest, attempts=attempt)
                actions.append(PartitionAction(*tp, commit_offset=lowest, seek_offset=lowest, attempt=attempt))
        return actions


def leading_expired(records: Sequence[KafkaRecord], max_age_s: int, now_ms: int) -> dict[TP, list[KafkaRecord]]:
    """Per partition, the run of records at the front of the batch older than ``max_age_s`` (-1: none)."""
    if max_age_s < 0:
        return {}
    cutoff = now_ms - max_age_s * 1000

    def old(record: KafkaRecord) -> bool:
        return record.timestamp_ms is not None and record.timestamp_ms < cutoff

    runs = {tp: list(itertools.takewhile(old, recs)) for tp, recs in group_by_partition(records).items()}
    return {tp: run for tp, run in runs.items() if run}
