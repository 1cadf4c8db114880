"""The local event-source poller without a broker: pure batching / response / retry logic, and the poll loop
driven against an in-memory consumer with a fake clock."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from kafka import OffsetAndMetadata, TopicPartition

from cotwatch.kafka_event import KafkaRecord, parse_kafka_event
from cotwatch_local.invoker import LambdaContextLike
from cotwatch_local.poller import (
    BatchAccumulator,
    BatchVerdict,
    EventSizer,
    EventSourcePoller,
    FailedRecords,
    InMemoryDestination,
    PollerConfig,
    PollerStats,
    RetryTracker,
    S3Destination,
    parse_batch_response,
    record_from_consumer,
)

TOPIC = "cot-traces"
BOOTSTRAP = "broker-a:9092,broker-b:9092"


# ---------------------------------------------------------------------------------------------- fakes


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class FakeMessage:
    """The fields of kafka-python's ConsumerRecord the poller reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_700_000_000_000
    timestamp_type: int = 0
    headers: Sequence[tuple[str, bytes | None]] = ()


@dataclass
class FakeConsumer:
    """An in-memory consumer group member owning every partition of the subscribed topics."""

    logs: dict[tuple[str, int], list[FakeMessage]]
    clock: FakeClock
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    paused_tps: set[tuple[str, int]] = field(default_factory=set)
    commits: list[dict[tuple[str, int], int]] = field(default_factory=list)
    seeks: list[tuple[tuple[str, int], int]] = field(default_factory=list)
    listener: Any = None
    closed: bool = False

    def subscribe(self, topics: Sequence[str] = (), pattern: str | None = None, listener: Any = None) -> None:
        self.listener = listener
        for tp in self.logs:
            if tp[0] in topics:
                self.positions[tp] = self.committed.get(tp, 0)
        if listener is not None:
            listener.on_partitions_assigned([TopicPartition(*tp) for tp in self.positions])

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[Any, Sequence[Any]]:
        room = max_records or 500
        out: dict[TopicPartition, list[FakeMessage]] = {}
        for tp, position in sorted(self.positions.items()):
            if tp in self.paused_tps or room <= 0:
                continue
            chunk = [m for m in self.logs[tp] if m.offset >= position][:room]
            if chunk:
                out[TopicPartition(*tp)] = chunk
                self.positions[tp] = chunk[-1].offset + 1
                room -= len(chunk)
        if not out:
            self.clock.advance(timeout_ms / 1000)  # a real poll blocks for the timeout
        return out

    def commit(self, offsets: Mapping[Any, Any] | None = None) -> None:
        assert offsets is not None
        done = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        assert all(isinstance(meta, OffsetAndMetadata) for meta in offsets.values())
        self.committed.update(done)
        self.commits.append(done)

    def seek(self, partition: Any, offset: int) -> None:
        tp = (partition.topic, partition.partition)
        if tp not in self.positions:
            raise ValueError("Unassigned partition")
        self.positions[tp] = offset
        self.seeks.append((tp, offset))

    def pause(self, *partitions: Any) -> None:
        self.paused_tps.update((p.topic, p.partition) for p in partitions)

    def resume(self, *partitions: Any) -> None:
        self.paused_tps.difference_update((p.topic, p.partition) for p in partitions)

    def assignment(self) -> set[Any]:
        return {TopicPartition(*tp) for tp in self.positions}

    def position(self, partition: Any) -> int | None:
        return self.positions[(partition.topic, partition.partition)]

    def end_offsets(self, partitions: list[Any]) -> Mapping[Any, int]:
        return {tp: self._end((tp.topic, tp.partition)) for tp in partitions}

    def close(self, autocommit: bool = True) -> None:
        self.closed = True

    def _end(self, tp: tuple[str, int]) -> int:
        log = self.logs[tp]
        return log[-1].offset + 1 if log else 0

    def revoke(self, *tps: tuple[str, int]) -> None:
        for tp in tps:
            self.positions.pop(tp, None)
        self.listener.on_partitions_revoked([TopicPartition(*tp) for tp in tps])


