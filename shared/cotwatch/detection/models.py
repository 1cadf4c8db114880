"""What detection produces for a chunk, and the per-trace state it carries between chunks."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from cotwatch.trace import Segment


class Disposition(StrEnum):
    """Whether the chain of thought goes along with the unsafe request or turns it down."""

    REFUSED = "refused"
    COMPLIED = "complied"
    UNCLEAR = "unclear"


class Evidence(BaseModel):
    """Where in the trace a category matched, and why."""

    model_config = ConfigDict(frozen=True)

    chunk_seq: int
    segment: Segment
    start: int = Field(description="Character offset in the chunk's text; < 0 if it began in the previous chunk.")
    end: int
    excerpt: str = Field(description="Redacted text of the window.")
    score: float
    cue_ids: tuple[str, ...] = Field(default=(), description="Intent cues that raised the score.")
    exemplar_ids: tuple[str, ...] = Field(default=(), description="The nearest exemplars of the category.")


class CategoryFinding(BaseModel):
    """One category's verdict on a chunk, in the context of the trace so far."""

    model_config = ConfigDict(frozen=True)

    category: str
    score: float = Field(description="Calibrated score in [0, 1]; 0.5 is the category threshold.")
    raw_score: float
    threshold: float = Field(description="Raw-score threshold that was in force.")
    severity: int = Field(ge=0, le=4, description="0 = below threshold, 1..4 = alert bands.")
    evidence: tuple[Evidence, ...] = ()

    @property
    def flagged(self) -> bool:
        return self.severity > 0


class ChunkAssessment(BaseModel):
    """Detection's full answer for one chunk."""

    model_config = ConfigDict(frozen=True)

    scorer_version: str
    calibration_version: str
    windows: int
    disposition: Disposition
    findings: dict[str, CategoryFinding]

    @property
    def flagged(self) -> list[CategoryFinding]:
        return [f for f in self.findings.values() if f.flagged]

    @property
    def unsafe_score(self) -> float:
        """The highest calibrated category score: how unsafe the chunk looks overall."""
        return max((f.score for f in self.findings.values()), default=0.0)

    @property
    def top_category(self) -> str | None:
        if not self.findings:
            return None
        return max(self.findings.values(), key=lambda f: f.score).category


class TraceState(BaseModel):
    """What the monitor remembers about a trace between chunks (persisted per trace)."""

    trace_key: str
    last_seq: int = -1
    tail: str = ""
    peak: dict[str, float] = Field(default_factory=dict, description="Highest calibrated score per category.")
    near_hits: dict[str, int] = Field(default_factory=dict, description="Windows close to threshold, per category.")
    refusal_seen: bool = False
    alerted: dict[str, tuple[int, float, str]] = Field(
        default_factory=dict,
        description="Per category, the trace's alert as the store keeps it: (severity, score, disposition).",
    )
