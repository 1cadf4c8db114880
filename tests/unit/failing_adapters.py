"""In-memory adapters that fail on purpose, the way their AWS counterparts fail: for failure injection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from botocore.exceptions import ClientError

from cotwatch.adapters.memory import MemoryCounterStore, MemoryPublisher, MemoryTraceStateStore
from cotwatch.alerts import Alert
from cotwatch.detection.models import TraceState
from cotwatch.patterns import EmbeddingSummary
from cotwatch.ports import AlertWrite, ChunkIdentity, CounterKey, DeadLetter


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)


class DownPublisher(MemoryPublisher):
    """SNS unreachable for the alerts of some traces; the others go out."""

    def __init__(self, down_for_traces: set[str]) -> None:
        super().__init__()
        self.down_for_traces = down_for_traces

    def publish(self, alert: Alert, event: AlertWrite) -> None:
        if alert.trace_id in self.down_for_traces:
            raise client_error("InternalError", "Publish")
        super().publish(alert, event)


class ThrottledCounterStore(MemoryCounterStore):
    """The counters table throttles the transactions of some records (retries exhausted)."""

    def __init__(self, throttled_markers: set[str]) -> None:
        super().__init__()
        self.throttled_markers = throttled_markers

    def apply_once(
        self,
        marker: str,
        increments: Mapping[CounterKey, int],
        identity: ChunkIdentity | None = None,
        embedding: EmbeddingSummary | None = None,
    ) -> bool:
        if marker in self.throttled_markers:
            raise client_error("ProvisionedThroughputExceededException", "TransactWriteItems")
        return super().apply_once(marker, increments, identity, embedding)


class FailingDeadLetterSink:
    """The dead-letter bucket refuses every write."""

    def write(self, letter: DeadLetter) -> str:
        raise client_error("AccessDenied", "PutObject")


class UnreadableTraceStateStore(MemoryTraceStateStore):
    """Trace state cannot be read at all: no chunk of the batch can be assessed."""

    def get_many(self, trace_keys: Iterable[str]) -> dict[str, TraceState]:
        raise client_error("ProvisionedThroughputExceededException", "BatchGetItem")
