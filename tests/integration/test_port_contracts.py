"""One contract per port, each test body run against the in-memory fake and the moto-backed AWS adapter.

The fakes are what the unit tests trust, so they must behave as the adapters do: the same assertions run on
both. The moto variants use the session's moto server and the template's tables, bucket and topic.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from cotwatch.adapters.aws import (
    DynamoAlertStore,
    DynamoCounterStore,
    DynamoTraceStateStore,
    S3DeadLetterSink,
    SnsAlertPublisher,
)
from cotwatch.adapters.memory import (
    MemoryAlertStore,
    MemoryCounterStore,
    MemoryDeadLetterSink,
    MemoryPublisher,
    MemoryTraceStateStore,
)
from cotwatch.alerts import Alert, alert_id
from cotwatch.detection.models import Disposition, Evidence, TraceState
from cotwatch.ports import AlertPublisher, AlertStore, AlertWrite, ChunkIdentity, CounterKey, DeadLetter, DeadLetterSink
from cotwatch.trace import Segment

BACKENDS = ["memory", pytest.param("moto", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def moto_names(request: pytest.FixtureRequest) -> Any:
    """The template's resources on the session moto server (only the moto variants start it)."""
    request.getfixturevalue("local_aws_env")
    return request.getfixturevalue("local_aws_names")


@pytest.fixture
def run_id() -> str:
    # Tables, bucket and topic are shared by the session: each test keeps to its own keys.
    return uuid.uuid4().hex[:8]


def make_alert(trace_id: str, severity: int, tenant: str = "acme", category: str = "cyber") -> Alert:
    return Alert(
        alert_id=alert_id(tenant, trace_id, category),
        tenant=tenant,
        trace_id=trace_id,
        model="reasoner-large",
        category=category,
        severity=severity,
        score=0.5 + severity / 10,
        threshold=0.41,
        disposition=Disposition.COMPLIED,
        chunk_seq=severity,
        evidence=(Evidence(chunk_seq=severity, segment=Segment.REASONING, start=0, end=9, excerpt="…", score=0.8),),
        scorer_version="test",
        calibration_version="cal-test",
        created_at=datetime(2026, 11, 26, 15, severity, tzinfo=UTC),
        source=f"traces-0@{severity}",
    )


# ------------------------------------------------------------------------------------------ alert store


@pytest.fixture
def alert_store(backend: str, request: pytest.FixtureRequest) -> AlertStore:
    if backend == "memory":
        return MemoryAlertStore()
    return DynamoAlertStore(moto_names(request).name("AlertsTable"))


def test_alert_store_creates_once_and_escalates_only_upwards(alert_store: AlertStore, run_id: str) -> None:
    # Given a new alert
    first = make_alert(f"t-{run_id}", severity=2)

    # Then it is created once; the same or a lower severity changes nothing; a higher one escalates it
    assert alert_store.save(first).write == AlertWrite.CREATED
    assert alert_store.save(first).write == AlertWrite.UNCHANGED
    assert alert_store.save(make_alert(f"t-{run_id}", severity=1)).write == AlertWrite.UNCHANGED
    assert alert_store.save(make_alert(f"t-{run_id}", severity=4)).write == AlertWrite.ESCALATED
    # And the stored alert has the new severity but keeps its creation time, not yet notified
    item = alert_store.get(first.alert_id)
    assert item is not None
    assert (int(item["severity"]), item["created_at"], item["notified"]) == (
        4,
        first.model_dump(mode="json")["created_at"],
        False,
    )


def test_alert_store_remembers_notification_until_an_escalation(alert_store: AlertStore, run_id: str) -> None:
    alert = make_alert(f"t-{run_id}", severity=2)
    stored = alert_store.save(alert)
    assert stored.needs_notify

    alert_store.mark_notified(alert)

    again = alert_store.save(alert)
    assert (again.write, again.notified, again.needs_notify) == (AlertWrite.UNCHANGED, True, False)
    escalated = alert_store.save(make_alert(f"t-{run_id}", severity=3))
    assert (escalated.write, escalated.needs_notify) == (AlertWrite.ESCALATED, True)


def test_alert_store_knows_nothing_of_an_unknown_alert(alert_store: AlertStore, run_id: str) -> None:
    assert alert_store.get(f"missing-{run_id}") is None


# ------------------------------------------------------------------------------------------- publisher


@dataclass
class PublisherUnderTest:
    publisher: AlertPublisher
    received: Callable[[int], list[tuple[str, str]]]  # (alert_id, event) of at least n messages, or all


