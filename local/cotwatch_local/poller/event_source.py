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
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType
from typing import Any, Literal, Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch_local.invoker import Handler, LambdaContextLike, LocalInvoker, LocalLambdaContext
from cotwatch_local.poller.batching import Batch, BatchAccumulator
from cotwatch_local.poller.config import PollerConfig, PollerStats
from cotwatch_local.poller.destinations import FailedRecords, OnFailureDestination
from cotwatch_local.poller.records import (
    MAX_RETRIES_WITH_DESTINATION,
    TP,
    EventSizer,
    partition_key,
    record_from_consumer,
)
from cotwatch_local.poller.responses import BatchVerdict, _raised, parse_batch_response, verdict_for_error
from cotwatch_local.poller.retries import PartitionAction, RetryTracker, leading_expired

logger = logging.getLogger(__name__)


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
