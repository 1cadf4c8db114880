"""Where a writer's chunks go: the sink protocol, a delivery handle, and an in-memory sink.

A sink's ``send`` may block (back-pressure) and returns a :class:`Delivery` that settles once the chunk is
acknowledged or has failed. The Kafka sink lives in :mod:`cotwatch.producer.kafka_sink`.
"""

from __future__ import annotations

import threading
from typing import Protocol

from cotwatch.producer.errors import DeliveryFailedError
from cotwatch.trace import TraceChunk


class Delivery:
    """The fate of one chunk: pending, acknowledged, or failed with an error. Thread-safe."""

    __slots__ = ("_done", "_error", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._done = threading.Event()
        self._error: BaseException | None = None

    def succeed(self) -> None:
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def error(self) -> BaseException | None:
        """The failure, once settled; None while pending or after success."""
        return self._error if self._done.is_set() else None

    def wait(self, timeout_s: float) -> None:
        """Block until settled; raise :class:`DeliveryFailedError` on failure or when ``timeout_s`` passes."""
        if not self._done.wait(timeout_s):
            raise DeliveryFailedError(f"chunk seq={self.seq} not acknowledged within {timeout_s:.1f}s", undelivered=1)
        if self._error is not None:
            raise DeliveryFailedError(f"chunk seq={self.seq} was not delivered: {self._error!r}", undelivered=1) from (
                self._error
            )


class ChunkSink(Protocol):
    """Anything that takes chunks in order and reports their delivery."""

    def send(self, chunk: TraceChunk) -> Delivery:
        """Hand over one chunk; may block for back-pressure; raises a ``ProducerError`` if it cannot."""
        ...


class MemoryChunkSink:
    """Keeps chunks in a list, acknowledged at once: for tests, dry runs and in-process use."""

    def __init__(self) -> None:
        self.chunks: list[TraceChunk] = []
        self._lock = threading.Lock()

    def send(self, chunk: TraceChunk) -> Delivery:
        with self._lock:
            self.chunks.append(chunk)
        delivery = Delivery(chunk.seq)
        delivery.succeed()
        return delivery

    def trace(self, trace_id: str) -> list[TraceChunk]:
        """One trace's chunks, in the order they were sent."""
        with self._lock:
            return [c for c in self.chunks if c.trace_id == trace_id]