def make_logs(counts: Mapping[int, int], topic: str = TOPIC) -> dict[tuple[str, int], list[FakeMessage]]:
    return {
        (topic, p): [
            FakeMessage(
                topic,
                p,
                o,
                key=f"trace-{p}".encode(),
                value=json.dumps({"p": p, "o": o}).encode(),
                headers=[("tenant", b"acme"), ("sig", bytes([0x00, 0x7F, 0x80, 0xFF]))],
            )
            for o in range(n)
        ]
        for p, n in counts.items()
    }


def rec(partition: int, offset: int, *, topic: str = TOPIC, value: bytes = b"{}") -> KafkaRecord:
    return KafkaRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=1,
        timestamp_type="CREATE_TIME",
        key=b"k",
        value=value,
    )


class Recorder:
    """A handler that records every delivery and answers from a script of failures."""

    def __init__(
        self,
        *,
        fail_once: Iterable[tuple[int, int]] = (),
        fail_always: Iterable[tuple[int, int]] = (),
        raise_once_on: Iterable[tuple[int, int]] = (),
        raise_always_on: Iterable[tuple[int, int]] = (),
    ) -> None:
        self.fail_once = set(fail_once)
        self.fail_always = set(fail_always)
        self.raise_once_on = set(raise_once_on)
        self.raise_always_on = set(raise_always_on)
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[tuple[int, int]] = []
        self.contexts: list[LambdaContextLike] = []

    def __call__(self, event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any] | None:
        self.events.append(event)
        self.contexts.append(context)
        batch = parse_kafka_event(event)
        seen = [(r.partition, r.offset) for r in batch.records]
        self.deliveries.extend(seen)
        poison = self.raise_always_on.intersection(seen)
        if poison:
            raise RuntimeError(f"poison record {sorted(poison)}")
        boom = self.raise_once_on.intersection(seen)
        if boom:
            self.raise_once_on -= boom
            raise RuntimeError(f"transient failure on {sorted(boom)}")
        failures = []
        for r in batch.records:
            key = (r.partition, r.offset)
            if key in self.fail_always or key in self.fail_once:
                self.fail_once.discard(key)
                failures.append({"itemIdentifier": r.batch_item_identifier()})
        return {"batchItemFailures": failures}


def make_poller(
    counts: Mapping[int, int],
    handler: Any,
    *,
    destination: Any = None,
    now_ms: int = 1_700_000_000_000,
    **overrides: Any,
) -> tuple[EventSourcePoller, FakeConsumer, FakeClock]:
    clock = FakeClock()
    consumer = FakeConsumer(make_logs(counts), clock)
    settings: dict[str, Any] = {
        "bootstrap_servers": BOOTSTRAP,
        "topics": [TOPIC],
        "function_name": "score_traces",
        "batch_size": 10,
        "batching_window_ms": 100,
        "poll_interval_ms": 50,
        **overrides,
    }
    poller = EventSourcePoller(
        PollerConfig(**settings),
        handler,
        on_failure=destination,
        consumer=consumer,
        clock=clock,
        wall_clock=lambda: now_ms / 1000,
    )
    return poller, consumer, clock


