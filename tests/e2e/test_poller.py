"""The local event-source poller against the real Kafka broker (and, for the S3 destination, moto)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cotwatch.kafka_event import parse_kafka_event
from cotwatch_local.cloudformation import create_kafka_topic
from cotwatch_local.invoker import LambdaContextLike
from cotwatch_local.poller import EventSourcePoller, InMemoryDestination, PollerConfig, S3Destination

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PARTITIONS = 3
PER_PARTITION = 40


def new_topic(bootstrap: str, partitions: int) -> str:
    topic = f"poller-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(bootstrap, topic, partitions)
    return topic


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for p in range(partitions):
            for i in range(per_partition):
                producer.send(
                    topic,
                    key=f"trace-{p}".encode(),
                    value=json.dumps({"trace_id": f"trace-{p}", "seq": i}).encode(),
                    partition=p,
                    headers=[("tenant", b"acme"), ("sig", b"\x80\xff")],
                )
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close(autocommit=False)


@dataclass
class Chunk:
    """One partition's slice of one invocation, and what the handler answered for it."""

    partition: int
    offsets: list[int]
    failed: set[int]


@dataclass
class ScriptedHandler:
    """Fails chosen offsets once or always (partial batch responses), or raises once, and records it all."""

    fail_once: set[tuple[int, int]] = field(default_factory=set)
    fail_always: set[tuple[int, int]] = field(default_factory=set)
    raise_once_on: set[tuple[int, int]] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def deliveries(self) -> list[tuple[int, int]]:
        return [(c.partition, o) for c in self.chunks for o in c.offsets]

    def __call__(self, event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        self.events.append(event)
        batch = parse_kafka_event(event)
        coords = {(r.partition, r.offset) for r in batch.records}
        raising = self.raise_once_on & coords
        failed: set[tuple[int, int]] = set()
        if raising:
            self.raise_once_on -= raising
            failed = coords
        else:
            for coord in sorted(coords):
                if coord in self.fail_always or coord in self.fail_once:
                    self.fail_once.discard(coord)
                    failed.add(coord)
        for key, items in event["records"].items():
            partition = int(key.rsplit("-", 1)[1])
            offsets = [item["offset"] for item in items]
            self.chunks.append(Chunk(partition, offsets, {o for p, o in failed if p == partition}))
        if raising:
            raise RuntimeError(f"transient failure near {sorted(raising)}")
        return {
            "batchItemFailures": [
                {"itemIdentifier": {"partition": f"{batch.records[0].topic}-{p}", "offset": o}}
                for p, o in sorted(failed)
            ]
        }


def assert_redelivered_from_the_failed_offset(chunks: Iterable[Chunk], max_attempts: int) -> None:
    """Per partition: each invocation starts where the previous one left off, or - after a failure - at the
    lowest failed offset, until the attempts at that position are used up."""
    previous: dict[int, Chunk] = {}
    streak: dict[int, tuple[int, int]] = {}  # partition -> (failing position, consecutive failures)
    for chunk in chunks:
        offsets = chunk.offsets
        assert offsets == list(range(offsets[0], offsets[-1] + 1)), f"gap or disorder in {chunk}"
        before = previous.get(chunk.partition)
        if before is None:
            expected = 0
        elif before.failed and streak[chunk.partition][1] < max_attempts:
            expected = min(before.failed)
        else:
            expected = before.offsets[-1] + 1
        assert offsets[0] == expected, f"partition {chunk.partition} resumed at {offsets[0]}, not {expected}"
        if chunk.failed:
            position, count = streak.get(chunk.partition, (-1, 0))
            low = min(chunk.failed)
            streak[chunk.partition] = (low, count + 1 if position == low and offsets[0] == low else 1)
        else:
            streak.pop(chunk.partition, None)
        previous[chunk.partition] = chunk


@pytest.fixture
def group() -> str:
    return f"cotwatch-e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def loaded_topic(kafka_bootstrap: str) -> Iterator[str]:
    topic = new_topic(kafka_bootstrap, PARTITIONS)
    produce(kafka_bootstrap, topic, PARTITIONS, PER_PARTITION)
    yield topic


def test_every_record_is_delivered_failures_are_retried_and_the_poison_record_dead_lettered(
    kafka_bootstrap: str, loaded_topic: str, group: str
) -> None:
    handler = ScriptedHandler(
        fail_once={(0, 5), (1, 17)},
        fail_always={(2, 23)},
        raise_once_on={(1, 30)},
    )
    destination = InMemoryDestination()
    config = PollerConfig(
        bootstrap_servers=kafka_bootstrap,
        topics=[loaded_topic],
        group_id=group,
        function_name="score_traces",
        batch_size=10,
        batching_window_ms=100,
        maximum_retry_attempts=2,
    )
    with EventSourcePoller(config, handler, on_failure=destination) as poller:
        stats = poller.run_until_drained(idle_timeout_s=1.0, max_duration_s=120)

    assert stats.drained
    # Every record arrived, in order per partition (first deliveries), with no gaps inside an invocation.
    deliveries = handler.deliveries
    assert set(deliveries) == {(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
    for p in range(PARTITIONS):
        firsts = list(dict.fromkeys(o for q, o in deliveries if q == p))
        assert firsts == list(range(PER_PARTITION))
    assert_redelivered_from_the_failed_offset(handler.chunks, max_attempts=1 + config.maximum_retry_attempts)
    # Failures were redelivered; the poison record got the first attempt plus two retries, then the DLQ.
    counts = Counter(deliveries)
    assert counts[(0, 5)] >= 2 and counts[(1, 17)] >= 2 and counts[(1, 30)] >= 2
    assert counts[(2, 23)] == 3
    assert [(r.partition, r.offset) for r in destination.records] == [(2, 23)]
    (failure,) = destination.failures
    assert failure.attempts == 3 and failure.condition == "RetryAttemptsExhausted"
    assert json.loads(failure.records[0].value or b"") == {"trace_id": "trace-2", "seq": 23}
    assert stats.sent_to_destination == 1 and stats.failed_invocations == 1
    assert stats.records_delivered == len(deliveries) and stats.retries >= 5
    # The events look like Lambda's self-managed Kafka events.
    event = handler.events[0]
    assert event["eventSource"] == "SelfManagedKafka" and event["bootstrapServers"] == kafka_bootstrap
    item = next(iter(event["records"].values()))[0]
    assert item["headers"] == [{"tenant": [97, 99, 109, 101]}, {"sig": [-128, -1]}]
    assert item["timestampType"] == "CREATE_TIME" and item["timestamp"] > 1_600_000_000_000
    assert base64.b64decode(item["key"]).startswith(b"trace-")
    # Committed offsets end at the log end, in the broker's own records of the group.
    assert committed_offsets(kafka_bootstrap, group, loaded_topic, PARTITIONS) == dict.fromkeys(
        range(PARTITIONS), PER_PARTITION
    )
    assert stats.committed == {f"{loaded_topic}-{p}": PER_PARTITION for p in range(PARTITIONS)}


def test_run_forever_stops_gracefully_and_a_restart_resumes_from_the_commits(
    kafka_bootstrap: str, loaded_topic: str, group: str
) -> None:
    config = PollerConfig(
        bootstrap_servers=kafka_bootstrap, topics=[loaded_topic], group_id=group, batch_size=25, batching_window_ms=50
    )
    first = ScriptedHandler()
    with EventSourcePoller(config, first) as poller:
        runner = threading.Thread(target=poller.run_forever, name="poller-under-test")
        runner.start()
        deadline = time.monotonic() + 90
        while len(set(first.deliveries)) < PARTITIONS * PER_PARTITION and time.monotonic() < deadline:
            time.sleep(0.05)
        poller.stop()
        runner.join(timeout=30)
        assert not runner.is_alive()
    assert len(set(first.deliveries)) == PARTITIONS * PER_PARTITION

    # Everything was committed before the stop took effect: the same group starts at the log end.
    second = ScriptedHandler()
    with EventSourcePoller(config, second) as poller:
        stats = poller.run_until_drained(idle_timeout_s=1.0, max_duration_s=60)
    assert stats.drained and stats.batches == 0 and second.deliveries == []


def test_exhausted_records_land_in_the_s3_on_failure_destination(
    kafka_bootstrap: str, moto_endpoint: str, local_aws_env: dict[str, str], group: str
) -> None:
    topic = new_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, 1, 5)
    s3 = boto3.client("s3")
    bucket = f"poller-dlq-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    config = PollerConfig(
        bootstrap_servers=kafka_bootstrap,
        topics=[topic],
        group_id=group,
        function_name="score_traces",
        batching_window_ms=100,
        maximum_retry_attempts=1,
    )
    handler = ScriptedHandler(fail_always={(0, 2)})
    destination = S3Destination(bucket, client=s3)
    with EventSourcePoller(config, handler, on_failure=destination) as poller:
        stats = poller.run_until_drained(idle_timeout_s=1.0, max_duration_s=60)

    assert stats.drained and stats.sent_to_destination == 1
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="failed-batches/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"failed-batches/{topic}/0/2.json"]
    doc = json.loads(s3.get_object(Bucket=bucket, Key=f"failed-batches/{topic}/0/2.json")["Body"].read())
    assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert doc["requestContext"]["approximateInvokeCount"] == 2
    assert doc["KafkaBatchInfo"]["topic"] == topic and doc["KafkaBatchInfo"]["offsets"] == [2]
    assert doc["response"]["batchItemFailures"] == [{"itemIdentifier": {"partition": f"{topic}-0", "offset": 2}}]
    (record,) = parse_kafka_event(doc["payload"]).records
    assert (record.offset, json.loads(record.value or b"")) == (2, {"trace_id": "trace-0", "seq": 2})
    assert committed_offsets(kafka_bootstrap, group, topic, 1) == {0: 5}
