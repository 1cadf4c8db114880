"""The scorer's use case: one Kafka batch in, alerts, counters and dead letters out, and a report of it.

``process_batch`` decodes every record, reads the batch's trace states once and assesses all valid chunks
in one embedding call, then performs each record's side effects in order. A record whose effects fail
(publisher down, table throttled, dead-letter sink failing) is reported failed and the rest go on; a failure
that concerns the whole batch (reading trace state, assessing) propagates, so Lambda retries the batch.
Every effect is idempotent, so redelivery is harmless: alerts have deterministic ids and conditional
writes, counters ride in one transaction with a processed marker, dead letters have deterministic keys.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from cotwatch import stages
from cotwatch.alerts import Alert
from cotwatch.decoding import MAX_RECORD_BYTES, PayloadError, load_json
from cotwatch.detection.models import ChunkAssessment, TraceState
from cotwatch.detection.monitor import ChunkResult, TraceMonitor
from cotwatch.detection.windowing import cut_windows
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.otlp import OtlpDecodeError, decode_otlp, select_encoding
from cotwatch.patterns import ChunkPatterns, summarise, suspicious_windows
from cotwatch.ports import (
    AlertPublisher,
    AlertStore,
    AlertWrite,
    ChunkIdentity,
    CounterKey,
    CounterStore,
    DeadLetter,
    DeadLetterSink,
    PatternSink,
    TraceStateStore,
)
from cotwatch.tenancy import ANY_TENANT, TenantBinding
from cotwatch.trace import MAX_CHUNK_CHARS, SCHEMA_VERSION, TraceChunk
from cotwatch.tracking import TokenCounter, chunk_increments, with_alerts, word_count

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    SCORED = "scored"
    DEAD_LETTERED = "dead_lettered"
    FAILED = "failed"  # its effects raised: reported to Lambda, which redelivers it
    SKIPPED = "skipped"  # OTLP spans that carry no text: counted by reason, never dead-lettered
    DEDUPLICATED = "deduplicated"  # the same chunk (identity and content) arrived again at another offset


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


@dataclass(frozen=True)
class Skipped:
    """Spans of an OTLP record that are not GenAI spans or carry no text, counted per reason."""

    reasons: dict[str, int]


@dataclass
class RecordReport:
    """Everything about one record of the batch: what it decoded to, what detection said, what was done."""

    record: KafkaRecord
    decoded: TraceChunk | Rejection | Skipped
    part: int = 0  # an OTLP record yields several chunks: each has its own part number
    assessment: ChunkAssessment | None = None
    state: TraceState | None = None  # the trace's state after this chunk (None: already covered)
    prior_peak: dict[str, float] = field(default_factory=dict)  # the trace's peaks before this chunk
    prior_state: TraceState | None = None  # the trace's state before this chunk: what its counters derive from
    result: ChunkResult | None = None  # the monitor's answer, with the windows' embeddings (emerging patterns)
    outcome: Outcome | None = None
    duplicate_of: RecordReport | None = None  # an earlier record of this batch carrying the same chunk
    alerts_created: int = 0
    alerts_escalated: int = 0
    notifications: int = 0
    counted: bool = False
    dead_letter_location: str | None = None
    error: str | None = None
    replay: bool = False  # re-scored by `cotwatch replay`, not delivered by the event source

    @property
    def windows_scored(self) -> int:
        return self.assessment.windows if self.assessment is not None else 0

    @property
    def origin_id(self) -> str:
        """The record id, plus the part for OTLP records."""
        return self.record.record_id if self.part == 0 else f"{self.record.record_id}#{self.part}"

    @property
    def effect_id(self) -> str:
        """The idempotency key of this report's counters. A replay has markers of its own: the record's own
        marker may hold the dead-letter count of an earlier delivery, and a chunk that now scores must count."""
        return f"{REPLAY_MARKER}{self.origin_id}" if self.replay else self.origin_id


@dataclass(frozen=True)
class BatchReport:
    """What ``process_batch`` did, record by record in batch order (the handler's metrics and answer)."""

    records: tuple[RecordReport, ...]

    def _count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.records)

    @property
    def received(self) -> int:
        return len({r.record.record_id for r in self.records})

    @property
    def spans_skipped(self) -> int:
        return sum(sum(r.decoded.reasons.values()) for r in self.records if isinstance(r.decoded, Skipped))

    @property
    def scored(self) -> int:
        return self._count(Outcome.SCORED)

    @property
    def dead_lettered(self) -> int:
        return self._count(Outcome.DEAD_LETTERED)

    @property
    def deduplicated(self) -> int:
        return self._count(Outcome.DEDUPLICATED)

    @property
    def failed(self) -> list[RecordReport]:
        return [r for r in self.records if r.outcome is Outcome.FAILED]

    @property
    def windows_scored(self) -> int:
        return sum(r.windows_scored for r in self.records if r.outcome is Outcome.SCORED)

    @property
    def alerts_raised(self) -> int:
        return sum(r.alerts_created for r in self.records)

    @property
    def alerts_escalated(self) -> int:
        return sum(r.alerts_escalated for r in self.records)

    def batch_item_failures(self) -> list[dict[str, Any]]:
        """Lambda's Kafka partial batch response entries: the failed records' own coordinates."""
        failed = dict.fromkeys(r.record.record_id for r in self.failed)  # one entry per record, in order
        records = {r.record.record_id: r.record for r in self.failed}
        return [{"itemIdentifier": records[rid].batch_item_identifier()} for rid in failed]


