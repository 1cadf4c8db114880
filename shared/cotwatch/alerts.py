"""Alerts: one per (tenant, trace, category), with a deterministic id so redelivery cannot duplicate it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

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
