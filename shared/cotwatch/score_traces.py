"""The scorer's use case: Kafka records in, alerts, counters and dead letters out.

It runs in two phases so a batch can be embedded in one call yet reported record by record:
``prepare`` decodes every record and assesses all valid chunks together; ``apply`` then performs one
record's side effects. Every effect is idempotent, so Lambda's at-least-once redelivery is harmless:
alerts have deterministic ids and conditional writes, counters ride in one transaction with a
processed marker, dead letters have deterministic keys.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import ValidationError

from cotwatch.alerts import Alert
from cotwatch.detection.models import ChunkAssessment, TraceState
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.kafka_event import KafkaRecord
from cotwatch.ports import (
    AlertPublisher,
    AlertStore,
    AlertWrite,
    CounterKey,
    CounterStore,
    DeadLetter,
    DeadLetterSink,
    TraceStateStore,
)
from cotwatch.trace import TraceChunk


class Outcome(StrEnum):
    SCORED = "scored"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


@dataclass
class RecordResult:
    """What ``apply`` did for one record (the handler turns these into logs and metrics)."""

    outcome: Outcome
    alerts_created: int = 0
    alerts_escalated: int = 0
    notifications: int = 0
    counted: bool = False
    dead_letter_location: str | None = None


@dataclass
class PreparedBatch:
    chunks: dict[str, TraceChunk] = field(default_factory=dict)
    assessments: dict[str, ChunkAssessment] = field(default_factory=dict)
    states: dict[str, TraceState] = field(default_factory=dict)
    prior_peaks: dict[str, dict[str, float]] = field(default_factory=dict)
    rejections: dict[str, Rejection] = field(default_factory=dict)


def decode_chunk(record: KafkaRecord) -> TraceChunk | Rejection:
    """Turn a record into a chunk, or say precisely why it cannot be one."""
    if record.value is None:
        return Rejection("empty_value", "record has no value (tombstone or null payload)")
    try:
        payload = json.loads(record.value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", f"value is not UTF-8: {exc}")
    except json.JSONDecodeError as exc:
        return Rejection("not_json", f"value is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(payload, dict):
        return Rejection("not_object", f"value is JSON {type(payload).__name__}, expected an object")
    try:
        chunk = TraceChunk.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        return Rejection("schema_violation", problems[:2000])
    if record.key is not None and record.key.decode("utf-8", "replace") != chunk.trace_id:
        # The key decides the partition; a different key breaks per-trace ordering.
        return Rejection("key_mismatch", f"Kafka key {record.key!r} differs from trace_id {chunk.trace_id!r}")
    return chunk


class ScoreTraces:
    """Score trace chunks and record what was found."""

    def __init__(
        self,
        monitor: TraceMonitor,
        alerts: AlertStore,
        publisher: AlertPublisher,
        states: TraceStateStore,
        counters: CounterStore,
        dead_letters: DeadLetterSink,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._monitor = monitor
        self._alerts = alerts
        self._publisher = publisher
        self._states = states
        self._counters = counters
        self._dead_letters = dead_letters
        self._clock = clock

    def prepare(self, records: Sequence[KafkaRecord]) -> PreparedBatch:
        batch = PreparedBatch()
        for record in records:
            decoded = decode_chunk(record)
            if isinstance(decoded, Rejection):
                batch.rejections[record.record_id] = decoded
            else:
                batch.chunks[record.record_id] = decoded
        # Per trace in chunk order; traces themselves in first-seen order.
        ordered = sorted(batch.chunks.items(), key=lambda kv: (kv[1].trace_key, kv[1].seq))
        prior = self._states.get_many({c.trace_key for _, c in ordered})
        results = self._monitor.assess_batch([c for _, c in ordered], prior)
        running = dict(prior)
        for (record_id, chunk), result in zip(ordered, results, strict=True):
            before = running.get(chunk.trace_key)
            batch.prior_peaks[record_id] = dict(before.peak) if before else {}
            running[chunk.trace_key] = result.state
            batch.assessments[record_id] = result.assessment
            batch.states[record_id] = result.state
        return batch

    def apply(self, batch: PreparedBatch, record: KafkaRecord) -> RecordResult:
        rejection = batch.rejections.get(record.record_id)
        if rejection is not None:
            return self._dead_letter(record, rejection)
        chunk = batch.chunks[record.record_id]
        assessment = batch.assessments[record.record_id]
        result = RecordResult(outcome=Outcome.SCORED)
        for finding in assessment.flagged:
            alert = Alert.from_finding(chunk, assessment, finding, source=record.record_id)
            stored = self._alerts.save(alert)
            if stored.write == AlertWrite.CREATED:
                result.alerts_created += 1
            elif stored.write == AlertWrite.ESCALATED:
                result.alerts_escalated += 1
            if stored.needs_notify:
                self._publisher.publish(alert, stored.write)
                self._alerts.mark_notified(alert)
                result.notifications += 1
        # Counters before state: a retry after a crash in between still derives the same increments.
        result.counted = self._counters.apply_once(
            record.record_id, self._increments(chunk, assessment, batch.prior_peaks[record.record_id])
        )
        self._states.put(batch.states[record.record_id])
        return result

    def _increments(
        self, chunk: TraceChunk, assessment: ChunkAssessment, prior_peak: dict[str, float]
    ) -> Counter[CounterKey]:
        hour = CounterKey.hour_of(chunk.created_at)

        def key(metric: str, category: str = "-") -> CounterKey:
            return CounterKey(hour=hour, tenant=chunk.tenant, model=chunk.model, metric=metric, category=category)

        counts: Counter[CounterKey] = Counter({key("chunks"): 1})
        if chunk.seq == 0:
            counts[key("traces")] += 1
        for finding in assessment.flagged:
            counts[key("flagged_chunks", finding.category)] += 1
            counts[key(f"severity_{finding.severity}", finding.category)] += 1
            if prior_peak.get(finding.category, 0.0) < 0.5:
                # First chunk of the trace over threshold: derived from state, so exact under redelivery.
                counts[key("flagged_traces", finding.category)] += 1
        return counts

    def _dead_letter(self, record: KafkaRecord, rejection: Rejection) -> RecordResult:
        now = self._clock()
        letter = DeadLetter(
            reason=rejection.reason,
            detail=rejection.detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
            value_b64=base64.b64encode(record.value).decode() if record.value is not None else None,
            headers=[(k, base64.b64encode(v).decode()) for k, v in record.headers],
            dead_lettered_at=now,
        )
        location = self._dead_letters.write(letter)
        counted = self._counters.apply_once(
            record.record_id,
            {CounterKey(hour=CounterKey.hour_of(now), tenant="-", model="-", metric="dead_letters"): 1},
        )
        return RecordResult(outcome=Outcome.DEAD_LETTERED, counted=counted, dead_letter_location=location)