@pytest.fixture
def publisher(backend: str, request: pytest.FixtureRequest, run_id: str) -> PublisherUnderTest:
    if backend == "memory":
        memory = MemoryPublisher()
        return PublisherUnderTest(memory, lambda _n: [(a.alert_id, e.value) for a, e in memory.published])
    names = moto_names(request)
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue_url = sqs.create_queue(QueueName=f"{names.stack_name}-contract-{run_id}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=names.arn("AlertsTopic"),
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"FilterPolicy": json.dumps({"tenant": [f"tenant-{run_id}"]}), "RawMessageDelivery": "true"},
    )

    def received(n: int) -> list[tuple[str, str]]:
        messages: list[tuple[str, str]] = []
        deadline = time.monotonic() + 10
        while len(messages) < n and time.monotonic() < deadline:
            batch = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
            ).get("Messages", [])
            messages += [
                (json.loads(m["Body"])["alert_id"], m["MessageAttributes"]["event"]["StringValue"]) for m in batch
            ]
        return messages

    return PublisherUnderTest(SnsAlertPublisher(names.arn("AlertsTopic")), received)


def test_publisher_delivers_each_alert_with_what_happened_to_it(publisher: PublisherUnderTest, run_id: str) -> None:
    created = make_alert(f"t-a-{run_id}", severity=2, tenant=f"tenant-{run_id}")
    escalated = make_alert(f"t-b-{run_id}", severity=4, tenant=f"tenant-{run_id}")

    publisher.publisher.publish(created, AlertWrite.CREATED)
    publisher.publisher.publish(escalated, AlertWrite.ESCALATED)

    assert sorted(publisher.received(2)) == sorted([(created.alert_id, "created"), (escalated.alert_id, "escalated")])


# ------------------------------------------------------------------------------------- trace state store


@pytest.fixture
def state_store(backend: str, request: pytest.FixtureRequest) -> Any:
    if backend == "memory":
        return MemoryTraceStateStore()
    return DynamoTraceStateStore(moto_names(request).name("TraceStateTable"))


def test_trace_state_round_trips(state_store: Any, run_id: str) -> None:
    state = TraceState(trace_key=f"acme#{run_id}", last_seq=3, tail="end of chunk three", peak={"cyber": 0.4})

    state_store.put(state)

    assert state_store.get_many([state.trace_key, f"acme#missing-{run_id}"]) == {state.trace_key: state}


def test_trace_state_never_moves_backwards(state_store: Any, run_id: str) -> None:
    # Given a trace at chunk 3
    newer = TraceState(trace_key=f"acme#{run_id}", last_seq=3, tail="three", peak={"cyber": 0.4})
    state_store.put(newer)

    # When a redelivered older chunk's state is written
    state_store.put(TraceState(trace_key=newer.trace_key, last_seq=1, tail="stale"))

    # Then the newer state stays; the same chunk again is accepted
    assert state_store.get_many([newer.trace_key])[newer.trace_key] == newer
    same = newer.model_copy(update={"tail": "three, again"})
    state_store.put(same)
    assert state_store.get_many([newer.trace_key])[newer.trace_key] == same


def test_trace_state_of_many_traces_reads_past_one_request(state_store: Any, run_id: str) -> None:
    keys = [f"acme#{run_id}-{i}" for i in range(130)]  # DynamoDB's BatchGetItem takes 100 keys
    for i, key in enumerate(keys):
        state_store.put(TraceState(trace_key=key, last_seq=i))

    found = state_store.get_many(keys)

    assert {k: s.last_seq for k, s in found.items()} == {k: i for i, k in enumerate(keys)}


# ----------------------------------------------------------------------------------------- counter store


@dataclass
class CountersUnderTest:
    store: Any
    hour_counts: Callable[[str, str], dict[tuple[str, str], int]]  # (hour, tenant) -> (metric, category) -> n


@pytest.fixture
def counters(backend: str, request: pytest.FixtureRequest) -> CountersUnderTest:
    if backend == "memory":
        memory = MemoryCounterStore()

        def memory_counts(hour: str, tenant: str) -> dict[tuple[str, str], int]:
            return {(k.metric, k.category): n for k, n in memory.counts.items() if (k.hour, k.tenant) == (hour, tenant)}

        return CountersUnderTest(memory, memory_counts)
    dynamo = DynamoCounterStore(moto_names(request).name("CountersTable"))

    def dynamo_counts(hour: str, tenant: str) -> dict[tuple[str, str], int]:
        return {(r["metric"], r["category"]): r["count"] for r in dynamo.hour(hour) if r["tenant"] == tenant}

    return CountersUnderTest(dynamo, dynamo_counts)


