"""``cotwatch replay``: re-score archived dead letters, failed batches or a Kafka offset range.

Every record goes through the scorer's own use case (:class:`cotwatch.score_traces.ScoreTraces`) in replay
mode, so writes stay idempotent: a chunk whose identity (tenant, trace_id, seq) is already claimed with the
same content is ``deduplicated`` and moves no counter; a record whose dead-letter cause is gone (a topic bound
since, a limit raised, a decoder fixed) scores and counts once under a replay marker; a record that is still
poison is dead-lettered again under its own coordinates (its archived letter is kept as it first arrived) and
counted once. ``--dry-run`` reads the records and estimates chunks, tokens, windows, time and cost, and writes
nothing.

Sources:

- dead letters: the objects the scorer's :class:`~cotwatch.adapters.aws.S3DeadLetterSink` writes under
  ``DEAD_LETTER_PREFIX`` (``dead-letters/<topic>/<partition>/<offset>.json``);
- failed batches: the documents the event source mapping's on-failure destination writes to the data bucket
  (Lambda: ``aws/lambda/<mapping id>/...``; the local poller: ``failed-batches/<topic>/<partition>/...``), each
  with the Kafka event it could not process (``payload``);
- a Kafka range: one partition of a topic, from/to offsets or timestamps, read with a consumer that has no
  group and commits nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from cotwatch.detection.embedding import Embedder
from cotwatch.detection.windowing import cut_windows
from cotwatch.kafka_event import KafkaBatch, KafkaEventError, KafkaRecord, parse_kafka_event
from cotwatch.ports import CounterStore, DeadLetter, DeadLetterSink
from cotwatch.score_traces import Limits, Outcome, Rejection, ScoreTraces, Skipped, decode_record, identity_key
from cotwatch.tenancy import TenantBinding
from cotwatch.trace import TraceChunk
from cotwatch.tracking import TokenCounter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# AWS Lambda list prices, x86, us-east-1, first pricing tier (aws.amazon.com/lambda/pricing): the cost estimate
# assumes the replay's encoding time is what the scorer function would spend on it.
LAMBDA_USD_PER_GB_SECOND = 0.0000166667
LAMBDA_USD_PER_REQUEST = 0.20 / 1_000_000
DEFAULT_MEMORY_MB = 3008  # the template's ScorerMemorySize default
FAILED_BATCH_PREFIXES = ("aws/lambda/", "failed-batches/")  # Lambda's key, the local poller's


class ReplayError(RuntimeError):
    """The replay cannot start (bad range, unreachable source): a clear message for the CLI."""


@dataclass(frozen=True)
class Unreplayable:
    """A stored record that cannot be re-scored from where it is stored, and what to do instead."""

    where: str
    reason: str  # value_withheld | value_altered | no_payload | unreadable | not_retained
    detail: str


@dataclass
class ReplaySet:
    """The records to re-score, where each came from, and what could not be read back."""

    source: str
    records: list[KafkaRecord] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # record id -> location
    unreplayable: list[Unreplayable] = field(default_factory=list)
    # Coordinates of archived dead letters: a replay that dead-letters them again keeps the archived letter.
    archived: dict[tuple[str, int, int], str] = field(default_factory=dict)

    def add(self, record: KafkaRecord, origin: str) -> None:
        if record.record_id not in self.origins:  # one record may sit in several failure documents
            self.records.append(record)
            self.origins[record.record_id] = origin


def _keys(s3: S3Client, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def _read(s3: S3Client, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _kafka_hint(topic: str, partition: int, first: int, last: int) -> str:
    return (
        f"replay it from Kafka while the topic retains it: cotwatch replay kafka --topic {topic} "
        f"--partition {partition} --from-offset {first} --to-offset {last}"
    )


def record_from_dead_letter(letter: DeadLetter, where: str) -> KafkaRecord | Unreplayable:
    """The record a dead letter was made from, if the letter holds it unchanged."""
    hint = _kafka_hint(letter.topic, letter.partition, letter.offset, letter.offset)
    if letter.raw_text_withheld:
        return Unreplayable(where, "value_withheld", f"no-raw-text letter (digests only); {hint}")
    try:
        value = base64.b64decode(letter.value_b64, validate=True) if letter.value_b64 is not None else None
        key = base64.b64decode(letter.key_b64, validate=True) if letter.key_b64 is not None else None
        headers = tuple((name, base64.b64decode(v, validate=True)) for name, v in letter.headers)
    except (binascii.Error, ValueError) as exc:
        return Unreplayable(where, "unreadable", f"letter holds invalid base64 ({exc}); {hint}")
    # The letter stores the value redacted and cut to 64 KiB: re-scoring an altered text is not a replay.
    digest = None if value is None else "sha256:" + hashlib.sha256(value).hexdigest()
    if digest is not None and letter.value_sha256 is not None and digest != letter.value_sha256:
        return Unreplayable(where, "value_altered", f"the archived value was redacted or cut; {hint}")
    return KafkaRecord(
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        timestamp_ms=letter.timestamp_ms,
        key=key,
        value=value,
        headers=headers,
    )


def dead_letter_set(
    s3: S3Client,
    bucket: str,
    prefix: str = "dead-letters/",
    *,
    topic: str | None = None,
    partition: int | None = None,
    reasons: Iterable[str] = (),
) -> ReplaySet:
    """Archived dead letters under ``prefix`` (optionally of one topic / partition / set of reasons)."""
    wanted = frozenset(reasons)
    under = prefix + (f"{topic}/" if topic else "") + (f"{partition}/" if topic and partition is not None else "")
    found = ReplaySet(source="dead-letters")
    for key in _keys(s3, bucket, under):
        where = f"s3://{bucket}/{key}"
        try:
            letter = DeadLetter.model_validate_json(_read(s3, bucket, key))
        except ValidationError as exc:
            found.unreplayable.append(
                Unreplayable(where, "unreadable", f"not a dead letter: {exc.error_count()} errors")
            )
            continue
        if (wanted and letter.reason not in wanted) or (partition is not None and letter.partition != partition):
            continue
        record = record_from_dead_letter(letter, where)
        if isinstance(record, Unreplayable):
            found.unreplayable.append(record)
            continue
        found.add(record, where)
        found.archived[(record.topic, record.partition, record.offset)] = where
    return found


def records_from_failed_batch(document: Mapping[str, Any], where: str) -> list[KafkaRecord] | Unreplayable:
    """The records of one on-failure document: its ``payload`` (the Kafka event), as Lambda writes it to S3."""
    payload = document.get("payload")
    if isinstance(payload, str):  # Lambda may store the event as a JSON string
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            return Unreplayable(where, "unreadable", f"payload is not JSON: {exc}")
    if not isinstance(payload, Mapping):
        info = document.get("KafkaBatchInfo") or {}
        if {"topic", "partition", "firstOffset", "lastOffset"} <= set(info):
            hint = _kafka_hint(info["topic"], info["partition"], info["firstOffset"], info["lastOffset"])
        else:
            hint = "the document names no offsets"
        return Unreplayable(where, "no_payload", f"the failure document holds no records; {hint}")
    try:
        return parse_kafka_event(payload).records
    except KafkaEventError as exc:
        return Unreplayable(where, "unreadable", f"payload is not a Kafka event: {exc}")


def failed_batch_set(
    s3: S3Client,
    bucket: str,
    prefixes: Sequence[str] = FAILED_BATCH_PREFIXES,
    *,
    topic: str | None = None,
    partition: int | None = None,
) -> ReplaySet:
    """Records of the failed batches the on-failure destination stored (optionally of one topic/partition)."""
    found = ReplaySet(source="failed-batches")
    for prefix in prefixes:
        for key in _keys(s3, bucket, prefix):
            where = f"s3://{bucket}/{key}"
            try:
                document = json.loads(_read(s3, bucket, key))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                found.unreplayable.append(Unreplayable(where, "unreadable", f"not JSON: {exc}"))
                continue
            records = (
                records_from_failed_batch(document, where)
                if isinstance(document, Mapping)
                else Unreplayable(where, "unreadable", "not a JSON object")
            )
            if isinstance(records, Unreplayable):
                found.unreplayable.append(records)
                continue
            for record in records:
                if (topic is None or record.topic == topic) and (partition is None or record.partition == partition):
                    found.add(record, where)
    return found


def kafka_range_set(
    bootstrap_servers: str,
    topic: str,
    partition: int,
    *,
    from_offset: int | None = None,
    to_offset: int | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    consumer_config: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> ReplaySet:
    """Records ``from`` (inclusive) ``to`` (inclusive for an offset, exclusive for a time) of one partition.

    The consumer is assigned the partition (no group, nothing committed): reading a range moves no consumer
    group's offsets, the event source mapping's included."""
    from kafka import KafkaConsumer, TopicPartition

    from cotwatch_local.poller.records import record_from_consumer

    if (from_offset is None) == (from_time is None):
        raise ReplayError("give the start as an offset or a time (one of them)")
    if to_offset is not None and to_time is not None:
        raise ReplayError("give the end as an offset or a time, not both")
    tp = TopicPartition(topic, partition)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
        **dict(consumer_config or {}),
    )
    found = ReplaySet(source="kafka")
    try:
        if partition not in (consumer.partitions_for_topic(topic) or set()):
            raise ReplayError(f"topic {topic!r} has no partition {partition} at {bootstrap_servers}")
        consumer.assign([tp])
        earliest, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
        start = from_offset if from_offset is not None else _offset_at(consumer, tp, from_time, end)
        stop = to_offset + 1 if to_offset is not None else _offset_at(consumer, tp, to_time, end)
        stop = min(stop, end)
        if start < earliest:
            found.unreplayable.append(
                Unreplayable(
                    f"kafka://{topic}/{partition}",
                    "not_retained",
                    f"offsets {start}..{min(stop, earliest) - 1} are no longer on the topic (earliest {earliest})",
                )
            )
            start = earliest
        if start >= stop:
            return found
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=1000, max_records=500)
            for message in polled.get(tp, []):
                if message.offset >= stop:
                    return found
                found.add(record_from_consumer(message), f"kafka://{topic}/{partition}@{message.offset}")
            if consumer.position(tp) >= stop:
                return found
        raise ReplayError(f"read only up to offset {consumer.position(tp)} of {topic}-{partition} in {timeout_s:.0f} s")
    finally:
        consumer.close()


def _offset_at(consumer: Any, tp: Any, moment: datetime | None, end: int) -> int:
    """The first offset at or after ``moment`` (the partition's end when none is, or no moment is given)."""
    if moment is None:
        return end
    found = consumer.offsets_for_times({tp: int(moment.timestamp() * 1000)}).get(tp)
    return end if found is None else int(found.offset)


class Estimate(BaseModel):
    """What a replay would do and cost, from reading its records only."""

    source: str
    records: int
    unreplayable: dict[str, int]
    chunks: int  # chunks that would be scored (claimed ones excluded)
    already_claimed: int  # would be deduplicated: no scoring, no counter
    would_dead_letter: dict[str, int]  # by reason, as the records decode now
    skipped_spans: int
    tokens: int
    token_counter: str
    windows: int
    windows_per_second: float
    rate_source: str
    seconds: float
    invocations: int
    lambda_memory_mb: int
    lambda_gb_seconds: float
    lambda_usd: float

    def render(self) -> str:
        dead = ", ".join(f"{k}: {v}" for k, v in sorted(self.would_dead_letter.items())) or "none"
        bad = ", ".join(f"{k}: {v}" for k, v in sorted(self.unreplayable.items())) or "none"
        gb = self.lambda_memory_mb / 1024
        return "\n".join(
            [
                f"replay dry run ({self.source}): nothing was written",
                f"  records          {self.records} (not replayable from where they are stored: {bad})",
                f"  chunks to score  {self.chunks} (already claimed, would be deduplicated: {self.already_claimed})",
                f"  would dead-letter {sum(self.would_dead_letter.values())} ({dead})",
                f"  tokens           {self.tokens:,} ({self.token_counter})",
                f"  windows          {self.windows:,}",
                f"  rate             {self.windows_per_second:,.1f} windows/s ({self.rate_source})",
                f"  time             ~{self.seconds:,.1f} s of encoding",
                f"  Lambda cost      ~${self.lambda_usd:.6f}: {self.lambda_gb_seconds:,.2f} GB-s "
                f"({self.seconds:,.1f} s x {gb:.2f} GB) x ${LAMBDA_USD_PER_GB_SECOND:.10f}/GB-s + "
                f"{self.invocations} invocations x $0.20/1M (x86 us-east-1 list price; "
                "DynamoDB, S3 and SNS requests not included)",
            ]
        )


def estimate(
    found: ReplaySet,
    *,
    counters: CounterStore,
    count_tokens: TokenCounter,
    token_counter: str,
    windows_per_second: float,
    rate_source: str,
    otlp_topics: Mapping[str, str] | None = None,
    tenants: TenantBinding | None = None,
    limits: Limits | None = None,
    batch_size: int = 100,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Estimate:
    """Decode the records as the scorer would (limits and tenant binding too) and price the scoring.

    Reads the chunk identity claims (strongly consistent reads, no write) to leave out what is done."""
    if windows_per_second <= 0:
        raise ReplayError("windows per second must be positive")
    chunks, dead, skipped = _admitted(found.records, otlp_topics, tenants, limits or Limits())
    claimed = counters.identities([identity_key(c) for c in chunks])
    fresh = [c for c in chunks if identity_key(c) not in claimed]
    windows = sum(len(cut_windows(c.text)) for c in fresh)
    seconds = windows / windows_per_second
    invocations = math.ceil(len(found.records) / batch_size) if found.records else 0
    gb_seconds = seconds * memory_mb / 1024
    return Estimate(
        source=found.source,
        records=len(found.records),
        unreplayable=dict(Counter(u.reason for u in found.unreplayable)),
        chunks=len(fresh),
        already_claimed=len(chunks) - len(fresh),
        would_dead_letter=dict(dead),
        skipped_spans=skipped,
        tokens=sum(count_tokens(c.text) for c in fresh),
        token_counter=token_counter,
        windows=windows,
        windows_per_second=windows_per_second,
        rate_source=rate_source,
        seconds=seconds,
        invocations=invocations,
        lambda_memory_mb=memory_mb,
        lambda_gb_seconds=gb_seconds,
        lambda_usd=gb_seconds * LAMBDA_USD_PER_GB_SECOND + invocations * LAMBDA_USD_PER_REQUEST,
    )


def _admitted(
    records: Sequence[KafkaRecord],
    otlp_topics: Mapping[str, str] | None,
    tenants: TenantBinding | None,
    limits: Limits,
) -> tuple[list[TraceChunk], Counter[str], int]:
    """The chunks the scorer would admit (with the tenant its topic binding gives), rejections by reason."""
    chunks: list[TraceChunk] = []
    dead: Counter[str] = Counter()
    skipped = 0
    for record in records:
        more, rejected, spans = _admitted_items(record, decode_record(record, otlp_topics), tenants, limits)
        chunks += more
        dead += rejected
        skipped += spans
    return chunks, dead, skipped


def _admitted_items(
    record: KafkaRecord,
    items: Sequence[TraceChunk | Rejection | Skipped],
    tenants: TenantBinding | None,
    limits: Limits,
) -> tuple[list[TraceChunk], Counter[str], int]:
    chunks: list[TraceChunk] = []
    dead: Counter[str] = Counter()
    skipped = 0
    for decoded in items:
        if isinstance(decoded, Rejection):
            dead[decoded.reason] += 1
        elif isinstance(decoded, Skipped):
            skipped += sum(decoded.reasons.values())
        elif len(decoded.text) > limits.max_chunk_chars:
            dead["chunk_too_large"] += 1
        elif len(cut_windows(decoded.text)) > limits.max_windows_per_chunk:
            dead["too_many_windows"] += 1
        elif tenants is None:
            chunks.append(decoded)
        else:
            named = decoded.tenant if "tenant" in decoded.model_fields_set else None
            tenant, reason, _ = tenants.resolve(record.topic, named)
            if tenant is None:
                dead[reason] += 1
            else:
                chunks.append(decoded.model_copy(update={"tenant": tenant}))
    return chunks, dead, skipped


def set_aside_unclaimed_done(
    found: ReplaySet,
    *,
    counters: CounterStore,
    dead_lettered: Callable[[KafkaRecord], bool],
    otlp_topics: Mapping[str, str] | None = None,
    tenants: TenantBinding | None = None,
    limits: Limits | None = None,
) -> int:
    """Take out of ``found`` the records processed at their coordinates whose chunks hold no identity claim.

    Such a record was scored before chunk identity claims existed, or dead-lettered with its letter since
    expired: replaying it would count it again, so it is reported (``processed_without_claim``), not
    replayed. A record with a stored dead letter stays in (it never scored). Returns how many were set aside."""
    admitted: dict[str, list[tuple[int, TraceChunk]]] = {}
    for record in found.records:
        admitted[record.record_id] = [
            (part, chunk)
            for part, item in enumerate(decode_record(record, otlp_topics))
            for chunk in _admitted_items(record, [item], tenants, limits or Limits())[0]
        ]
    claimed = counters.identities([identity_key(c) for parts in admitted.values() for _, c in parts])
    kept: list[KafkaRecord] = []
    for record in found.records:
        parts = admitted[record.record_id]
        unclaimed = bool(parts) and not any(identity_key(c) in claimed for _, c in parts)
        markers = [record.record_id if part == 0 else f"{record.record_id}#{part}" for part, _ in parts]
        if unclaimed and any(counters.applied(m) for m in markers) and not dead_lettered(record):
            found.unreplayable.append(
                Unreplayable(
                    found.origins.get(record.record_id, record.record_id),
                    "processed_without_claim",
                    f"{record.record_id} was processed at its coordinates but its chunk has no identity claim "
                    "(scored before claims existed, or its dead letter expired): not replayed, it would count twice",
                )
            )
            found.origins.pop(record.record_id, None)
        else:
            kept.append(record)
    aside = len(found.records) - len(kept)
    found.records = kept
    return aside


def calibrate(embedder: Embedder, found: ReplaySet, sample: int = 64) -> float:
    """Windows per second of the encoder here, timed on up to ``sample`` windows of the records themselves."""
    chunks, _, _ = _admitted(found.records, None, None, Limits())
    texts = [w.text for c in chunks for w in cut_windows(c.text)][:sample]
    if not texts:
        texts = ["Let me think about the request step by step before I answer it."] * 8
    embedder.encode(texts[:1])  # the first call pays for lazy initialisation
    started = time.perf_counter()
    embedder.encode(texts)
    return len(texts) / max(time.perf_counter() - started, 1e-6)


class KeepArchived:
    """Dead-letter sink of a replay: a record that is still poison keeps its archived letter (the value's
    digest of when it first arrived) instead of a new one built from the archived, redacted copy."""

    def __init__(self, inner: DeadLetterSink, archived: Mapping[tuple[str, int, int], str]) -> None:
        self._inner = inner
        self._archived = dict(archived)

    def write(self, letter: DeadLetter) -> str:
        kept = self._archived.get((letter.topic, letter.partition, letter.offset))
        return kept if kept is not None else self._inner.write(letter)


class ReplayedRecord(BaseModel):
    record_id: str
    origin: str
    outcome: str
    reason: str | None = None  # dead letters: why, now
    error: str | None = None  # failed: what raised
    dead_letter: str | None = None


class ReplayResult(BaseModel):
    source: str
    records: list[ReplayedRecord]
    unreplayable: list[dict[str, str]]
    seconds: float

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.records)

    def summary(self) -> str:
        counts = self.outcomes
        parts = " ".join(f"{o.value}={counts.get(o.value, 0)}" for o in Outcome)
        return (
            f"replay: source={self.source} records={len({r.record_id for r in self.records})} {parts} "
            f"unreplayable={len(self.unreplayable)} seconds={self.seconds:.1f}"
        )


def run_replay(
    found: ReplaySet,
    use_case: ScoreTraces,
    *,
    batch_size: int = 100,
    progress: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Re-score the records in (topic, partition, offset) order, ``batch_size`` at a time, in replay mode."""
    ordered = sorted(found.records, key=lambda r: (r.topic, r.partition, r.offset))
    replayed: list[ReplayedRecord] = []
    started = time.perf_counter()
    for start in range(0, len(ordered), batch_size):
        batch = KafkaBatch(event_source="SelfManagedKafka", records=ordered[start : start + batch_size])
        report = use_case.process_batch(batch, replay=True)
        for item in report.records:
            replayed.append(
                ReplayedRecord(
                    record_id=item.effect_id.removeprefix("replay#"),
                    origin=found.origins.get(item.record.record_id, ""),
                    outcome=(item.outcome or Outcome.FAILED).value,
                    reason=item.decoded.reason if isinstance(item.decoded, Rejection) else None,
                    error=item.error,
                    dead_letter=item.dead_letter_location,
                )
            )
        if progress is not None:
            progress(f"replayed {min(start + batch_size, len(ordered))}/{len(ordered)} records")
    return ReplayResult(
        source=found.source,
        records=replayed,
        unreplayable=[{"where": u.where, "reason": u.reason, "detail": u.detail} for u in found.unreplayable],
        seconds=time.perf_counter() - started,
    )


def function_environment(function_name: str) -> dict[str, str]:
    """The deployed scorer's settings, read from its configuration (``lambda:GetFunctionConfiguration``; with
    a KMS key on the environment the caller needs ``kms:Decrypt`` on it)."""
    import boto3

    config = boto3.client("lambda").get_function_configuration(FunctionName=function_name)
    environment = config.get("Environment", {})
    if "Error" in environment:
        raise ReplayError(f"cannot read {function_name}'s environment: {environment['Error']}")
    return dict(environment.get("Variables", {}))


@dataclass
class Replayer:
    """The scorer's settings and parts for a replay, built from the environment the caller set up."""

    settings: Any  # cotwatch.config.ScorerSettings
    s3: Any = None

    @classmethod
    def from_environment(cls) -> Replayer:
        import boto3

        from cotwatch.config import ScorerSettings

        try:
            settings = ScorerSettings()
        except ValidationError as exc:
            raise ReplayError(f"scorer settings: {exc}") from exc
        return cls(settings=settings, s3=boto3.client("s3"))

    def tenants(self) -> TenantBinding:
        return TenantBinding(self.settings.tenant_bindings)

    def limits(self) -> Limits:
        from cotwatch.wiring import scorer_limits

        return scorer_limits(self.settings)

    def counters(self) -> CounterStore:
        from cotwatch.adapters.aws import DynamoCounterStore

        return DynamoCounterStore(self.settings.counters_table, ttl_days=self.settings.counter_ttl_days)

    def token_counter(self) -> tuple[TokenCounter, str]:
        from cotwatch.tracking import model_token_counter, word_count

        try:
            return model_token_counter(self.settings.embedding_model), f"tokenizer of {self.settings.embedding_model}"
        except (OSError, ValueError, ImportError):
            return word_count, "words (the model's tokenizer is not installed here)"

    def dead_lettered(self, record: KafkaRecord) -> bool:
        """Whether the scorer's dead letter of this record is stored (the sink's key)."""
        from botocore.exceptions import ClientError

        key = f"{self.settings.dead_letter_prefix}{record.topic}/{record.partition}/{record.offset:020d}.json"
        try:
            self.s3.head_object(Bucket=self.settings.data_bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def set_aside_unclaimed_done(self, found: ReplaySet) -> int:
        return set_aside_unclaimed_done(
            found,
            counters=self.counters(),
            dead_lettered=self.dead_lettered,
            otlp_topics=self.settings.otlp_topics,
            tenants=self.tenants(),
            limits=self.limits(),
        )

    def embedder(self) -> Embedder:
        from cotwatch.detection.embedding import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(self.settings.embedding_model, backend=self.settings.embedding_backend)

    def use_case(self, found: ReplaySet) -> ScoreTraces:
        from cotwatch.adapters.aws import S3DeadLetterSink
        from cotwatch.wiring import build_score_traces

        sink = S3DeadLetterSink(self.settings.data_bucket, prefix=self.settings.dead_letter_prefix)
        return build_score_traces(self.settings, dead_letters=KeepArchived(sink, found.archived))

    def estimate(
        self, found: ReplaySet, *, windows_per_second: float | None, batch_size: int, memory_mb: int
    ) -> Estimate:
        count, counter_name = self.token_counter()
        if windows_per_second is None:
            rate, source = calibrate(self.embedder(), found), "calibration encode of the records' windows here"
        else:
            rate, source = windows_per_second, "given"
        return estimate(
            found,
            counters=self.counters(),
            count_tokens=count,
            token_counter=counter_name,
            windows_per_second=rate,
            rate_source=source,
            otlp_topics=self.settings.otlp_topics,
            tenants=self.tenants(),
            limits=self.limits(),
            batch_size=batch_size,
            memory_mb=memory_mb,
        )
