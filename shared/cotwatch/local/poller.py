"""A local stand-in for Lambda's self-managed Kafka event source mapping (ESM).

:class:`EventSourcePoller` consumes topics in a consumer group with a real Kafka client and invokes a handler
in-process with exactly the event Lambda would send, then settles offsets the way the ESM does:

* **Batching** - records accumulate until ``batch_size`` records, the 6 MB invoke payload, or
  ``batching_window_ms`` after the first buffered record, whichever comes first.
* **Success** - each partition's offsets are committed past the batch.
* **Partial batch response** -
  ``{"batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 16}}]}``: per partition,
  offsets are committed up to (excluding) the lowest failed offset and the consumer seeks back there, so
  that record and everything after it is redelivered; partitions without failures move on.
* **Function error** (an exception) or a **malformed response** - the whole batch failed.
* **Retries** - a failing position (partition + lowest failed offset) is retried ``maximum_retry_attempts``
  times; then the records that failed in the last attempt go to the on-failure destination (or are skipped
  when there is none) and the partition moves past the batch.

* **Maximum record age** - with ``maximum_record_age_s`` set, records older than that skip the function and
  go to the on-failure destination (condition ``RecordAgeExceeded``), but only while they are the oldest
  uncommitted records of their partition, so skipping never commits past a record still to be invoked.

* **Bisect on function error** - with ``bisect_batch_on_function_error``, a batch whose invocation raised is
  split in halves, down to single records, to isolate the poison record; the rest of the batch succeeds.

Deviations from the real ESM: the halves are invoked at once rather than redelivered; a single record too
big for any invoke payload is sent to the destination (condition ``PayloadTooLarge``) without an
invocation; null header values become empty arrays (Lambda's byte arrays cannot say null); retries have no
backoff unless ``retry_backoff_ms`` is set.

The decision logic lives in pure classes (:class:`BatchAccumulator`, :func:`parse_batch_response`,
:class:`RetryTracker`) so it is unit-tested without a broker; the poller only moves records between them
and a consumer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch.local import LOCAL_ACCOUNT_ID, LOCAL_REGION
from cotwatch.local.invoker import Handler, LambdaContextLike, LocalInvoker, LocalLambdaContext

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

SELF_MANAGED_KAFKA = "SelfManagedKafka"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invoke payload limit (6 MB)
MAX_RETRIES_WITH_DESTINATION = 10  # Lambda caps "infinite" retries at 10 once a destination is set
_TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}
_COMPACT = (",", ":")

TP = tuple[str, int]


# --------------------------------------------------------------------------------------------- records


class ConsumerRecordLike(Protocol):
    """The fields of kafka-python's ``ConsumerRecord`` the poller reads (no deserializers configured)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def record_from_consumer(msg: ConsumerRecordLike) -> KafkaRecord:
    """Convert a consumed record into the project's :class:`KafkaRecord`."""
    return KafkaRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=msg.timestamp if msg.timestamp is not None and msg.timestamp >= 0 else None,
        timestamp_type=_TIMESTAMP_TYPES.get(msg.timestamp_type, "CREATE_TIME"),
        key=msg.key,
        value=msg.value,
        # Kafka allows null header values; Lambda's byte arrays cannot express null, so they become empty.
        headers=tuple((name, value or b"") for name, value in (msg.headers or [])),
    )


def partition_key(topic: str, partition: int) -> str:
    """The ``"<topic>-<partition>"`` key Lambda uses in ``records`` and in item identifiers."""
    return f"{topic}-{partition}"


def group_by_partition(records: Iterable[KafkaRecord]) -> dict[TP, list[KafkaRecord]]:
    groups: dict[TP, list[KafkaRecord]] = {}
    for rec in records:
        groups.setdefault((rec.topic, rec.partition), []).append(rec)
    return groups


class EventSizer:
    """Exact size of the compact JSON event :func:`build_kafka_event` produces, computed incrementally.

    Recomputing the whole event per added record would be quadratic at batch sizes of 10,000.
    """

    def __init__(self, *, event_source: str = SELF_MANAGED_KAFKA, bootstrap_servers: str = "") -> None:
        self.event_source = event_source
        self.bootstrap_servers = bootstrap_servers
        self.envelope = len(
            json.dumps(
                build_kafka_event([], event_source=event_source, bootstrap_servers=bootstrap_servers),
                separators=_COMPACT,
            )
        )

    def record_size(self, record: KafkaRecord) -> int:
        event = build_kafka_event([record], event_source=self.event_source, bootstrap_servers=self.bootstrap_servers)
        (entries,) = event["records"].values()
        return len(json.dumps(entries[0], separators=_COMPACT))

    @staticmethod
    def group_overhead(topic: str, partition: int) -> int:
        # '"<key>":[' + ']' ; commas between groups/records are added by the caller.
        return len(json.dumps(partition_key(topic, partition))) + 3

    def event_size(self, records: Sequence[KafkaRecord]) -> int:
        """Size of the whole event, the slow way (for checks and tests)."""
        event = build_kafka_event(records, event_source=self.event_source, bootstrap_servers=self.bootstrap_servers)
        return len(json.dumps(event, separators=_COMPACT))


