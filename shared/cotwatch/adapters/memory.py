"""In-memory adapters: the same contracts as the AWS ones, for unit tests and dry runs."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cotwatch.alerts import Alert, AlertStatus, Verdict, new_alert_item, plan_triage, plan_update
from cotwatch.cooldown import DueWindow, digest_for, digest_of
from cotwatch.detection.models import TraceState
from cotwatch.patterns import ChunkPatterns, EmbeddingSummary, combine
from cotwatch.ports import AlertWrite, ChunkIdentity, CooldownDecision, CounterKey, DeadLetter, Digest, StoredAlert
from cotwatch.tracking import last_verdict, triage_increments


class MemoryAlertStore:
    def __init__(
        self, clock: Callable[[], datetime] = lambda: datetime.now(UTC), counters: MemoryCounterStore | None = None
    ) -> None:
        """``counters``: where resolutions count their verdicts, as ``DynamoAlertStore(counters_table=...)``."""
        self.items: dict[str, dict[str, Any]] = {}
        self._clock = clock
        self._counters = counters

    def save(self, alert: Alert) -> StoredAlert:
        current = self.items.get(alert.alert_id)
        if current is None:
            self.items[alert.alert_id] = new_alert_item(alert, self._clock())
            return StoredAlert(write=AlertWrite.CREATED, notified=False, event=AlertWrite.CREATED)
        plan = plan_update(current, alert, self._clock())
        if plan is None:
            return _unchanged(current)
        current.update(copy.deepcopy(plan.updates))
        current["version"] = int(current.get("version", 0)) + 1
        if plan.audit is not None:
            current["audit"] = [*current.get("audit", []), plan.audit.model_dump(mode="json")]
        if plan.event is None:
            return StoredAlert(
                write=AlertWrite.UPDATED,
                notified=bool(current["notified"]),
                event=AlertWrite(current.get("pending_event", "created")),
            )
        return StoredAlert(write=AlertWrite(plan.event.value), notified=False, event=AlertWrite(plan.event.value))

    def mark_notified(self, alert: Alert) -> None:
        self.items[alert.alert_id]["notified"] = True

    def get(self, alert_id: str) -> dict[str, Any] | None:
        item = self.items.get(alert_id)
        return copy.deepcopy(item) if item is not None else None

    def acknowledge(self, alert_id: str, who: str, note: str | None = None) -> dict[str, Any]:
        return self._triage(alert_id, AlertStatus.ACKNOWLEDGED, who, None, note)

    def resolve(self, alert_id: str, verdict: Verdict, who: str, note: str | None = None) -> dict[str, Any]:
        return self._triage(alert_id, AlertStatus.RESOLVED, who, verdict, note)

    def _triage(
        self, alert_id: str, to: AlertStatus, who: str, verdict: Verdict | None, note: str | None
    ) -> dict[str, Any]:
        current = self.items.get(alert_id)
        updates, entry = plan_triage(current, alert_id, to, who, self._clock(), verdict, note)
        assert current is not None  # plan_triage raised otherwise
        if self._counters is not None and entry.verdict is not None:
            self._counters.counts.update(
                triage_increments(current, entry.verdict.value, entry.at, last_verdict(current))
            )
        current.update(updates)
        current["version"] = int(current.get("version", 0)) + 1
        current["audit"] = [*current.get("audit", []), entry.model_dump(mode="json")]
        return copy.deepcopy(current)


def _unchanged(current: dict[str, Any]) -> StoredAlert:
    return StoredAlert(
        write=AlertWrite.UNCHANGED,
        notified=bool(current.get("notified", False)),
        event=AlertWrite(current.get("pending_event", "created")),
    )


class MemoryPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[Alert, AlertWrite]] = []
        self.digests: list[Digest] = []

    def publish(self, alert: Alert, event: AlertWrite) -> None:
        self.published.append((alert, event))

    def publish_digest(self, digest: Digest) -> None:
        self.digests.append(digest)


class MemoryCooldownStore:
    """As ``DynamoCooldownStore``: a window per (tenant, model, category), members keyed by alert id."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def admit(self, alert: Alert, now: datetime, window_seconds: int) -> CooldownDecision:
        key = (alert.tenant, alert.model, alert.category)
        window = self.windows.get(key)
        if window is None or window["start"] < now.timestamp() - window_seconds:
            self.windows[key] = {"start": now.timestamp(), "opener": alert.alert_id, "members": {}}
            return CooldownDecision(notify=True, digest=digest_of(alert, window, window_seconds))
        if window["opener"] == alert.alert_id:
            return CooldownDecision(notify=True)
        members: dict[str, int] = window["members"]
        members[alert.alert_id] = max(members.get(alert.alert_id, 0), alert.severity)
        return CooldownDecision(notify=False, suppressed=len(members))

    def due(self, now: datetime, window_seconds: int) -> list[DueWindow]:
        found = []
        for (tenant, model, category), window in self.windows.items():
            digest = digest_for(tenant, model, category, window, window_seconds)
            if window["start"] < now.timestamp() - window_seconds and digest is not None:
                found.append(DueWindow(digest=digest, token=((tenant, model, category), window["start"])))
        return found

    def settle(self, window: DueWindow) -> bool:
        key, start = window.token
        current = self.windows.get(key)
        if current is None or current["start"] != start or not current["members"]:
            return False
        current["members"] = {}
        return True


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
        self.identity_claims: dict[str, str] = {}
        self.counts: Counter[CounterKey] = Counter()
        self.embeddings: dict[tuple[str, str, str], EmbeddingSummary] = {}  # (hour, tenant, model)

    def apply_once(
        self,
        marker: str,
        increments: Mapping[CounterKey, int],
        identity: ChunkIdentity | None = None,
        embedding: EmbeddingSummary | None = None,
    ) -> bool:
        if marker in self.markers or (identity is not None and identity.key in self.identity_claims):
            return False
        self.markers.add(marker)
        if identity is not None:
            self.identity_claims[identity.key] = identity.fingerprint
        self.counts.update(increments)
        if embedding is not None:
            key = (embedding.hour, embedding.tenant, embedding.model)
            old = self.embeddings.get(key)
            self.embeddings[key] = embedding if old is None else (combine([old, embedding], key[0], key[1]) or old)
        return True

    def hour(self, hour: str) -> list[dict[str, Any]]:
        """As ``DynamoCounterStore.hour``: the hour's cells as roll-up rows."""
        return [{**k.model_dump(), "count": n} for k, n in self.counts.items() if k.hour == hour]

    def embedding_hour(self, hour: str) -> list[EmbeddingSummary]:
        return [s for (h, _, _), s in sorted(self.embeddings.items()) if h == hour]

    def identities(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.identity_claims[k] for k in keys if k in self.identity_claims}

    def applied(self, marker: str) -> bool:
        return marker in self.markers


class MemoryPatternSink:
    def __init__(self) -> None:
        self.chunks: dict[str, ChunkPatterns] = {}

    def write(self, patterns: ChunkPatterns) -> str:
        self.chunks[patterns.effect_id] = patterns  # rewritten whole on redelivery, as the S3 object is
        return f"memory://patterns/{patterns.effect_id}"


class MemoryDeadLetterSink:
    def __init__(self) -> None:
        self.letters: dict[str, DeadLetter] = {}

    def write(self, letter: DeadLetter) -> str:
        location = f"memory://{letter.topic}/{letter.partition}/{letter.offset}"
        self.letters[location] = letter
        return location