def first_delivery_order(deliveries: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    seen: set[tuple[int, int]] = set()
    order: dict[int, list[int]] = {}
    for d in deliveries:
        if d not in seen:
            seen.add(d)
            order.setdefault(d[0], []).append(d[1])
    return order


# ------------------------------------------------------------------------------------ record conversion


def test_record_from_consumer_keeps_bytes_headers_and_timestamp_type() -> None:
    msg = FakeMessage(
        TOPIC, 3, 42, key=None, value=b"\x00\xff", timestamp_type=1, headers=[("a", b"\x80"), ("n", None)]
    )
    record = record_from_consumer(msg)
    assert (record.topic, record.partition, record.offset) == (TOPIC, 3, 42)
    assert record.key is None and record.value == b"\x00\xff"
    assert record.timestamp_type == "LOG_APPEND_TIME"
    assert record.headers == (("a", b"\x80"), ("n", b""))


def test_unknown_timestamp_becomes_none() -> None:
    record = record_from_consumer(FakeMessage(TOPIC, 0, 0, key=b"k", value=b"v", timestamp=-1))
    assert record.timestamp_ms is None


# ------------------------------------------------------------------------------------------- batching


def test_incremental_size_matches_the_built_event() -> None:
    sizer = EventSizer(bootstrap_servers=BOOTSTRAP)
    acc = BatchAccumulator(batch_size=50, batching_window_ms=0, sizer=sizer)
    records = [rec(p, o, value=b"x" * (o * 7)) for o in range(5) for p in (0, 1, 2)]
    records.append(rec(0, 0, topic="other-topic"))
    for r in records:
        assert acc.add(r, now=0.0)
    batch = acc.take(now=0.0)
    assert batch.records == tuple(records)
    assert batch.size_bytes == sizer.event_size(records)


def test_batch_is_ready_at_batch_size() -> None:
    acc = BatchAccumulator(batch_size=3, batching_window_ms=10_000)
    for o in range(2):
        acc.add(rec(0, o), now=0.0)
    assert not acc.ready(now=0.0)
    acc.add(rec(0, 2), now=0.0)
    acc.add(rec(0, 3), now=0.0)
    assert acc.ready(now=0.0)
    assert [r.offset for r in acc.take(now=0.0).records] == [0, 1, 2]
    assert len(acc) == 1


def test_batch_is_ready_when_window_passes_since_first_record() -> None:
    acc = BatchAccumulator(batch_size=100, batching_window_ms=500)
    assert not acc.ready(now=0.0)  # empty: never ready, whatever the time
    acc.add(rec(0, 0), now=10.0)
    assert acc.time_left_s(10.2) == pytest.approx(0.3)
    assert not acc.ready(now=10.4)
    assert acc.ready(now=10.5)
    acc.take(now=10.5)
    assert acc.time_left_s(11.0) == pytest.approx(0.5)  # the window restarts with the next record


def test_payload_limit_cuts_the_batch_and_leftovers_are_ready() -> None:
    sizer = EventSizer()
    big = [rec(0, o, value=b"v" * 3000) for o in range(5)]
    one = sizer.event_size(big[:1])
    limit = sizer.event_size(big[:2]) + 10  # room for two records, not three
    acc = BatchAccumulator(batch_size=100, batching_window_ms=60_000, max_payload_bytes=limit, sizer=sizer)
    for r in big:
        acc.add(r, now=0.0)
    assert acc.ready(now=0.0)  # overflowing the payload triggers before the window
    first = acc.take(now=0.0)
    assert [r.offset for r in first.records] == [0, 1]
    assert one < first.size_bytes <= limit
    assert acc.ready(now=0.0)
    assert [r.offset for r in acc.take(now=0.0).records] == [2, 3]
    assert not acc.ready(now=0.0)  # one record fits: waits for the window again


def test_a_single_oversized_record_is_returned_alone() -> None:
    acc = BatchAccumulator(batch_size=10, batching_window_ms=0, max_payload_bytes=1024)
    acc.add(rec(0, 0, value=b"x" * 5000), now=0.0)
    acc.add(rec(0, 1), now=0.0)
    batch = acc.take(now=0.0)
    assert [r.offset for r in batch.records] == [0]
    assert batch.size_bytes > 1024


def test_discard_drops_a_partition_and_stale_records_behind_a_seek() -> None:
    acc = BatchAccumulator(batch_size=10, batching_window_ms=1000)
    for o in range(4):
        acc.add(rec(0, o), now=0.0)
        acc.add(rec(1, o), now=0.0)
    assert acc.discard((TOPIC, 0), next_offset=2) == 4
    assert acc.partitions == {(TOPIC, 1)}
    assert not acc.add(rec(0, 1), now=0.0)  # behind the seek target: a stale prefetched record
    assert acc.add(rec(0, 2), now=0.0)
    assert not acc.add(rec(1, 3), now=0.0)  # duplicate


# ------------------------------------------------------------------------------------------ responses

BATCH = [rec(0, 5), rec(0, 6), rec(1, 9)]


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "ok"])
def test_success_responses(response: Any) -> None:
    assert parse_batch_response(response, BATCH).outcome == "success"