def test_counters_apply_each_marker_exactly_once(counters: CountersUnderTest, run_id: str) -> None:
    hour, tenant = "2026-11-26T15", f"acme-{run_id}"
    increments = {
        CounterKey(hour=hour, tenant=tenant, model="m", metric="chunks"): 1,
        CounterKey(hour=hour, tenant=tenant, model="m", metric="flagged_chunks", category="cyber"): 2,
    }

    assert counters.store.apply_once(f"{run_id}@1", increments) is True
    assert counters.store.apply_once(f"{run_id}@1", increments) is False  # a redelivery
    assert counters.store.apply_once(f"{run_id}@2", increments) is True

    assert counters.hour_counts(hour, tenant) == {("chunks", "-"): 2, ("flagged_chunks", "cyber"): 4}


def test_counters_record_a_marker_with_no_increments(counters: CountersUnderTest, run_id: str) -> None:
    assert counters.store.apply_once(f"{run_id}@empty", {}) is True
    assert counters.store.apply_once(f"{run_id}@empty", {}) is False


def test_counters_say_whether_a_marker_was_applied(counters: CountersUnderTest, run_id: str) -> None:
    assert counters.store.applied(f"{run_id}@3") is False

    counters.store.apply_once(f"{run_id}@3", {})

    assert counters.store.applied(f"{run_id}@3") is True
    assert counters.store.applied(f"{run_id}@4") is False


def test_counters_claim_a_chunk_identity_once_in_the_same_transaction(counters: CountersUnderTest, run_id: str) -> None:
    # Given a chunk's identity claimed with its counters by the record at offset 5
    hour, tenant = "2026-11-26T16", f"ident-{run_id}"
    increments = {CounterKey(hour=hour, tenant=tenant, model="m", metric="chunks"): 1}
    claim = ChunkIdentity(key=f"{tenant}#t#0", fingerprint=f"abc@{run_id}@5")
    assert counters.store.apply_once(f"{run_id}@5", increments, claim) is True
    # When the same chunk arrives again at offset 9 (a new marker, the same identity)
    again = counters.store.apply_once(f"{run_id}@9", increments, ChunkIdentity(key=claim.key, fingerprint="x"))
    # Then nothing is written: not the counters, not the new marker, not the new fingerprint
    assert again is False
    assert counters.hour_counts(hour, tenant) == {("chunks", "-"): 1}
    assert counters.store.applied(f"{run_id}@9") is False
    assert counters.store.identities([claim.key, f"{tenant}#t#1"]) == {claim.key: claim.fingerprint}


# ---------------------------------------------------------------------------------------- dead letters


@dataclass
class DeadLettersUnderTest:
    sink: DeadLetterSink
    read: Callable[[str], DeadLetter]


@pytest.fixture
def dead_letters(backend: str, request: pytest.FixtureRequest) -> DeadLettersUnderTest:
    if backend == "memory":
        memory = MemoryDeadLetterSink()
        return DeadLettersUnderTest(memory, lambda location: memory.letters[location])
    bucket = moto_names(request).name("DataBucket")
    s3 = boto3.client("s3")

    def read(location: str) -> DeadLetter:
        key = location.removeprefix(f"s3://{bucket}/")
        return DeadLetter.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    return DeadLettersUnderTest(S3DeadLetterSink(bucket), read)


def test_dead_letters_are_stored_whole_and_idempotently(dead_letters: DeadLettersUnderTest, run_id: str) -> None:
    letter = DeadLetter(
        reason="not_json", detail="value is not JSON", topic=f"traces-{run_id}", partition=2, offset=41,
        timestamp_ms=1, key_b64=None, value_b64="eA==", headers=[("h", "AA=="), ("h", "AQ==")],
        dead_lettered_at=datetime(2026, 11, 26, 15, tzinfo=UTC),
    )  # fmt: skip

    location = dead_letters.sink.write(letter)

    assert dead_letters.sink.write(letter) == location  # same record, same place
    assert dead_letters.read(location) == letter


def test_dead_letters_of_different_records_do_not_collide(dead_letters: DeadLettersUnderTest, run_id: str) -> None:
    def letter(partition: int, offset: int) -> DeadLetter:
        return DeadLetter(
            reason="not_json", detail="-", topic=f"traces-{run_id}", partition=partition, offset=offset,
            timestamp_ms=None, key_b64=None, value_b64=None, headers=[], dead_lettered_at=datetime.now(UTC),
        )  # fmt: skip

    locations = {dead_letters.sink.write(letter(p, o)) for p, o in [(0, 1), (1, 1), (0, 10)]}

    assert len(locations) == 3
