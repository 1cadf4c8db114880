"""Batching: accumulate records until the batch size, the invoke payload limit or the batching window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cotwatch.kafka_event import KafkaRecord
from cotwatch_local.poller.records import MAX_PAYLOAD_BYTES, TP, EventSizer


@dataclass(frozen=True)
class Batch:
    records: tuple[KafkaRecord, ...]
    size_bytes: int


@dataclass
class _Pending:
    record: KafkaRecord
    size: int


class BatchAccumulator:
    """Buffers consumed records and cuts batches the way the ESM does.

    A batch is ready when it holds ``batch_size`` records, when the buffer no longer fits the payload limit,
    or when ``batching_window_ms`` has passed since the first buffered record. Records keep their arrival
    order (per-partition order is what matters); stale records behind a seek are dropped.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        batching_window_ms: int,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        sizer: EventSizer | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.window_s = batching_window_ms / 1000
        self.max_payload_bytes = max_payload_bytes
        self.sizer = sizer or EventSizer()
        self._pending: list[_Pending] = []
        self._window_started: float | None = None
        self._next_offset: dict[TP, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def partitions(self) -> set[TP]:
        return {(p.record.topic, p.record.partition) for p in self._pending}

    def add(self, record: KafkaRecord, now: float) -> bool:
        """Buffer a record; False if it was a stale duplicate (behind the expected next offset)."""
        tp = (record.topic, record.partition)
        expected = self._next_offset.get(tp)
        if expected is not None and record.offset < expected:
            return False
        self._next_offset[tp] = record.offset + 1
        self._pending.append(_Pending(record, self.sizer.record_size(record)))
        if self._window_started is None:
            self._window_started = now
        return True

    def time_left_s(self, now: float) -> float:
        if self._window_started is None:
            return self.window_s
        return max(0.0, self._window_started + self.window_s - now)

    def ready(self, now: float) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.batch_size or self.time_left_s(now) <= 0:
            return True
        return self._cut() < len(self._pending)  # the buffer already overflows one invoke payload

    def take(self, now: float) -> Batch:
        """Remove and return the next batch (at least one record, even one that alone is too big)."""
        count = max(1, self._cut())
        taken, self._pending = self._pending[:count], self._pending[count:]
        # Leftovers start a new window now; if they already fill a batch, ready() says so immediately.
        self._window_started = now if self._pending else None
        records = tuple(p.record for p in taken)
        return Batch(records=records, size_bytes=self._size_of(taken))

    def discard(self, tp: TP, next_offset: int | None = None) -> int:
        """Drop buffered records of a partition (after a seek or a revocation); returns how many."""
        before = len(self._pending)
        self._pending = [p for p in self._pending if (p.record.topic, p.record.partition) != tp]
        if next_offset is None:
            self._next_offset.pop(tp, None)
        else:
            self._next_offset[tp] = next_offset
        if not self._pending:
            self._window_started = None
        return before - len(self._pending)

    def _size_of(self, items: Sequence[_Pending]) -> int:
        size = self.sizer.envelope
        counts: dict[TP, int] = {}
        for item in items:
            tp = (item.record.topic, item.record.partition)
            if tp not in counts:
                size += self.sizer.group_overhead(*tp) + (1 if counts else 0)
                counts[tp] = 0
            size += item.size + (1 if counts[tp] else 0)
            counts[tp] += 1
        return size

    def _cut(self) -> int:
        """How many leading buffered records fit one batch (count and payload limits)."""
        size = self.sizer.envelope
        counts: dict[TP, int] = {}
        for index, item in enumerate(self._pending[: self.batch_size]):
            tp = (item.record.topic, item.record.partition)
            extra = item.size + (1 if counts.get(tp) else 0)
            if tp not in counts:
                extra += self.sizer.group_overhead(*tp) + (1 if counts else 0)
            if size + extra > self.max_payload_bytes:
                return index
            size += extra
            counts[tp] = counts.get(tp, 0) + 1
        return min(len(self._pending), self.batch_size)