def test_partial_response_collects_failed_offsets_per_partition() -> None:
    verdict = parse_batch_response(
        {
            "batchItemFailures": [
                {"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": 6}},
                {"itemIdentifier": {"partition": f"{TOPIC}-1", "offset": 9}},
                {"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": 6}},
            ]
        },
        BATCH,
    )
    assert verdict.outcome == "partial"
    assert verdict.failed == {(TOPIC, 0): frozenset({6}), (TOPIC, 1): frozenset({9})}


def test_topic_names_with_dashes_are_matched_whole() -> None:
    records = [rec(0, 1, topic="a-b-1"), rec(1, 1, topic="a-b")]
    verdict = parse_batch_response(
        {"batchItemFailures": [{"itemIdentifier": {"partition": "a-b-1", "offset": 1}}]}, records
    )
    assert verdict.failed == {("a-b", 1): frozenset({1})}


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ({"itemIdentifier": f"{TOPIC}-0-5"}, "itemIdentifier must be"),
        ({"itemIdentifier": None}, "itemIdentifier must be"),
        ({"itemIdentifier": {}}, "partition must be"),
        ({"itemIdentifier": {"partition": "", "offset": 5}}, "partition must be"),
        ({"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": "5"}}, "offset must be an integer"),
        ({"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": True}}, "offset must be an integer"),
        ({"itemIdentifier": {"partition": f"{TOPIC}-7", "offset": 5}}, "not in this batch"),
        ({"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": 99}}, "not in this batch"),
        ({"messageId": "x"}, "expected an object with 'itemIdentifier'"),
        ("cot-traces-0", "expected an object"),
    ],
)
def test_malformed_identifiers_fail_the_whole_batch(item: Any, needle: str) -> None:
    ok = {"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": 5}}
    verdict = parse_batch_response({"batchItemFailures": [ok, item]}, BATCH)
    assert verdict.outcome == "failure"
    assert len(verdict.malformed) == 1 and needle in verdict.malformed[0]
    assert verdict.malformed[0].startswith("batchItemFailures[1]")


def test_batch_item_failures_must_be_a_list() -> None:
    verdict = parse_batch_response({"batchItemFailures": {"partition": f"{TOPIC}-0", "offset": 5}}, BATCH)
    assert verdict.outcome == "failure" and "must be a list" in (verdict.error or "")


# -------------------------------------------------------------------------------------------- retries


def partial(*failed: tuple[int, int]) -> BatchVerdict:
    out: dict[tuple[str, int], frozenset[int]] = {}
    for p, o in failed:
        out[(TOPIC, p)] = out.get((TOPIC, p), frozenset()) | {o}
    return BatchVerdict(outcome="partial", failed=out)


FAILURE = BatchVerdict(outcome="failure", error="RuntimeError: boom")


def test_success_commits_past_each_partition() -> None:
    actions = RetryTracker(2).settle([rec(0, 3), rec(1, 7), rec(0, 4)], BatchVerdict(outcome="success"))
    assert {(a.partition, a.commit_offset, a.seek_offset) for a in actions} == {(0, 5, None), (1, 8, None)}


def test_partial_failure_commits_below_the_lowest_failed_offset_and_seeks_there() -> None:
    tracker = RetryTracker(2)
    batch = [rec(0, o) for o in range(10, 15)] + [rec(1, 0)]
    actions = {a.partition: a for a in tracker.settle(batch, partial((0, 13), (0, 11)))}
    assert (actions[0].commit_offset, actions[0].seek_offset, actions[0].attempt) == (11, 11, 1)
    assert (actions[1].commit_offset, actions[1].seek_offset) == (1, None)
    assert tracker.attempts((TOPIC, 0)) == 1


def test_retries_are_bounded_then_failed_records_are_dead_lettered() -> None:
    tracker = RetryTracker(2)
    batch = [rec(0, o) for o in range(5, 9)]
    for attempt in (1, 2):
        (action,) = tracker.settle(batch, partial((0, 5), (0, 7)))
        assert (action.attempt, action.seek_offset, action.exhausted) == (attempt, 5, False)
    (action,) = tracker.settle(batch, partial((0, 5), (0, 7)))
    assert action.exhausted and action.attempt == 3
    assert [r.offset for r in action.dead_letter] == [5, 7]
    assert (action.commit_offset, action.seek_offset) == (9, None)  # moves past the whole batch
    assert tracker.attempts((TOPIC, 0)) == 0


