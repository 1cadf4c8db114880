"""Alerts: one per (tenant, trace, category), with a deterministic id so redelivery cannot duplicate it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cotwatch.detection.models import CategoryFinding, ChunkAssessment, Disposition, Evidence
from cotwatch.trace import TraceChunk

ALERT_SCHEMA_VERSION = 1


def alert_id(tenant: str, trace_id: str, category: str) -> str:
    """Stable across retries and redeliveries: the conditional write on it is what makes alerts exactly-once."""
    return hashlib.sha256(f"{tenant}\x1f{trace_id}\x1f{category}".encode()).hexdigest()[:32]


class Alert(BaseModel):
    """What is stored in DynamoDB and published to SNS when a category fires on a trace."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = ALERT_SCHEMA_VERSION
    alert_id: str
    tenant: str
    trace_id: str
    conversation_id: str | None = None
    model: str
    category: str
    severity: int = Field(ge=1, le=4)
    score: float
    threshold: float
    disposition: Disposition
    chunk_seq: int
    evidence: tuple[Evidence, ...]
    scorer_version: str
    calibration_version: str
    created_at: datetime
    source: str = Field(description="Kafka coordinates of the record that raised it: topic-partition@offset.")

    @classmethod
    def from_finding(
        cls, chunk: TraceChunk, assessment: ChunkAssessment, finding: CategoryFinding, source: str
    ) -> Alert:
        return cls(
            alert_id=alert_id(chunk.tenant, chunk.trace_id, finding.category),
            tenant=chunk.tenant,
            trace_id=chunk.trace_id,
            conversation_id=chunk.conversation_id,
            model=chunk.model,
            category=finding.category,
            severity=finding.severity,
            score=finding.score,
            threshold=finding.threshold,
            disposition=assessment.disposition,
            chunk_seq=chunk.seq,
            evidence=finding.evidence,
            scorer_version=assessment.scorer_version,
            calibration_version=assessment.calibration_version,
            created_at=datetime.now(UTC),
            source=source,
        )

    def message_attributes(self) -> dict[str, str | int]:
        """The fields SNS subscribers filter on."""
        return {"category": self.category, "severity": self.severity, "tenant": self.tenant, "model": self.model}


# ------------------------------------------------------------------------------------------ lifecycle


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Verdict(StrEnum):
    """What the on-call engineer concluded; it is what tracking and calibration learn from."""

    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"
    BENIGN_REFUSAL = "benign_refusal"
    NEEDS_POLICY = "needs_policy"


class AlertEvent(StrEnum):
    """What happened to an alert; the ``event`` message attribute subscribers filter on."""

    CREATED = "created"
    ESCALATED = "escalated"
    REOPENED = "reopened"
    DIGEST = "digest"


SYSTEM_ACTOR = "cotwatch"

# The transitions a person may make; reopening is the scorer's (a resolved alert that rises again).
TRIAGE_FROM: dict[AlertStatus, frozenset[AlertStatus]] = {
    AlertStatus.ACKNOWLEDGED: frozenset({AlertStatus.OPEN}),
    AlertStatus.RESOLVED: frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}),
}


class AuditEntry(BaseModel):
    """One change of an alert: who made it, when, and why; kept in the alert's own row."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    who: str = Field(min_length=1, max_length=256)
    action: str  # created | escalated | reopened | acknowledged | resolved
    status: AlertStatus  # the status after the change
    verdict: Verdict | None = None
    note: str | None = Field(default=None, max_length=2000)


class TriageError(Exception):
    """A triage request the alert's state does not allow."""


class AlertNotFoundError(TriageError):
    pass


class InvalidTransitionError(TriageError):
    pass


def rises_above(current: Mapping[str, Any], alert: Alert) -> bool:
    """Whether a new finding is worse than what is stored: redelivery of the same chunk never is."""
    return alert.score > float(current["score"]) or alert.severity > int(current["severity"])


def finding_fields(alert: Alert) -> dict[str, Any]:
    """What a later, higher finding replaces in the stored alert (identity and creation time stay)."""
    dumped = alert.model_dump(mode="json")
    return {k: dumped[k] for k in ("score", "threshold", "disposition", "chunk_seq", "evidence", "source")} | {
        "scorer_version": alert.scorer_version,
        "calibration_version": alert.calibration_version,
    }