def decode_record(
    record: KafkaRecord, otlp_topics: Mapping[str, str] | None = None
) -> list[TraceChunk | Rejection | Skipped]:
    """A trace-chunk record decodes to one chunk; an OTLP export (selected by its headers or its topic, see
    :func:`cotwatch.otlp.select_encoding`) to one chunk per GenAI text piece, plus the skipped spans.

    Never raises: whatever a producer wrote becomes chunks or a rejection with its reason, so one poison
    record cannot fail (and endlessly retry) the batch it arrived in."""
    try:
        return _decode_record(record, otlp_topics)
    except RecursionError:
        return [Rejection("too_deep", "value nests deeper than the decoder's limit")]
    except Exception as exc:  # a decoder bug must cost one dead letter (kept for replay), not the batch
        logger.exception("decoding %s raised", record.record_id)
        return [Rejection("undecodable", f"decoder raised {type(exc).__name__}: {exc}"[:2000])]


def _decode_record(
    record: KafkaRecord, otlp_topics: Mapping[str, str] | None
) -> list[TraceChunk | Rejection | Skipped]:
    encoding = select_encoding(record.headers, record.topic, otlp_topics)
    if encoding is None:
        return [decode_chunk(record)]
    if record.value is None:
        return [Rejection("empty_value", "record has no value (tombstone or null payload)")]
    if len(record.value) > MAX_RECORD_BYTES:
        return [Rejection("too_large", f"value is {len(record.value)} bytes, over the {MAX_RECORD_BYTES}-byte limit")]
    try:
        mapping = decode_otlp(record.value, encoding)
    except OtlpDecodeError as exc:
        return [Rejection("not_otlp", f"value is not an {encoding} trace export: {exc}")]
    except ValidationError as exc:
        return [Rejection("schema_violation", f"OTLP span maps to an invalid chunk: {_problems(exc)}")]
    decoded: list[TraceChunk | Rejection | Skipped] = list(mapping.chunks)
    if mapping.skipped or not decoded:
        reasons = Counter(s.reason for s in mapping.skipped)
        decoded.append(Skipped(reasons=dict(reasons) or {"no_spans": 0}))
    return decoded


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())[:2000]


def decode_chunk(record: KafkaRecord) -> TraceChunk | Rejection:
    """Turn a record into a chunk, or say precisely why it cannot be one."""
    if record.value is None:
        return Rejection("empty_value", "record has no value (tombstone or null payload)")
    try:
        payload = load_json(record.value)
    except PayloadError as exc:  # too_large, not_utf8, too_deep, not_json
        return Rejection(exc.reason, exc.detail)
    if not isinstance(payload, dict):
        return Rejection("not_object", f"value is JSON {type(payload).__name__}, expected an object")
    if payload.get("schema_version", SCHEMA_VERSION) not in range(1, SCHEMA_VERSION + 1):
        return Rejection(
            "unknown_schema_version",
            f"schema_version {payload['schema_version']!r} is not one this scorer reads (1..{SCHEMA_VERSION})",
        )
    try:
        chunk = TraceChunk.model_validate(payload)
    except ValidationError as exc:
        return Rejection("schema_violation", _problems(exc))
    if record.key is not None and record.key.decode("utf-8", "replace") != chunk.trace_id:
        # The key decides the partition; a different key breaks per-trace ordering.
        return Rejection("key_mismatch", f"Kafka key {record.key!r} differs from trace_id {chunk.trace_id!r}")
    return chunk


def identity_key(chunk: TraceChunk) -> str:
    """(tenant, trace_id, seq): what makes a chunk the same chunk, whichever offset it arrived at."""
    return f"{chunk.tenant}#{chunk.trace_id}#{chunk.seq}"