def test_progress_resets_the_attempt_count() -> None:
    tracker = RetryTracker(1)
    (a,) = tracker.settle([rec(0, 5), rec(0, 6), rec(0, 7)], partial((0, 5)))
    assert a.attempt == 1
    (a,) = tracker.settle([rec(0, 5), rec(0, 6), rec(0, 7)], partial((0, 7)))  # 5 and 6 made it
    assert (a.attempt, a.commit_offset, a.exhausted) == (1, 7, False)
    (a,) = tracker.settle([rec(0, 7)], partial((0, 7)))
    assert a.exhausted and [r.offset for r in a.dead_letter] == [7]


def test_whole_batch_failure_dead_letters_every_record_of_the_partition() -> None:
    tracker = RetryTracker(0)
    actions = tracker.settle([rec(0, 1), rec(0, 2), rec(1, 4)], FAILURE)
    assert all(a.exhausted for a in actions)
    assert {a.partition: [r.offset for r in a.dead_letter] for a in actions} == {0: [1, 2], 1: [4]}


def test_gap_after_the_seek_target_counts_as_the_same_position() -> None:
    tracker = RetryTracker(5)
    tracker.settle([rec(0, 10), rec(0, 12)], FAILURE)  # position 10
    (a,) = tracker.settle([rec(0, 12)], FAILURE)  # offset 10/11 vanished (compaction): still stuck
    assert a.attempt == 2 and a.seek_offset == 12


def test_unlimited_retries_never_give_up() -> None:
    tracker = RetryTracker(-1)
    for _ in range(50):
        (a,) = tracker.settle([rec(0, 0)], FAILURE)
    assert not a.exhausted and a.attempt == 50


# ------------------------------------------------------------------------------------ the poll loop


def test_events_have_the_self_managed_kafka_shape() -> None:
    handler = Recorder()
    poller, consumer, _ = make_poller({0: 3, 1: 2}, handler)
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.drained
    event = handler.events[0]
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == BOOTSTRAP
    assert "eventSourceArn" not in event
    assert list(event["records"]) == [f"{TOPIC}-0", f"{TOPIC}-1"]
    first = event["records"][f"{TOPIC}-0"][0]
    assert first["topic"] == TOPIC and first["partition"] == 0 and first["offset"] == 0
    assert base64.b64decode(first["key"]) == b"trace-0"
    assert json.loads(base64.b64decode(first["value"])) == {"p": 0, "o": 0}
    assert first["timestampType"] == "CREATE_TIME" and first["timestamp"] == 1_700_000_000_000
    assert first["headers"] == [{"tenant": list(b"acme")}, {"sig": [0, 127, -128, -1]}]
    assert consumer.committed == {(TOPIC, 0): 3, (TOPIC, 1): 2}
    assert handler.contexts[0].function_name == "score_traces"
    assert handler.contexts[0].get_remaining_time_in_millis() > 0


def test_batches_respect_batch_size_and_partition_order() -> None:
    handler = Recorder()
    poller, consumer, _ = make_poller({0: 25, 1: 7}, handler, batch_size=10)
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.drained and stats.batches == len(handler.events)
    assert all(sum(len(v) for v in e["records"].values()) <= 10 for e in handler.events)
    assert first_delivery_order(handler.deliveries) == {0: list(range(25)), 1: list(range(7))}
    assert stats.records_delivered == stats.records_succeeded == 32
    assert consumer.committed == {(TOPIC, 0): 25, (TOPIC, 1): 7}
    assert stats.committed == {f"{TOPIC}-0": 25, f"{TOPIC}-1": 7}