# The alerts table's per-tenant indexes (template.yaml) are keyed on "tenant#value" attributes, so a tenant's
# alerts of one status, category or model are one Query on their own partition, not a filtered read.
INDEX_KEYS = {"tenant_status": "status", "tenant_category": "category", "tenant_model": "model"}


def index_key(tenant: str, value: str) -> str:
    return f"{tenant}#{value}"


def status_fields(tenant: str, status: AlertStatus) -> dict[str, Any]:
    """A status change, with the index key that follows it."""
    return {"status": status.value, "tenant_status": index_key(tenant, status.value)}


def new_alert_item(alert: Alert, at: datetime) -> dict[str, Any]:
    entry = AuditEntry(at=at, who=SYSTEM_ACTOR, action=AlertEvent.CREATED.value, status=AlertStatus.OPEN)
    return {
        **alert.model_dump(mode="json"),
        **status_fields(alert.tenant, AlertStatus.OPEN),
        "tenant_category": index_key(alert.tenant, alert.category),
        "tenant_model": index_key(alert.tenant, alert.model),
        "verdict": None,
        "audit": [entry.model_dump(mode="json")],
        "updated_at": at.isoformat(),
        "version": 1,
        "notified": False,
        "pending_event": AlertEvent.CREATED.value,
    }


class SavePlan(BaseModel):
    """How a stored alert changes when a later chunk's finding rises above it."""

    model_config = ConfigDict(frozen=True)

    event: AlertEvent | None  # None: score and evidence rise silently (same severity, not resolved)
    updates: dict[str, Any]
    audit: AuditEntry | None


def plan_update(current: Mapping[str, Any], alert: Alert, at: datetime) -> SavePlan | None:
    """None when the finding does not rise above the stored alert (a redelivery, a weaker chunk)."""
    if not rises_above(current, alert):
        return None
    before = int(current["severity"])
    severity = max(before, alert.severity)
    updates: dict[str, Any] = {**finding_fields(alert), "severity": severity, "updated_at": at.isoformat()}
    event: AlertEvent | None = None
    note: str | None = None
    if current.get("status", AlertStatus.OPEN.value) == AlertStatus.RESOLVED.value:
        event = AlertEvent.REOPENED
        note = f"score {float(current['score']):.3f} -> {alert.score:.3f} at chunk {alert.chunk_seq}"
        updates |= {**status_fields(alert.tenant, AlertStatus.OPEN), "verdict": None}
    elif severity > before:
        event = AlertEvent.ESCALATED
        note = f"severity {before} -> {severity} at chunk {alert.chunk_seq}"
    if event is None:
        return SavePlan(event=None, updates=updates, audit=None)
    status = AlertStatus(updates.get("status", current.get("status", AlertStatus.OPEN.value)))
    entry = AuditEntry(at=at, who=SYSTEM_ACTOR, action=event.value, status=status, note=note)
    updates |= {"notified": False, "pending_event": event.value}
    return SavePlan(event=event, updates=updates, audit=entry)


def plan_triage(
    current: Mapping[str, Any] | None,
    alert_id: str,
    to: AlertStatus,
    who: str,
    at: datetime,
    verdict: Verdict | None = None,
    note: str | None = None,
) -> tuple[dict[str, Any], AuditEntry]:
    """The fields a person's acknowledgement or resolution sets, or why it is not allowed."""
    if current is None:
        raise AlertNotFoundError(f"no alert {alert_id!r}")
    status = AlertStatus(current.get("status", AlertStatus.OPEN.value))
    allowed = TRIAGE_FROM.get(to)
    if allowed is None:
        raise InvalidTransitionError(f"an alert cannot be moved to {to.value!r} by hand")
    if status not in allowed:
        raise InvalidTransitionError(f"alert {alert_id} is {status.value}: it cannot be {to.value}")
    if to is AlertStatus.RESOLVED and verdict is None:
        raise InvalidTransitionError("resolving an alert needs a verdict")
    entry = AuditEntry(at=at, who=who, action=to.value, status=to, verdict=verdict, note=note)
    updates: dict[str, Any] = {**status_fields(str(current["tenant"]), to), "updated_at": at.isoformat()}
    if to is AlertStatus.RESOLVED:
        updates["verdict"] = verdict.value if verdict is not None else None
    return updates, entry
