"""The wire format of a reasoning-trace chunk, as producers publish it to Kafka.

Kafka key = ``trace_id`` so every chunk of a trace lands, in order, on one partition.
The JSON Schema in ``data/trace_chunk.schema.json`` is generated from this model
(``cotwatch schema``) and checked against it by a unit test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1
MAX_CHUNK_CHARS = 200_000

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._:@/+=-]+$")]
# Tenants name table keys, S3 prefixes and metric dimensions: lower-case DNS-label-like, never a path.
TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
Tenant = Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]


class Segment(StrEnum):
    """Which part of the model's output a chunk carries."""

    REASONING = "reasoning"
    ANSWER = "answer"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"


class TraceChunk(BaseModel):
    """One chunk of a reasoning trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    trace_id: Identifier
    seq: int = Field(default=0, ge=0, description="Chunk number within the trace, from 0.")
    final: bool = Field(default=False, description="True on the last chunk of the trace.")
    model: Identifier
    tenant: Tenant = "default"  # checked against the topic's binding by the scorer, never trusted alone
    segment: Segment = Segment.REASONING
    text: str = Field(max_length=MAX_CHUNK_CHARS)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    conversation_id: Identifier | None = None
    attributes: dict[str, str] = Field(default_factory=dict)

    @property
    def trace_key(self) -> str:
        """Trace ids are unique per tenant, not globally."""
        return f"{self.tenant}#{self.trace_id}"


def split_text(text: str, max_chars: int) -> list[str]:
    """Split a long text into chunks of at most ``max_chars``, preferring paragraph and sentence breaks."""
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > max_chars:
        cut = -1
        for sep in ("\n\n", "\n", ". ", " "):
            cut = rest.rfind(sep, max_chars // 2, max_chars)
            if cut != -1:
                cut += len(sep)
                break
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return pieces


class TraceDocument(BaseModel):
    """A whole trace as written in a JSONL file (demo data, replays); ``produce`` cuts it into chunks."""

    model_config = ConfigDict(extra="ignore")

    trace_id: Identifier
    model: Identifier
    tenant: Tenant = "default"
    conversation_id: Identifier | None = None
    reasoning: str = ""
    answer: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    expect: list[str] = Field(default_factory=list, description="Categories that should alert (demo data only).")

    def to_chunks(self, max_chars: int = 1500, created_at: datetime | None = None) -> list[TraceChunk]:
        """Reasoning chunks first, then answer chunks; ``seq`` runs across both and the last is ``final``."""
        moment = created_at or datetime.now(UTC)
        parts = [(Segment.REASONING, p) for p in split_text(self.reasoning, max_chars) if self.reasoning]
        parts += [(Segment.ANSWER, p) for p in split_text(self.answer, max_chars) if self.answer]
        return [
            TraceChunk(
                trace_id=self.trace_id,
                seq=seq,
                final=seq == len(parts) - 1,
                model=self.model,
                tenant=self.tenant,
                segment=segment,
                text=text,
                created_at=moment,
                conversation_id=self.conversation_id,
                attributes=self.attributes,
            )
            for seq, (segment, text) in enumerate(parts)
        ]