def test_partial_failures_are_redelivered_and_the_poison_record_dead_lettered() -> None:
    handler = Recorder(fail_once=[(0, 4), (1, 2)], fail_always=[(0, 8)])
    dlq = InMemoryDestination()
    poller, consumer, _ = make_poller({0: 12, 1: 6}, handler, destination=dlq, batch_size=5)
    stats = poller.run_until_drained(idle_timeout_s=1)

    assert stats.drained
    assert handler.deliveries.count((0, 4)) == 2 and handler.deliveries.count((1, 2)) == 2
    assert handler.deliveries.count((0, 8)) == 3  # first attempt + maximum_retry_attempts (2)
    assert [(r.partition, r.offset) for r in dlq.records] == [(0, 8)]
    (failure,) = dlq.failures
    assert failure.condition == "RetryAttemptsExhausted" and failure.attempts == 3
    assert first_delivery_order(handler.deliveries) == {0: list(range(12)), 1: list(range(6))}
    assert consumer.committed == {(TOPIC, 0): 12, (TOPIC, 1): 6}
    # Committed offsets never go backwards and never pass a record that still has to be retried.
    for tp in consumer.committed:
        history = [c[tp] for c in consumer.commits if tp in c]
        assert history == sorted(history)
    assert ((TOPIC, 0), 4) in consumer.seeks and ((TOPIC, 1), 2) in consumer.seeks
    assert stats.sent_to_destination == 1 and stats.retries == 4 and stats.partial_responses >= 4


def test_a_raised_exception_retries_the_whole_batch() -> None:
    handler = Recorder(raise_once_on=[(0, 1)])
    poller, consumer, _ = make_poller({0: 3, 1: 3}, handler)
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.failed_invocations == 1
    assert handler.deliveries.count((1, 0)) == 2  # other partitions of the failed batch too
    assert stats.records_delivered == 12 and stats.records_succeeded == 6
    assert consumer.committed == {(TOPIC, 0): 3, (TOPIC, 1): 3}


def test_malformed_identifier_is_logged_and_treated_as_whole_batch_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": f"{TOPIC}-0-1"}]}
        return {"batchItemFailures": []}

    poller, consumer, _ = make_poller({0: 3}, handler)
    with caplog.at_level(logging.ERROR, logger="cotwatch_local.poller"):
        stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.malformed_responses == 1 and len(calls) == 2
    assert any("malformed partial batch response" in r.getMessage() for r in caplog.records)
    assert consumer.committed == {(TOPIC, 0): 3}


def test_without_a_destination_exhausted_records_are_skipped() -> None:
    handler = Recorder(fail_always=[(0, 1)])
    poller, consumer, _ = make_poller({0: 3}, handler, maximum_retry_attempts=0)
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.discarded == 1 and stats.sent_to_destination == 0
    assert handler.deliveries.count((0, 1)) == 1
    assert consumer.committed == {(TOPIC, 0): 3}


def test_a_record_too_big_for_any_invocation_goes_straight_to_the_destination() -> None:
    handler = Recorder()
    dlq = InMemoryDestination()
    poller, consumer, _ = make_poller({0: 3}, handler, destination=dlq, max_payload_bytes=1024)
    consumer.logs[(TOPIC, 0)][1] = FakeMessage(TOPIC, 0, 1, key=b"k", value=b"x" * 4000)
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert (0, 1) not in handler.deliveries
    assert [f.condition for f in dlq.failures] == ["PayloadTooLarge"]
    assert consumer.committed == {(TOPIC, 0): 3} and stats.sent_to_destination == 1


def test_retry_backoff_pauses_only_the_failing_partition() -> None:
    handler = Recorder(fail_once=[(0, 0)])
    poller, consumer, clock = make_poller({0: 2, 1: 4}, handler, batch_size=2, retry_backoff_ms=5_000)
    started = clock.now
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.drained and not consumer.paused_tps
    redelivery = [i for i, d in enumerate(handler.deliveries) if d == (0, 0)][1]
    assert handler.deliveries[:redelivery] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert clock.now - started >= 5.0
    assert consumer.committed == {(TOPIC, 0): 2, (TOPIC, 1): 4}


def test_revoked_partitions_drop_their_buffered_records() -> None:
    delivered: list[tuple[int, int]] = []

    def handler(event: dict[str, Any], context: LambdaContextLike) -> None:
        delivered.extend((r.partition, r.offset) for r in parse_kafka_event(event).records)

    poller, consumer, _ = make_poller({0: 4, 1: 4}, handler, batch_size=100, batching_window_ms=10_000)
    poller._step()  # buffers everything; the window keeps it from being invoked
    consumer.revoke((TOPIC, 1))
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.drained
    assert {p for p, _ in delivered} == {0}
    assert (TOPIC, 1) not in consumer.committed