def content_hash(chunk: TraceChunk) -> str:
    """What the chunk says, without when it was stamped: a retried send carries the same hash."""
    return hashlib.sha256(chunk.model_dump_json(exclude={"created_at"}).encode()).hexdigest()


def _conflict(key: str, where: str) -> Rejection:
    return Rejection("conflicting_duplicate", f"chunk {key} arrived before with different content ({where})")


@dataclass(frozen=True)
class Limits:
    """What one chunk and one invocation may cost. A chunk over a limit is a dead letter, never clipped (a
    clipped text would pass its unscored part as clean); a batch near its deadline hands the rest back."""

    max_chunk_chars: int = MAX_CHUNK_CHARS
    max_windows_per_chunk: int = 2_000  # a full 200k-character chunk of prose is ~1,100 windows of 240 chars
    time_reserve_ms: int = 10_000  # stop starting new records when less than this is left (at most 1/4 of it)


REPLAY_MARKER = "replay#"
HANDED_BACK = "time_budget: handed back unprocessed before the invocation's deadline"


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
        count_tokens: TokenCounter = word_count,
        otlp_topics: Mapping[str, str] | None = None,
        tenants: TenantBinding | None = None,
        limits: Limits | None = None,
        no_raw_text_tenants: frozenset[str] = frozenset(),
        patterns: PatternSink | None = None,
    ) -> None:
        """``patterns``: where suspicious windows no category passes go (None: not kept)."""
        self._monitor = monitor
        self._patterns = patterns
        self._alerts = alerts
        self._publisher = publisher
        self._states = states
        self._counters = counters
        self._dead_letters = dead_letters
        self._clock = clock
        self._count_tokens = count_tokens
        self._otlp_topics = dict(otlp_topics or {})
        # None: every valid payload tenant (unit tests); deployments always pass TENANT_BINDINGS.
        self._tenants = tenants
        self._limits = limits or Limits()
        self._no_raw_text = frozenset(no_raw_text_tenants)

    def process_batch(
        self, batch: KafkaBatch, remaining_ms: Callable[[], int] | None = None, *, replay: bool = False
    ) -> BatchReport:
        """``remaining_ms`` is the Lambda context's ``get_remaining_time_in_millis``: records not started when
        less than ``time_reserve_ms`` is left are handed back as failures (Lambda redelivers them) rather
        than lost to a timeout that would redeliver the whole batch, done records included.

        ``replay`` (``cotwatch replay``): effects are written under replay markers, and a chunk whose identity
        is already claimed with the same content is ``deduplicated`` without touching any counter (its
        effects are all done: the claim rides in the counters' transaction, after alerts and notifications).
        A replayed record that is still poison is dead-lettered under its own coordinates, counted once."""

        # The reserve, or a quarter of the time the batch started with if that is smaller (short timeouts).
        reserve = (
            self._limits.time_reserve_ms
            if remaining_ms is None
            else min(self._limits.time_reserve_ms, remaining_ms() // 4)
        )

        def out_of_time() -> bool:
            return remaining_ms is not None and remaining_ms() < reserve

        with stages.CLOCK.stage(stages.DECODE):
            reports = [
                RecordReport(record=r, decoded=self._admit(r, decoded), part=part, replay=replay)
                for r in batch.records
                for part, decoded in enumerate(decode_record(r, self._otlp_topics))
            ]
        if out_of_time():  # not even time to assess: every record goes back
            for report in reports:
                report.outcome, report.error = Outcome.FAILED, HANDED_BACK
            return BatchReport(records=tuple(reports))
        self._deduplicate(reports)
        self._assess(reports)
        for report in reports:
            if report.outcome is not None:
                continue  # settled while assessing
            if out_of_time():
                report.outcome, report.error = Outcome.FAILED, HANDED_BACK
                continue
            try:
                with stages.CLOCK.stage(stages.PERSIST):  # publishing, inside, is timed on its own
                    if isinstance(report.decoded, Rejection):
                        self._dead_letter(report, report.decoded)
                    elif isinstance(report.decoded, Skipped):
                        self._count_skipped(report, report.decoded)
                    elif report.duplicate_of is not None:
                        self._count_duplicate(report, report.decoded)
                    else:
                        self._apply(report, report.decoded)
            except Exception as exc:  # one record's effects failed: Lambda redelivers it, the rest go on
                logger.exception("record %s failed", report.record.record_id)
                report.outcome, report.error = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
        return BatchReport(records=tuple(reports))

    def _admit(
        self, record: KafkaRecord, decoded: TraceChunk | Rejection | Skipped
    ) -> TraceChunk | Rejection | Skipped:
        """Limits, then the tenant from the topic's binding: a payload naming another tenant is a dead letter."""
        if not isinstance(decoded, TraceChunk):
            return decoded
        limits = self._limits
        if len(decoded.text) > limits.max_chunk_chars:
            return Rejection(
                "chunk_too_large", f"text has {len(decoded.text)} characters, over {limits.max_chunk_chars}"
            )
        with stages.CLOCK.stage(stages.WINDOW):
            windows = len(cut_windows(decoded.text))
        if windows > limits.max_windows_per_chunk:
            return Rejection(
                "too_many_windows", f"text cuts into {windows} windows, over {limits.max_windows_per_chunk}"
            )
        if self._tenants is None:
            return decoded
        named = decoded.tenant if "tenant" in decoded.model_fields_set else None
        tenant, reason, detail = self._tenants.resolve(record.topic, named)
        if tenant is None:
            return Rejection(reason, detail)
        return decoded if tenant == decoded.tenant else decoded.model_copy(update={"tenant": tenant})

    def _deduplicate(self, reports: list[RecordReport]) -> None:
        """Exactly once per chunk, not per offset: a producer retry lands the same (tenant, trace_id, seq) at a
        new offset. Same content -> a duplicate (counted, no effect); other content -> conflicting_duplicate."""
        chunks = [r for r in reports if isinstance(r.decoded, TraceChunk)]
        with stages.CLOCK.stage(stages.PERSIST):
            claimed = self._counters.identities(
                [identity_key(r.decoded) for r in chunks if isinstance(r.decoded, TraceChunk)]
            )
        first: dict[str, RecordReport] = {}
        for report in chunks:
            chunk = report.decoded
            assert isinstance(chunk, TraceChunk)
            key, digest = identity_key(chunk), content_hash(chunk)
            earlier = first.setdefault(key, report)
            stored = claimed.get(key)
            if stored is not None:
                stored_digest, _, source = stored.partition("@")
                if stored_digest != digest:
                    report.decoded = _conflict(key, f"stored by {source}")
                elif report.replay or source != report.effect_id:
                    report.duplicate_of = report  # the claiming record is done: nothing of this one to wait for
            elif earlier is not report:
                earlier_chunk = earlier.decoded
                if not isinstance(earlier_chunk, TraceChunk) or content_hash(earlier_chunk) != digest:
                    report.decoded = _conflict(key, f"carried by {earlier.effect_id} in this batch")
                else:
                    report.duplicate_of = earlier

    def _assess(self, reports: list[RecordReport]) -> None:
        """All valid chunks in one call, per trace in chunk order; a failure here fails the whole batch.

        A chunk the stored state already covers (``seq <= last_seq``: a redelivery) must not be applied to
        the state again: the monitor would count its near hits twice and raise later scores. If its counters
        are in, every effect of it is done (counters come after alerts and notifications): it is skipped. If
        not (it failed while later chunks of its trace went on), it is assessed on its own, keeping only
        whether the trace had refused, so its idempotent effects finish; its state is not written.
        """
        valid = [(r, r.decoded) for r in reports if isinstance(r.decoded, TraceChunk) and r.duplicate_of is None]
        valid.sort(key=lambda pair: (pair[1].trace_key, pair[1].seq))
        with stages.CLOCK.stage(stages.PERSIST):
            prior = self._states.get_many({chunk.trace_key for _, chunk in valid})

        def covered(chunk: TraceChunk) -> bool:
            state = prior.get(chunk.trace_key)
            return state is not None and chunk.seq <= state.last_seq

        fresh = [(r, c) for r, c in valid if not covered(c)]
        replayed = [(r, c) for r, c in valid if covered(c)]
        results = self._monitor.assess_batch([chunk for _, chunk in fresh], prior)
        running = dict(prior)
        for (report, chunk), result in zip(fresh, results, strict=True):
            before = running.get(chunk.trace_key)
            report.prior_peak = dict(before.peak) if before else {}
            report.prior_state = before
            state = with_alerts(result.state, before, result.assessment)
            running[chunk.trace_key] = state
            report.assessment = result.assessment
            report.result = result
            report.state = state
        for report, chunk in replayed:
            if self._counters.applied(report.effect_id):
                report.outcome = Outcome.SCORED  # done by an earlier delivery
                continue
            stored = prior[chunk.trace_key]
            alone = TraceState(trace_key=chunk.trace_key, last_seq=-1, refusal_seen=stored.refusal_seen)
            [result] = self._monitor.assess_batch([chunk], {chunk.trace_key: alone})
            report.assessment = result.assessment
            report.result = result
            report.prior_peak = dict(stored.peak)  # the trace was counted as flagged when it first crossed
            report.prior_state = stored

    def _apply(self, report: RecordReport, chunk: TraceChunk) -> None:
        if report.assessment is None:
            raise RuntimeError(f"chunk of {report.record.record_id} was not assessed")
        for finding in report.assessment.flagged:
            alert = Alert.from_finding(chunk, report.assessment, finding, source=report.record.record_id)
            stored = self._alerts.save(alert)
            if stored.write == AlertWrite.CREATED:
                report.alerts_created += 1
            elif stored.write == AlertWrite.ESCALATED:
                report.alerts_escalated += 1
            if stored.needs_notify:
                # The event owed: this write's, or one an earlier attempt stored and died before publishing.
                with stages.CLOCK.stage(stages.PUBLISH):
                    self._publisher.publish(alert, stored.event)
                self._alerts.mark_notified(alert)
                report.notifications += 1
        # Counters before state: a retry after a crash in between still derives the same increments.
        claim = ChunkIdentity(key=identity_key(chunk), fingerprint=f"{content_hash(chunk)}@{report.effect_id}")
        result = report.result
        if result is not None and self._patterns is not None:  # before the counters, like every other effect
            windows = suspicious_windows(
                chunk,
                result.windows,
                result.embeddings,
                result.window_scores,
                self._monitor.categories,
                hashed=chunk.tenant in self._monitor.hashed_tenants,
            )
            if windows:
                self._patterns.write(ChunkPatterns(effect_id=report.effect_id, hour=windows[0].hour, windows=windows))
        report.counted = self._counters.apply_once(
            report.effect_id,
            chunk_increments(chunk, report.assessment, report.prior_state, self._count_tokens),
            claim,
            embedding=summarise(chunk, result.embeddings) if result is not None else None,
        )
        if report.state is not None:  # None for a redelivered chunk the stored state already covers
            self._states.put(report.state)
        report.outcome = Outcome.SCORED

    def _count_duplicate(self, report: RecordReport, chunk: TraceChunk) -> None:
        primary = report.duplicate_of
        if primary is not None and primary is not report and primary.outcome is not Outcome.SCORED:
            # Its twin failed (or is not done): fail this one too, so Lambda redelivers both.
            raise RuntimeError(f"duplicate of {primary.effect_id}, which did not complete")
        report.outcome = Outcome.DEDUPLICATED
        if report.replay:
            return  # a replay of done work is no producer duplicate: no counter moves
        hour = CounterKey.hour_of(chunk.created_at)
        key = CounterKey(hour=hour, tenant=chunk.tenant, model=chunk.model, metric="deduplicated")
        report.counted = self._counters.apply_once(report.effect_id, {key: 1})

    def _count_skipped(self, report: RecordReport, skipped: Skipped) -> None:
        hour = CounterKey.hour_of(self._clock())
        report.counted = self._counters.apply_once(
            report.origin_id,  # a replay of the record must not count its skipped spans again
            {
                CounterKey(hour=hour, tenant="-", model="-", metric="otlp_spans_skipped", category=reason): n
                for reason, n in skipped.reasons.items()
                if n
            },
        )
        report.outcome = Outcome.SKIPPED

    def _withholds_raw_text(self, topic: str) -> bool:
        """Whether a rejected record of ``topic`` may belong to a no-raw-text tenant: its tenant is unknown
        when it is a dead letter, so only a topic bound to named tenants, none of them no-raw-text, keeps it."""
        if not self._no_raw_text:
            return False
        allowed = self._tenants.topics.get(topic, frozenset()) if self._tenants is not None else frozenset()
        return not allowed or ANY_TENANT in allowed or bool(allowed & self._no_raw_text)

    def _dead_letter(self, report: RecordReport, rejection: Rejection) -> None:
        record = report.record
        now = self._clock()
        if self._withholds_raw_text(record.topic):
            letter = DeadLetter.withholding_raw_text(
                reason=rejection.reason,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp_ms,
                key=record.key,
                value=record.value,
                header_names=[k for k, _ in record.headers],
                dead_lettered_at=now,
            )
        else:
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
        report.dead_letter_location = self._dead_letters.write(letter)
        report.counted = self._counters.apply_once(
            record.record_id,
            {CounterKey(hour=CounterKey.hour_of(now), tenant="-", model="-", metric="dead_letters"): 1},
        )
        report.outcome = Outcome.DEAD_LETTERED
