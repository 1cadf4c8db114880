"""In-memory adapters: the same contracts as the AWS ones, for unit tests and dry runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from cotwatch.alerts import Alert
from cotwatch.detection.models import TraceState
from cotwatch.ports import AlertWrite, CounterKey, DeadLetter, StoredAlert


class MemoryAlertStore:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def save(self, alert: Alert) -> StoredAlert:
        current = self.items.get(alert.alert_id)
        if current is None:
            self.items[alert.alert_id] = {**alert.model_dump(mode="json"), "notified": False}
            return StoredAlert(write=AlertWrite.CREATED, notified=False)
        if alert.severity > current["severity"]:
            current.update({**alert.model_dump(mode="json"), "created_at": current["created_at"], "notified": False})
            return StoredAlert(write=AlertWrite.ESCALATED, notified=False)
        return StoredAlert(write=AlertWrite.UNCHANGED, notified=bool(current["notified"]))

    def mark_notified(self, alert: Alert) -> None:
        self.items[alert.alert_id]["notified"] = True

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self.items.get(alert_id)


class MemoryPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[Alert, AlertWrite]] = []

    def publish(self, alert: Alert, event: AlertWrite) -> None:
        self.published.append((alert, event))


class MemoryTraceStateStore:
    def __init__(self) -> None:
        self.states: dict[str, TraceState] = {}

    def get_many(self, trace_keys: Iterable[str]) -> dict[str, TraceState]:
        return {k: self.states[k] for k in trace_keys if k in self.states}

    def put(self, state: TraceState) -> None:
        current = self.states.get(state.trace_key)
        # As the DynamoDB condition: a redelivered older chunk must not roll the state back.
        if current is None or current.last_seq <= state.last_seq:
            self.states[state.trace_key] = state


class MemoryCounterStore:
    def __init__(self) -> None:
        self.markers: set[str] = set()
        self.counts: Counter[CounterKey] = Counter()

    def apply_once(self, marker: str, increments: Mapping[CounterKey, int]) -> bool:
        if marker in self.markers:
            return False
        self.markers.add(marker)
        self.counts.update(increments)
        return True

    def applied(self, marker: str) -> bool:
        return marker in self.markers


class MemoryDeadLetterSink:
    def __init__(self) -> None:
        self.letters: dict[str, DeadLetter] = {}

    def write(self, letter: DeadLetter) -> str:
        location = f"memory://{letter.topic}/{letter.partition}/{letter.offset}"
        self.letters[location] = letter
        return location