def test_run_forever_returns_after_stop() -> None:
    poller: EventSourcePoller

    def handler(event: dict[str, Any], context: LambdaContextLike) -> None:
        poller.stop()

    poller, consumer, _ = make_poller({0: 30}, handler)
    stats = poller.run_forever()
    assert stats.batches == 1  # the batch in flight completes and is committed, then the loop ends
    assert consumer.committed == {(TOPIC, 0): 10}
    poller.close()
    assert consumer.closed


def test_max_duration_bounds_a_run_that_cannot_drain() -> None:
    poller, _, _ = make_poller({0: 3}, Recorder(fail_always=[(0, 0)]), maximum_retry_attempts=-1)
    stats = poller.run_until_drained(idle_timeout_s=0.5, max_duration_s=30)
    assert not stats.drained and stats.retries > 3


def test_stats_summaries() -> None:
    stats = PollerStats(invocation_ms=[float(v) for v in range(1, 101)])
    assert stats.invocation_ms_mean == pytest.approx(50.5)
    assert stats.invocation_ms_max == 100.0
    assert 94 <= stats.invocation_ms_p95 <= 96
    assert "invocation_ms_p95" in stats.model_dump()


# --------------------------------------------------------------------------------------- destinations


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:  # noqa: N803
        self.objects[(Bucket, Key)] = Body
        return {}


def test_failure_document_carries_coordinates_payload_error_and_attempts() -> None:
    records = (rec(2, 16, value=b"\x00bin"), rec(2, 17))
    failure = FailedRecords(
        function_name="score_traces",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:score_traces",
        condition="RetryAttemptsExhausted",
        topic=TOPIC,
        partition=2,
        attempts=3,
        request_id="req-1",
        error="RuntimeError: boom",
        bootstrap_servers=BOOTSTRAP,
        records=records,
    )
    s3 = FakeS3()
    destination = S3Destination("dlq-bucket", prefix="failed-batches", client=s3)  # type: ignore[arg-type]
    destination(failure)
    assert destination.keys == [f"failed-batches/{TOPIC}/2/16.json"]
    doc = json.loads(s3.objects[("dlq-bucket", f"failed-batches/{TOPIC}/2/16.json")])
    assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert doc["requestContext"]["approximateInvokeCount"] == 3
    assert doc["responseContext"]["functionError"] == "Unhandled"
    assert doc["KafkaBatchInfo"]["offsets"] == [16, 17] and doc["error"] == "RuntimeError: boom"
    assert parse_kafka_event(doc["payload"]).records == list(records)


# ------------------------------------------------------------------- with a powertools handler, in-process

POWERTOOLS_APP = """\
import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

logger = Logger(service="poller-test")
processor = BatchProcessor(event_type=EventType.Kafka)
SEEN = []


def record_handler(record):
    body = json.loads(record.decoded_value)
    SEEN.append((record.partition, record.offset))
    if body.get("o") == 2 and record.partition == 1:
        raise ValueError("poison")


@logger.inject_lambda_context
def lambda_handler(event, context):
    return process_partial_response(event, record_handler, processor, context)
"""


def test_powertools_partial_responses_drive_the_poller_through_the_invoker(tmp_path: Path) -> None:
    from cotwatch_local.invoker import LocalInvoker

    code = tmp_path / "functions" / "pt_consumer"
    code.mkdir(parents=True)
    (code / "app.py").write_text(POWERTOOLS_APP)
    invoker = LocalInvoker(repo_root=tmp_path, environments={"pt_consumer": {"POWERTOOLS_LOG_LEVEL": "ERROR"}})
    dlq = InMemoryDestination()
    clock = FakeClock()
    consumer = FakeConsumer(make_logs({0: 4, 1: 4}), clock)
    config = PollerConfig(bootstrap_servers=BOOTSTRAP, topics=[TOPIC], batch_size=10, batching_window_ms=100)
    poller = EventSourcePoller.for_function(
        config, invoker, "pt_consumer", on_failure=dlq, consumer=consumer, clock=clock
    )
    assert poller.config.function_name == "pt_consumer" and poller.config.function_timeout_s == 3
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert stats.drained and stats.malformed_responses == 0
    assert [(r.partition, r.offset) for r in dlq.records] == [(1, 2)]
    assert consumer.committed == {(TOPIC, 0): 4, (TOPIC, 1): 4}
    seen = invoker.load("pt_consumer").module.SEEN
    assert seen.count((1, 2)) == 3 and seen.count((0, 0)) == 1
    assert invoker.cold_start_ms("pt_consumer") is not None


