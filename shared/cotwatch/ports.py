"""The small interfaces the domain needs from the outside world. Adapters implement them for AWS
(``cotwatch.adapters.aws``) and in memory (``cotwatch.adapters.memory``, for unit tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, model_validator

from cotwatch.alerts import Alert, Verdict
from cotwatch.detection.models import TraceState
from cotwatch.patterns import ChunkPatterns, EmbeddingSummary
from cotwatch.redaction import redact_dead_letter_fields


class AlertWrite(StrEnum):
    """What storing an alert did; ``needs_notify`` tells the caller whether subscribers must hear of it."""

    CREATED = "created"
    ESCALATED = "escalated"
    REOPENED = "reopened"  # it was resolved and a later chunk rose above it
    UPDATED = "updated"  # score and evidence rose, severity did not: no notification
    UNCHANGED = "unchanged"


class StoredAlert(BaseModel):
    model_config = ConfigDict(frozen=True)

    write: AlertWrite
    notified: bool
    # The event subscribers are owed: this write's, or the one a previous attempt stored and never published.
    event: AlertWrite = AlertWrite.CREATED

    @property
    def needs_notify(self) -> bool:
        # A previous attempt may have stored the alert and died before publishing it.
        return not self.notified


class AlertStore(Protocol):
    def save(self, alert: Alert) -> StoredAlert:
        """Create the alert, or raise its score, evidence and severity if the new finding is higher
        (reopening it if it was resolved); never duplicate."""
        ...

    def mark_notified(self, alert: Alert) -> None: ...

    def get(self, alert_id: str) -> dict[str, Any] | None: ...

    def acknowledge(self, alert_id: str, who: str, note: str | None = None) -> dict[str, Any]:
        """open -> acknowledged, audited; raises ``AlertNotFoundError`` or ``InvalidTransitionError``."""
        ...

    def resolve(self, alert_id: str, verdict: Verdict, who: str, note: str | None = None) -> dict[str, Any]:
        """open or acknowledged -> resolved with a verdict, audited."""
        ...


class AlertPublisher(Protocol):
    def publish(self, alert: Alert, event: AlertWrite) -> None: ...


class Digest(BaseModel):
    """The alerts a cooldown window held back from subscribers: one message instead of a storm."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    model: str
    category: str
    severity: int  # the highest severity among them
    count: int
    alert_ids: tuple[str, ...]
    window_start: datetime
    window_seconds: int


class DigestPublisher(AlertPublisher, Protocol):
    def publish_digest(self, digest: Digest) -> None: ...


class CooldownDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    notify: bool
    suppressed: int = 0  # alerts held back in the current window (when not notifying)
    digest: Digest | None = None  # the previous window's held-back alerts, to send before this one


class CooldownStore(Protocol):
    def admit(self, alert: Alert, now: datetime, window_seconds: int) -> CooldownDecision:
        """Whether ``alert`` opens a new window of its (tenant, model, category) and is notified, or is
        held back and counted; idempotent per alert id (a set, not a counter)."""
        ...


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


class ChunkIdentity(BaseModel):
    """A chunk's identity ((tenant, trace_id, seq) as ``key``) and what first claimed it: a content hash and
    the claiming record (``fingerprint``), so a producer retry at a new offset is recognised as a duplicate."""

    model_config = ConfigDict(frozen=True)

    key: str
    fingerprint: str


class CounterStore(Protocol):
    def apply_once(
        self,
        marker: str,
        increments: Mapping[CounterKey, int],
        identity: ChunkIdentity | None = None,
        embedding: EmbeddingSummary | None = None,
    ) -> bool:
        """Write the processed marker, the chunk identity (if given), all increments and the chunk's embedding
        summary (added to its (tenant, model, hour) summary) in one transaction; False (and nothing written) if
        the marker or the identity is already there."""
        ...

    def identities(self, keys: Iterable[str]) -> dict[str, str]:
        """The fingerprints stored for those chunk identity keys that are claimed (strongly consistent)."""
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
    # Of the value as it arrived: the stored value_b64, key_b64, headers and detail are redacted (and cut to
    # cotwatch.redaction.DEAD_LETTER_BYTES_LIMIT) when the letter is built, so no sink can store raw secrets.
    value_sha256: str | None = None
    value_bytes: int | None = None
    # No-raw-text tenants: key, value, header values and detail are not kept, only digests and coordinates.
    raw_text_withheld: bool = False
    key_sha256: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _redacted(cls, data: Any) -> Any:
        return redact_dead_letter_fields(data) if isinstance(data, dict) else data

    @classmethod
    def withholding_raw_text(
        cls,
        *,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        key: bytes | None,
        value: bytes | None,
        header_names: list[str],
        dead_lettered_at: datetime,
    ) -> DeadLetter:
        """A letter for a record that may be a no-raw-text tenant's: hashes, sizes and coordinates only (the
        detail too can quote the payload, so only the reason is kept)."""
        return cls(
            reason=reason,
            detail=f"{reason}; detail withheld (no-raw-text tenant)",
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key_b64=None,
            value_b64=None,
            headers=[(name, "") for name in header_names],
            dead_lettered_at=dead_lettered_at,
            value_sha256=None if value is None else "sha256:" + hashlib.sha256(value).hexdigest(),
            value_bytes=None if value is None else len(value),
            raw_text_withheld=True,
            key_sha256=None if key is None else "sha256:" + hashlib.sha256(key).hexdigest(),
        )


class PatternSink(Protocol):
    def write(self, patterns: ChunkPatterns) -> str:
        """Store a chunk's suspicious windows (idempotently: same effect id, same location); return where."""
        ...


class DeadLetterSink(Protocol):
    def write(self, letter: DeadLetter) -> str:
        """Store the letter (idempotently: same record, same location); return where it went."""
        ...
