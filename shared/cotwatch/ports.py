"""The small interfaces the domain needs from the outside world. Adapters implement them for AWS
(``cotwatch.adapters.aws``) and in memory (``cotwatch.adapters.memory``, for unit tests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from cotwatch.alerts import Alert
from cotwatch.detection.models import TraceState


class AlertWrite(StrEnum):
    """What storing an alert did; ``needs_notify`` tells the caller whether subscribers must hear of it."""

    CREATED = "created"
    ESCALATED = "escalated"
    UNCHANGED = "unchanged"


class StoredAlert(BaseModel):
    model_config = ConfigDict(frozen=True)

    write: AlertWrite
    notified: bool

    @property
    def needs_notify(self) -> bool:
        # A previous attempt may have stored the alert and died before publishing it.
        return self.write != AlertWrite.UNCHANGED or not self.notified


class AlertStore(Protocol):
    def save(self, alert: Alert) -> StoredAlert:
        """Create the alert, or raise its severity if the new one is higher; never duplicate."""
        ...

    def mark_notified(self, alert: Alert) -> None: ...

    def get(self, alert_id: str) -> dict[str, Any] | None: ...


class AlertPublisher(Protocol):
    def publish(self, alert: Alert, event: AlertWrite) -> None: ...


class TraceStateStore(Protocol):
    def get_many(self, trace_keys: Iterable[str]) -> dict[str, TraceState]: ...

    def put(self, state: TraceState) -> None: ...


class CounterKey(BaseModel):
    """One counter cell: an hour bucket and a metric, sliced by tenant, model and category."""

    model_config = ConfigDict(frozen=True)

    hour: str  # UTC, "YYYY-MM-DDTHH"
    tenant: str
    model: str
    metric: str
    category: str = "-"

    @staticmethod
    def hour_of(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H")


class CounterStore(Protocol):
    def apply_once(self, marker: str, increments: Mapping[CounterKey, int]) -> bool:
        """Write the processed marker and all increments in one transaction; False if already applied."""
        ...

    def applied(self, marker: str) -> bool:
        """Whether ``apply_once`` already succeeded for ``marker`` (a strongly consistent read)."""
        ...


class DeadLetter(BaseModel):
    """A record we could not score, with the reason and where it came from."""

    model_config = ConfigDict(frozen=True)

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key_b64: str | None
    value_b64: str | None
    headers: list[tuple[str, str]]  # (name, base64 value), in the order sent; a name may repeat
    dead_lettered_at: datetime


class DeadLetterSink(Protocol):
    def write(self, letter: DeadLetter) -> str:
        """Store the letter (idempotently: same record, same location); return where it went."""
        ...