# ------------------------------------------------------------------------------------------ batching


@dataclass(frozen=True)
class Batch:
    records: tuple[KafkaRecord, ...]
    size_bytes: int


@dataclass
class _Pending:
    record: KafkaRecord
    size: int


class BatchAccumulator:
    """Buffers consumed records and cuts batches the way the ESM does.

    A batch is ready when it holds ``batch_size`` records, when the buffer no longer fits the payload limit,
    or when ``batching_window_ms`` has passed since the first buffered record. Records keep their arrival
    order (per-partition order is what matters); stale records behind a seek are dropped.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        batching_window_ms: int,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        sizer: EventSizer | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.window_s = batching_window_ms / 1000
        self.max_payload_bytes = max_payload_bytes
        self.sizer = sizer or EventSizer()
        self._pending: list[_Pending] = []
        self._window_started: float | None = None
        self._next_offset: dict[TP, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def partitions(self) -> set[TP]:
        return {(p.record.topic, p.record.partition) for p in self._pending}

    def add(self, record: KafkaRecord, now: float) -> bool:
        """Buffer a record; False if it was a stale duplicate (behind the expected next offset)."""
        tp = (record.topic, record.partition)
        expected = self._next_offset.get(tp)
        if expected is not None and record.offset < expected:
            return False
        self._next_offset[tp] = record.offset + 1
        self._pending.append(_Pending(record, self.sizer.record_size(record)))
        if self._window_started is None:
            self._window_started = now
        return True

    def time_left_s(self, now: float) -> float:
        if self._window_started is None:
            return self.window_s
        return max(0.0, self._window_started + self.window_s - now)

    def ready(self, now: float) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.batch_size or self.time_left_s(now) <= 0:
            return True
        return self._cut() < len(self._pending)  # the buffer already overflows one invoke payload

    def take(self, now: float) -> Batch:
        """Remove and return the next batch (at least one record, even one that alone is too big)."""
        count = max(1, self._cut())
        taken, self._pending = self._pending[:count], self._pending[count:]
        # Leftovers start a new window now; if they already fill a batch, ready() says so immediately.
        self._window_started = now if self._pending else None
        records = tuple(p.record for p in taken)
        return Batch(records=records, size_bytes=self._size_of(taken))

    def discard(self, tp: TP, next_offset: int | None = None) -> int:
        """Drop buffered records of a partition (after a seek or a revocation); returns how many."""
        before = len(self._pending)
        self._pending = [p for p in self._pending if (p.record.topic, p.record.partition) != tp]
        if next_offset is None:
            self._next_offset.pop(tp, None)
        else:
            self._next_offset[tp] = next_offset
        if not self._pending:
            self._window_started = None
        return before - len(self._pending)

    def _size_of(self, items: Sequence[_Pending]) -> int:
        size = self.sizer.envelope
        counts: dict[TP, int] = {}
        for item in items:
            tp = (item.record.topic, item.record.partition)
            if tp not in counts:
                size += self.sizer.group_overhead(*tp) + (1 if counts else 0)
                counts[tp] = 0
            size += item.size + (1 if counts[tp] else 0)
            counts[tp] += 1
        return size

    def _cut(self) -> int:
        """How many leading buffered records fit one batch (count and payload limits)."""
        size = self.sizer.envelope
        counts: dict[TP, int] = {}
        for index, item in enumerate(self._pending[: self.batch_size]):
            tp = (item.record.topic, item.record.partition)
            extra = item.size + (1 if counts.get(tp) else 0)
            if tp not in counts:
                extra += self.sizer.group_overhead(*tp) + (1 if counts else 0)
            if size + extra > self.max_payload_bytes:
                return index
            size += extra
            counts[tp] = counts.get(tp, 0) + 1
        return min(len(self._pending), self.batch_size)


# ------------------------------------------------------------------------------------------ responses


@dataclass(frozen=True)
class BatchVerdict:
    """How Lambda reads an invocation: all succeeded, some records failed, or the whole batch failed."""

    outcome: Literal["success", "partial", "failure"]
    failed: Mapping[TP, frozenset[int]] = field(default_factory=dict)
    error: str | None = None
    malformed: tuple[str, ...] = ()
    response: Any = None

    @property
    def failed_count(self) -> int:
        return sum(len(offsets) for offsets in self.failed.values())


def verdict_for_error(exc: BaseException) -> BatchVerdict:
    return BatchVerdict(outcome="failure", error=f"{type(exc).__name__}: {exc}")


def _raised(verdict: BatchVerdict) -> bool:
    """A function error: the handler raised (as opposed to returning an unreadable response)."""
    return verdict.outcome == "failure" and not verdict.malformed


def parse_batch_response(response: Any, records: Sequence[KafkaRecord]) -> BatchVerdict:
    """Interpret a handler's return value as a Kafka partial batch response.

    Like Lambda: ``None``, no ``batchItemFailures`` or an empty list is complete success; identifiers that are
    null, empty, of the wrong shape or name a record that is not in the batch make the whole batch a failure.
    """
    if response is None or not isinstance(response, Mapping):
        return BatchVerdict(outcome="success", response=response)
    items = response.get("batchItemFailures")
    if items is None or items == []:
        return BatchVerdict(outcome="success", response=response)
    if not isinstance(items, list):
        shape = f"batchItemFailures must be a list, got {type(items).__name__}"
        return BatchVerdict(outcome="failure", error=shape, malformed=(shape,), response=response)
    in_batch: dict[str, tuple[TP, set[int]]] = {}
    for rec in records:
        tp = (rec.topic, rec.partition)
        in_batch.setdefault(partition_key(*tp), (tp, set()))[1].add(rec.offset)
    failed: dict[TP, set[int]] = {}
    problems: list[str] = []
    for index, item in enumerate(items):
        problem, hit = _check_identifier(item, in_batch)
        if problem:
            problems.append(f"batchItemFailures[{index}]: {problem}")
        elif hit is not None:
            failed.setdefault(hit[0], set()).add(hit[1])
    if problems:
        return BatchVerdict(
            outcome="failure",
            error="malformed partial batch response: " + "; ".join(problems),
            malformed=tuple(problems),
            response=response,
        )
    return BatchVerdict(
        outcome="partial",
        failed={tp: frozenset(offsets) for tp, offsets in failed.items()},
        response=response,
    )


def _check_identifier(
    item: Any, in_batch: Mapping[str, tuple[TP, set[int]]]
) -> tuple[str | None, tuple[TP, int] | None]:
    if not isinstance(item, Mapping) or "itemIdentifier" not in item:
        return f"expected an object with 'itemIdentifier', got {item!r}", None
    ident = item["itemIdentifier"]
    if not isinstance(ident, Mapping):
        return (
            f"itemIdentifier must be {{'partition': '<topic>-<n>', 'offset': <int>}}, got {ident!r}",
            None,
        )
    part, offset = ident.get("partition"), ident.get("offset")
    if not isinstance(part, str) or not part:
        return f"itemIdentifier.partition must be a '<topic>-<partition>' string, got {part!r}", None
    if not isinstance(offset, int) or isinstance(offset, bool):
        return f"itemIdentifier.offset must be an integer, got {offset!r}", None
    if part not in in_batch:
        return f"partition {part!r} is not in this batch", None
    tp, offsets = in_batch[part]
    if offset not in offsets:
        return f"offset {offset} of {part!r} is not in this batch", None
    return None, (tp, offset)


# ---------------------------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class PartitionAction:
    """What to do with one partition after an invocation."""

    topic: str
    partition: int
    commit_offset: int  # the next offset to consume, as Kafka commits it
    seek_offset: int | None = None  # set when the partition must be redelivered from here
    dead_letter: tuple[KafkaRecord, ...] = ()
    attempt: int = 0  # failed invocations so far at this position (0 = the partition succeeded)
    exhausted: bool = False

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


@dataclass
class _Position:
    offset: int
    attempts: int


class RetryTracker:
    """Counts failed attempts per partition position and decides commit / seek / dead-letter.

    ``maximum_retry_attempts`` counts retries after the first attempt (Lambda's meaning); -1 is unlimited.
    """

    def __init__(self, maximum_retry_attempts: int) -> None:
        if maximum_retry_attempts < -1:
            raise ValueError("maximum_retry_attempts must be -1 (unlimited) or >= 0")
        self.maximum_retry_attempts = maximum_retry_attempts
        self._positions: dict[TP, _Position] = {}

    def attempts(self, tp: TP) -> int:
        pos = self._positions.get(tp)
        return pos.attempts if pos else 0

    def forget(self, tp: TP) -> None:
        self._positions.pop(tp, None)

    def settle(self, records: Sequence[KafkaRecord], verdict: BatchVerdict) -> list[PartitionAction]:
        actions: list[PartitionAction] = []
        for tp, recs in group_by_partition(records).items():
            first, last = recs[0].offset, recs[-1].offset
            if verdict.outcome == "failure":
                failed = frozenset(r.offset for r in recs)
            else:
                failed = verdict.failed.get(tp, frozenset())
            if not failed:
                self._positions.pop(tp, None)
                actions.append(PartitionAction(*tp, commit_offset=last + 1))
                continue
            lowest = min(failed)
            previous = self._positions.get(tp)
            # Same position: nothing before the lowest failure was delivered in between (tolerates offset
            # gaps from compaction or transaction markers between the seek target and the first record).
            same = previous is not None and previous.offset <= lowest and first == lowest
            attempt = previous.attempts + 1 if same and previous else 1
            if self.maximum_retry_attempts >= 0 and attempt - 1 >= self.maximum_retry_attempts:
                self._positions.pop(tp, None)
                dead = tuple(r for r in recs if r.offset in failed)
                actions.append(
                    PartitionAction(*tp, commit_offset=last + 1, dead_letter=dead, attempt=attempt, exhausted=True)
                )
            else:
                self._positions[tp] = _Position(offset=lowest, attempts=attempt)
                actions.append(PartitionAction(*tp, commit_offset=lowest, seek_offset=lowest, attempt=attempt))
        return actions


def leading_expired(records: Sequence[KafkaRecord], max_age_s: int, now_ms: int) -> dict[TP, list[KafkaRecord]]:
    """Per partition, the run of records at the front of the batch older than ``max_age_s`` (-1: none)."""
    if max_age_s < 0:
        return {}
    cutoff = now_ms - max_age_s * 1000

    def old(record: KafkaRecord) -> bool:
        return record.timestamp_ms is not None and record.timestamp_ms < cutoff

    runs = {tp: list(itertools.takewhile(old, recs)) for tp, recs in group_by_partition(records).items()}
    return {tp: run for tp, run in runs.items() if run}


# -------------------------------------------------------------------------------- on-failure destinations


class FailedRecords(BaseModel):
    """Records of one partition that the poller gave up on, with what is known about the failure."""

    model_config = ConfigDict(frozen=True)

    function_name: str
    function_arn: str
    condition: Literal["RetryAttemptsExhausted", "RecordAgeExceeded", "PayloadTooLarge"]
    topic: str
    partition: int
    attempts: int
    request_id: str | None = None
    error: str | None = None
    response: Any = None
    event_source: str = SELF_MANAGED_KAFKA
    bootstrap_servers: str = ""
    records: tuple[KafkaRecord, ...]
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def first_offset(self) -> int:
        return self.records[0].offset

    @property
    def last_offset(self) -> int:
        return self.records[-1].offset

    def to_document(self) -> dict[str, Any]:
        """A JSON document shaped like Lambda's on-failure invocation record, with the payload (as for S3)."""
        return {
            "version": "1.0",
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "requestContext": {
                "requestId": self.request_id,
                "functionArn": self.function_arn,
                "condition": self.condition,
                "approximateInvokeCount": self.attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if self.response is None and self.error else None,
            },
            "KafkaBatchInfo": {
                "batchSize": len(self.records),
                "topic": self.topic,
                "partition": self.partition,
                "bootstrapServers": self.bootstrap_servers,
                "firstOffset": self.first_offset,
                "lastOffset": self.last_offset,
                "offsets": [r.offset for r in self.records],
            },
            "error": self.error,
            "response": self.response,
            "payload": build_kafka_event(
                self.records, event_source=self.event_source, bootstrap_servers=self.bootstrap_servers
            ),
        }


class OnFailureDestination(Protocol):
    """Receives records the poller gives up on. Raising stops the poller before it commits past them."""

    def __call__(self, failure: FailedRecords) -> None: ...


class InMemoryDestination:
    """Keeps failures in a list (tests, local runs)."""

    def __init__(self) -> None:
        self.failures: list[FailedRecords] = []

    def __call__(self, failure: FailedRecords) -> None:
        self.failures.append(failure)

    @property
    def records(self) -> list[KafkaRecord]:
        return [rec for failure in self.failures for rec in failure.records]


class S3Destination:
    """Writes one JSON document per failed partition batch, like Lambda's S3 on-failure destination.

    Key: ``<prefix><topic>/<partition>/<first offset>.json``.
    """

    def __init__(self, bucket: str, *, prefix: str = "failed-batches/", client: S3Client | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client = client
        self.keys: list[str] = []

    def key_for(self, failure: FailedRecords) -> str:
        return f"{self.prefix}{failure.topic}/{failure.partition}/{failure.first_offset}.json"

    def __call__(self, failure: FailedRecords) -> None:
        key = self.key_for(failure)
        body = json.dumps(failure.to_document(), default=str).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        self.keys.append(key)
        logger.info("on-failure: wrote %d record(s) to s3://%s/%s", len(failure.records), self.bucket, key)


# ------------------------------------------------------------------------------------- config and stats


class PollerConfig(BaseModel):
    """Event source mapping settings (names follow Lambda's where one exists)."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = Field(min_length=1, description="Comma-separated host:port list.")
    topics: tuple[str, ...] = Field(min_length=1)
    function_name: str = "local-function"
    group_id: str | None = None  # Lambda defaults the consumer group id to the mapping's UUID
    batch_size: int = Field(default=100, ge=1, le=10_000)
    batching_window_ms: int = Field(default=500, ge=0, le=300_000)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=1024)
    maximum_retry_attempts: int = Field(default=2, ge=-1, le=10_000)
    maximum_record_age_s: int = Field(default=-1, ge=-1, le=604_800)  # -1: no limit, as Lambda's default
    bisect_batch_on_function_error: bool = False
    retry_backoff_ms: int = Field(default=0, ge=0)
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    function_timeout_s: int = Field(default=300, ge=1, le=900)
    poll_interval_ms: int = Field(default=200, ge=1)
    event_source: str = SELF_MANAGED_KAFKA
    event_source_arn: str | None = None  # with event_source="aws:kafka", imitates an MSK mapping
    consumer_config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("topics", mode="before")
    @classmethod
    def _one_topic(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("maximum_record_age_s")
    @classmethod
    def _lambda_age_range(cls, value: int) -> int:
        if 0 <= value < 60:
            raise ValueError("maximum_record_age_s is -1 (no limit) or 60..604800, as on Lambda")
        return value

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"cotwatch-local-{self.function_name}"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"


class PollerStats(BaseModel):
    """Counters of one poller since it was created. Record counts are per delivery: a redelivered record
    counts again."""

    batches: int = Field(default=0, description="Invocations.")
    failed_invocations: int = Field(default=0, description="Invocations that raised (function errors).")
    partial_responses: int = Field(default=0, description="Invocations that reported some failed records.")
    malformed_responses: int = Field(default=0, description="Unreadable batchItemFailures: whole batch failed.")
    records_delivered: int = 0
    records_succeeded: int = 0
    records_failed: int = 0
    retries: int = Field(default=0, description="Partition redeliveries (seeks back to a failed offset).")
    bisections: int = Field(default=0, description="Failing batches split in two to isolate a poison record.")
    sent_to_destination: int = Field(default=0, description="Records handed to the on-failure destination.")
    discarded: int = Field(default=0, description="Records skipped after retries with no destination.")
    committed: dict[str, int] = Field(default_factory=dict, description="Last commit per '<topic>-<partition>'.")
    invocation_ms: list[float] = Field(default_factory=list)
    drained: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invocation_ms_mean(self) -> float:
        return statistics.fmean(self.invocation_ms) if self.invocation_ms else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invocation_ms_p95(self) -> float:
        if len(self.invocation_ms) < 2:
            return self.invocation_ms[0] if self.invocation_ms else 0.0
        return statistics.quantiles(self.invocation_ms, n=20, method="inclusive")[-1]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invocation_ms_max(self) -> float:
        return max(self.invocation_ms, default=0.0)


# ---------------------------------------------------------------------------------------------- poller


class ConsumerLike(Protocol):
    """The part of ``kafka.KafkaConsumer`` the poller uses (an in-memory fake implements it in tests)."""

    def subscribe(self, topics: Sequence[str] = ..., pattern: str | None = ..., listener: Any = ...) -> None: ...
    def poll(self, timeout_ms: int = ..., max_records: int | None = ...) -> Mapping[Any, Sequence[Any]]: ...
    def commit(self, offsets: Mapping[Any, Any] | None = ...) -> None: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    def pause(self, *partitions: Any) -> None: ...
    def resume(self, *partitions: Any) -> None: ...
    def assignment(self) -> set[Any]: ...
    def position(self, partition: Any) -> int | None: ...
    def end_offsets(self, partitions: list[Any]) -> Mapping[Any, int]: ...
    def close(self, autocommit: bool = ...) -> None: ...


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's IO thread: only records the change for the poll loop to apply."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revoked: set[TP] = set()

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        with self._lock:
            self._revoked.update((tp.topic, tp.partition) for tp in revoked)

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        logger.info("assigned partitions: %s", sorted(partition_key(tp.topic, tp.partition) for tp in assigned))

    def take_revoked(self) -> set[TP]:
        with self._lock:
            revoked, self._revoked = self._revoked, set()
        return revoked


class EventSourcePoller:
    """Polls Kafka and invokes ``handler`` with Lambda-shaped self-managed Kafka events.

    Use as a context manager (or call :meth:`close`) so the consumer leaves its group.
    """

    def __init__(
        self,
        config: PollerConfig,
        handler: Handler,
        *,
        on_failure: OnFailureDestination | None = None,
        context_factory: Callable[[], LambdaContextLike] | None = None,
        consumer: ConsumerLike | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.handler = handler
        self.on_failure = on_failure
        self.stats = PollerStats()
        self._context_factory = context_factory or self._default_context
        self._clock = clock
        self._wall_clock = wall_clock  # record timestamps are wall-clock milliseconds
        self._consumer = consumer
        self._listener = _RebalanceListener()
        self._subscribed = False
        self._stop = threading.Event()
        self._closed = False
        sizer = EventSizer(event_source=config.event_source, bootstrap_servers=config.bootstrap_servers)
        self._accumulator = BatchAccumulator(
            batch_size=config.batch_size,
            batching_window_ms=config.batching_window_ms,
            max_payload_bytes=config.max_payload_bytes,
            sizer=sizer,
        )
        retries = config.maximum_retry_attempts
        if retries == -1 and on_failure is not None:
            retries = MAX_RETRIES_WITH_DESTINATION
        self._tracker = RetryTracker(retries)
        self._committed: dict[TP, int] = {}
        self._paused_until: dict[TP, float] = {}

    @classmethod
    def for_function(
        cls,
        config: PollerConfig,
        invoker: LocalInvoker,
        function_name: str,
        *,
        on_failure: OnFailureDestination | None = None,
        consumer: ConsumerLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> EventSourcePoller:
        """A poller that invokes a function through a :class:`LocalInvoker`, with that function's context
        (its memory and timeout from the template)."""
        spec = invoker.spec(function_name)
        config = config.model_copy(update={"function_name": spec.name, "function_timeout_s": spec.timeout_s})
        return cls(
            config,
            invoker.handler(function_name),
            on_failure=on_failure,
            context_factory=lambda: invoker.new_context(function_name),
            consumer=consumer,
            clock=clock,
        )

    # -- lifecycle

    def __enter__(self) -> EventSourcePoller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the consumer (given or created): it leaves the group without committing anything unsettled."""
        if self._closed:
            return
        self._closed = True
        if self._consumer is not None:
            self._consumer.close(autocommit=False)

    def stop(self) -> None:
        """Ask a running loop to return after the batch in flight (thread- and signal-safe)."""
        self._stop.set()

    @property
    def consumer(self) -> ConsumerLike:
        if self._closed:
            raise RuntimeError("poller is closed")
        if self._consumer is None:
            self._consumer = self._create_consumer()
        if not self._subscribed:
            self._consumer.subscribe(topics=list(self.config.topics), listener=self._listener)
            self._subscribed = True
        return self._consumer

    def _create_consumer(self) -> ConsumerLike:
        cfg = self.config
        options: dict[str, Any] = {
            "bootstrap_servers": cfg.bootstrap_servers.split(","),
            "group_id": cfg.consumer_group,
            "client_id": f"cotwatch-esm-{cfg.function_name}",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest" if cfg.starting_position == "TRIM_HORIZON" else "latest",
            "max_poll_records": cfg.batch_size,
            # A slow handler must not get the consumer evicted mid-batch.
            "max_poll_interval_ms": max(300_000, (cfg.function_timeout_s + 60) * 1000),
        }
        options.update(cfg.consumer_config)
        consumer: ConsumerLike = KafkaConsumer(**options)
        return consumer

    def _default_context(self) -> LambdaContextLike:
        return LocalLambdaContext(function_name=self.config.function_name, timeout_s=self.config.function_timeout_s)

    # -- loops

    def run_until_drained(self, idle_timeout_s: float = 2.0, *, max_duration_s: float | None = None) -> PollerStats:
        """Process until every assigned partition is consumed and committed to its end offset and
        nothing new has arrived for ``idle_timeout_s``.

        ``stats.drained`` is False if ``max_duration_s`` ran out first.
        """
        self._stop.clear()
        started = last_activity = self._clock()
        self.stats.drained = False
        while not self._stop.is_set():
            active = self._step()
            now = self._clock()
            if max_duration_s is not None and now - started >= max_duration_s:
                logger.warning("run_until_drained: gave up after %.1f s without draining", max_duration_s)
                break
            if active:
                last_activity = now
            elif not self._busy() and now - last_activity >= idle_timeout_s and self._caught_up():
                self.stats.drained = True
                break
        return self.stats

    def run_forever(self) -> PollerStats:
        """Process until :meth:`stop` (or SIGINT/SIGTERM when run on the main thread)."""
        self._stop.clear()
        restore: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[sig] = signal.signal(sig, self._on_signal)
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            for sig, previous in restore.items():
                signal.signal(sig, previous)
        logger.info("poller stopped: %s", self.stats.model_dump(exclude={"invocation_ms"}))
        return self.stats

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        logger.info("signal %d: stopping after the batch in flight", signum)
        self.stop()

    # -- one round

    def _step(self) -> bool:
        """Poll once and invoke if a batch is ready; True if anything arrived or was invoked."""
        consumer = self.consumer
        now = self._clock()
        self._resume_due(now)
        received = False
        if not self._accumulator.ready(now):
            wait_s = (
                self._accumulator.time_left_s(now) if len(self._accumulator) else self.config.poll_interval_ms / 1000
            )
            if self._paused_until:
                wait_s = min(wait_s, max(0.0, min(self._paused_until.values()) - now))
            room = max(1, self.config.batch_size - len(self._accumulator))
            # Rounded up: a 0 ms poll right before a deadline would spin without reaching it.
            polled = consumer.poll(timeout_ms=math.ceil(wait_s * 1000), max_records=room)
            self._apply_revocations()
            arrived = self._clock()
            for messages in polled.values():
                for msg in messages:
                    received = self._accumulator.add(record_from_consumer(msg), arrived) or received
        now = self._clock()
        if self._accumulator.ready(now):
            self._process(self._accumulator.take(now))
            return True
        return received

    def _busy(self) -> bool:
        return bool(len(self._accumulator) or self._paused_until)

    def _caught_up(self) -> bool:
        consumer = self.consumer
        assigned = list(consumer.assignment())
        if not assigned:
            return False
        ends = consumer.end_offsets(assigned)
        positions: dict[TP, int] = {}
        for tp in assigned:
            position = consumer.position(tp)
            if position is None or position < ends.get(tp, 0):
                return False
            positions[(tp.topic, tp.partition)] = position
        # Everything below each position is settled: commit positions that sit past the last record (e.g.
        # after transaction markers) so committed offsets reach the log end.
        self._commit({tp: pos for tp, pos in positions.items() if pos > self._committed.get(tp, -1)})
        return True

    def _process(self, batch: Batch) -> None:
        cfg = self.config
        records = list(batch.records)
        expired = leading_expired(records, cfg.maximum_record_age_s, int(self._wall_clock() * 1000))
        if expired:
            for tp, run in expired.items():
                self._give_up_expired(tp, run)
            skipped = {(r.topic, r.partition, r.offset) for run in expired.values() for r in run}
            records = [r for r in records if (r.topic, r.partition, r.offset) not in skipped]
            if not records:
                return
        if batch.size_bytes > cfg.max_payload_bytes:
            self._give_up_oversized(records[0], batch.size_bytes)
            return
        verdict, request_id = self._invoke(records)
        if cfg.bisect_batch_on_function_error and _raised(verdict) and len(records) > 1:
            verdict = self._bisect(records, verdict)
        actions = self._tracker.settle(records, verdict)
        self._apply(actions, verdict, request_id)

    def _invoke(self, records: Sequence[KafkaRecord]) -> tuple[BatchVerdict, str]:
        """One invocation with these records: how Lambda reads its outcome, and its request id."""
        cfg = self.config
        event = build_kafka_event(
            records,
            event_source=cfg.event_source,
            bootstrap_servers=cfg.bootstrap_servers,
            event_source_arn=cfg.event_source_arn,
        )
        context = self._context_factory()
        started = time.perf_counter()
        try:
            response = self.handler(event, context)
        except Exception as exc:
            verdict = verdict_for_error(exc)
            logger.warning("invocation %s failed (%d records): %s", context.aws_request_id, len(records), verdict.error)
        else:
            verdict = parse_batch_response(response, records)
            if response is not None and not isinstance(response, Mapping):
                logger.warning("handler returned %s, not an object: treated as success", type(response).__name__)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._count(records, verdict, elapsed_ms)
        if verdict.malformed:
            logger.error("whole batch treated as failed - %s", verdict.error)
        return verdict, context.aws_request_id

    def _bisect(self, records: Sequence[KafkaRecord], verdict: BatchVerdict) -> BatchVerdict:
        """Split a batch whose invocation raised into halves, invoke each, and split again the halves that
        raise, down to single records; the records that still fail make a partial verdict for the batch.
        Like Lambda, the splitting is not counted as retries."""
        failed: dict[TP, set[int]] = {}
        pending = [list(records)]
        while pending:
            part = pending.pop(0)
            half = len(part) // 2
            for piece in (part[:half], part[half:]):
                self.stats.bisections += 1
                outcome, _ = self._invoke(piece)
                if _raised(outcome) and len(piece) > 1:
                    pending.append(piece)
                    continue
                if outcome.outcome == "failure":
                    for r in piece:
                        failed.setdefault((r.topic, r.partition), set()).add(r.offset)
                for tp, offsets in outcome.failed.items():
                    failed.setdefault(tp, set()).update(offsets)
        logger.info(
            "bisected a failing batch of %d: %d record(s) still fail", len(records), sum(map(len, failed.values()))
        )
        return BatchVerdict(
            outcome="partial" if failed else "success",
            failed={tp: frozenset(offsets) for tp, offsets in failed.items()},
            error=verdict.error,
        )

    def _count(self, records: Sequence[KafkaRecord], verdict: BatchVerdict, elapsed_ms: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.invocation_ms.append(elapsed_ms)
        stats.records_delivered += len(records)
        if verdict.outcome == "failure":
            stats.failed_invocations += 1 if not verdict.malformed else 0
            stats.malformed_responses += 1 if verdict.malformed else 0
            stats.records_failed += len(records)
        else:
            stats.partial_responses += 1 if verdict.outcome == "partial" else 0
            stats.records_failed += verdict.failed_count
            stats.records_succeeded += len(records) - verdict.failed_count
        logger.debug("batch of %d records in %.1f ms: %s", len(records), elapsed_ms, verdict.outcome)

    def _apply(self, actions: Sequence[PartitionAction], verdict: BatchVerdict, request_id: str) -> None:
        # Dead letters first: if the destination raises, nothing past those records gets committed.
        for action in actions:
            if action.exhausted:
                self._give_up(action, verdict, request_id)
        self._commit({a.tp: a.commit_offset for a in actions if a.commit_offset > self._committed.get(a.tp, -1)})
        now = self._clock()
        for action in actions:
            if action.seek_offset is None:
                continue
            self.stats.retries += 1
            tp = TopicPartition(*action.tp)
            logger.info(
                "retry %d/%s of %s from offset %d",
                action.attempt,
                self._tracker.maximum_retry_attempts if self._tracker.maximum_retry_attempts >= 0 else "inf",
                partition_key(*action.tp),
                action.seek_offset,
            )
            try:
                self.consumer.seek(tp, action.seek_offset)
            except (ValueError, KafkaError) as exc:  # revoked meanwhile: the new owner redelivers
                logger.warning("cannot seek %s: %s", partition_key(*action.tp), exc)
                continue
            self._accumulator.discard(action.tp, next_offset=action.seek_offset)
            if self.config.retry_backoff_ms:
                self.consumer.pause(tp)
                self._paused_until[action.tp] = now + self.config.retry_backoff_ms / 1000

    def _give_up(self, action: PartitionAction, verdict: BatchVerdict, request_id: str | None) -> None:
        key = partition_key(*action.tp)
        if self.on_failure is None:
            self.stats.discarded += len(action.dead_letter)
            logger.warning(
                "retries exhausted at %s offset %d: skipping %d record(s) (no on-failure destination)",
                key,
                action.dead_letter[0].offset,
                len(action.dead_letter),
            )
            return
        failure = FailedRecords(
            function_name=self.config.function_name,
            function_arn=self.config.function_arn,
            condition="RetryAttemptsExhausted",
            topic=action.topic,
            partition=action.partition,
            attempts=action.attempt,
            request_id=request_id,
            error=verdict.error,
            response=_jsonable(verdict.response),
            event_source=self.config.event_source,
            bootstrap_servers=self.config.bootstrap_servers,
            records=action.dead_letter,
        )
        self.on_failure(failure)
        self.stats.sent_to_destination += len(action.dead_letter)
        logger.warning(
            "retries exhausted at %s offset %d after %d attempts: %d record(s) to the on-failure destination",
            key,
            action.dead_letter[0].offset,
            action.attempt,
            len(action.dead_letter),
        )

    def _give_up_expired(self, tp: TP, run: Sequence[KafkaRecord]) -> None:
        logger.warning(
            "%s offsets %d-%d: %d record(s) older than %d s skip the function",
            partition_key(*tp),
            run[0].offset,
            run[-1].offset,
            len(run),
            self.config.maximum_record_age_s,
        )
        self._skip(
            tp,
            run,
            condition="RecordAgeExceeded",
            attempts=self._tracker.attempts(tp),
            error=f"older than maximum_record_age_s={self.config.maximum_record_age_s}",
        )
        self._tracker.forget(tp)
        self._commit({tp: run[-1].offset + 1})

    def _give_up_oversized(self, record: KafkaRecord, size: int) -> None:
        # One record alone exceeds the invoke payload limit: no invocation could ever carry it.
        tp = (record.topic, record.partition)
        logger.error(
            "%s offset %d: a %d-byte event exceeds the %d-byte payload limit; not invoking",
            partition_key(*tp),
            record.offset,
            size,
            self.config.max_payload_bytes,
        )
        error = f"event of {size} bytes exceeds the {self.config.max_payload_bytes}-byte limit"
        self._skip(tp, [record], condition="PayloadTooLarge", attempts=0, error=error)
        self._commit({tp: record.offset + 1})

    def _skip(
        self,
        tp: TP,
        records: Sequence[KafkaRecord],
        *,
        condition: Literal["RecordAgeExceeded", "PayloadTooLarge"],
        attempts: int,
        error: str,
    ) -> None:
        """Records that will never reach the function: to the destination if there is one, else counted."""
        if self.on_failure is None:
            self.stats.discarded += len(records)
            return
        self.on_failure(
            FailedRecords(
                function_name=self.config.function_name,
                function_arn=self.config.function_arn,
                condition=condition,
                topic=tp[0],
                partition=tp[1],
                attempts=attempts,
                error=error,
                event_source=self.config.event_source,
                bootstrap_servers=self.config.bootstrap_servers,
                records=tuple(records),
            )
        )
        self.stats.sent_to_destination += len(records)

    def _commit(self, offsets: Mapping[TP, int]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(
                offsets={TopicPartition(*tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}
            )
        except KafkaError as exc:  # e.g. a rebalance took the partition: its new owner redelivers
            logger.warning("commit of %s failed: %s", _describe(offsets), exc)
            return
        for tp, offset in offsets.items():
            self._committed[tp] = offset
            self.stats.committed[partition_key(*tp)] = offset
        logger.debug("committed %s", _describe(offsets))

    def _resume_due(self, now: float) -> None:
        due = [tp for tp, until in self._paused_until.items() if until <= now]
        for tp in due:
            del self._paused_until[tp]
            with contextlib.suppress(KeyError):  # no longer assigned; a new assignment starts unpaused
                self.consumer.resume(TopicPartition(*tp))

    def _apply_revocations(self) -> None:
        for tp in self._listener.take_revoked():
            dropped = self._accumulator.discard(tp)
            self._tracker.forget(tp)
            self._committed.pop(tp, None)
            self._paused_until.pop(tp, None)
            logger.info("revoked %s (dropped %d buffered records)", partition_key(*tp), dropped)


def _describe(offsets: Mapping[TP, int]) -> str:
    return ", ".join(f"{partition_key(*tp)}@{offset}" for tp, offset in sorted(offsets.items()))


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