def poller_with_old_records(
    count: int, old_offsets: Iterable[int]
) -> tuple[EventSourcePoller, FakeConsumer, Recorder, InMemoryDestination]:
    """Partition 0 with ``count`` records, those at ``old_offsets`` two hours old; a one-hour age limit."""
    handler = Recorder()
    dlq = InMemoryDestination()
    poller, consumer, _ = make_poller({0: count}, handler, destination=dlq, maximum_record_age_s=3600)
    now_ms = 1_700_000_000_000  # make_poller's wall clock
    log = consumer.logs[(TOPIC, 0)]
    for i in old_offsets:
        log[i] = replace(log[i], timestamp=now_ms - 7_200_000)
    return poller, consumer, handler, dlq


def test_records_older_than_the_maximum_age_skip_the_function() -> None:
    # Given a partition whose first two records are two hours old and a one-hour maximum record age
    poller, consumer, handler, dlq = poller_with_old_records(4, old_offsets=(0, 1))

    # When the poller drains it
    stats = poller.run_until_drained(idle_timeout_s=1)

    # Then the old records go to the destination without an invocation, the rest are invoked,
    # and the partition is committed past everything
    assert [f.condition for f in dlq.failures] == ["RecordAgeExceeded"]
    assert [r.offset for r in dlq.failures[0].records] == [0, 1]
    assert sorted(o for p, o in handler.deliveries if p == 0) == [2, 3]
    assert consumer.committed == {(TOPIC, 0): 4} and stats.sent_to_destination == 2


def test_an_old_record_behind_a_fresh_one_is_still_invoked() -> None:
    # Given an old record that follows a fresh one (producer clock skew)
    poller, _, handler, dlq = poller_with_old_records(3, old_offsets=(1,))

    poller.run_until_drained(idle_timeout_s=1)

    # Then nothing is skipped: skipping it would commit past records still to be invoked
    assert dlq.failures == [] and sorted(o for _, o in handler.deliveries) == [0, 1, 2]


@pytest.mark.parametrize("age", [0, 59, 604_801])
def test_maximum_record_age_follows_lambdas_range(age: int) -> None:
    with pytest.raises(ValueError, match="maximum_record_age_s"):
        PollerConfig(bootstrap_servers=BOOTSTRAP, topics=[TOPIC], maximum_record_age_s=age)


def test_bisect_isolates_a_poison_record_and_the_rest_of_the_batch_succeeds() -> None:
    # Given a handler that raises whenever record 5 is in its batch, and bisect on function error
    handler = Recorder(raise_always_on=[(0, 5)])
    dlq = InMemoryDestination()
    poller, consumer, _ = make_poller(
        {0: 8}, handler, destination=dlq, bisect_batch_on_function_error=True, maximum_retry_attempts=1
    )

    # When the poller drains the partition
    stats = poller.run_until_drained(idle_timeout_s=1)

    # Then only the poison record reaches the destination, every other record was handled in an
    # invocation that succeeded, and the partition is committed past the batch
    assert [r.offset for f in dlq.failures for r in f.records] == [5]
    assert stats.bisections > 0 and stats.sent_to_destination == 1
    assert consumer.committed == {(TOPIC, 0): 8}
    assert {(0, o) for o in range(8) if o != 5} <= set(handler.deliveries)


def test_without_bisect_a_poison_record_takes_its_whole_batch_to_the_destination() -> None:
    handler = Recorder(raise_always_on=[(0, 5)])
    dlq = InMemoryDestination()
    poller, consumer, _ = make_poller({0: 8}, handler, destination=dlq, maximum_retry_attempts=1)
    stats = poller.run_until_drained(idle_timeout_s=1)
    assert sorted(r.offset for f in dlq.failures for r in f.records) == list(range(8))
    assert stats.bisections == 0 and consumer.committed == {(TOPIC, 0): 8}
