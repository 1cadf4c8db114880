"""The AWS adapters against a real moto server over HTTP: conditional writes, transactions, filter policies."""

from __future__ import annotations

import json
import uuid
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
from cotwatch.alerts import Alert, alert_id
from cotwatch.detection.models import Disposition, Evidence, TraceState
from cotwatch.ports import AlertWrite, CounterKey, DeadLetter
from cotwatch.trace import Segment
from cotwatch_local.cloudformation import LocalNames

pytestmark = pytest.mark.integration


def _alert(trace_id: str = "t-1", category: str = "cyber", severity: int = 2, tenant: str = "acme") -> Alert:
    return Alert(
        alert_id=alert_id(tenant, trace_id, category),
        tenant=tenant,
        trace_id=trace_id,
        model="reasoner-large",
        category=category,
        severity=severity,
        score=0.83,
        threshold=0.41,
        disposition=Disposition.COMPLIED,
        chunk_seq=0,
        evidence=(
            Evidence(
                chunk_seq=0,
                segment=Segment.REASONING,
                start=10,
                end=90,
                excerpt="…",
                score=0.83,
                exemplar_ids=("cyber:1",),
            ),
        ),
        scorer_version="test",
        calibration_version="cal-test",
        created_at=datetime(2026, 11, 26, 15, 4, tzinfo=UTC),
        source="traces-0@7",
    )


def test_alert_is_created_once_and_escalated_only_upwards(
    local_aws_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    store = DynamoAlertStore(local_aws_names.name("AlertsTable"))
    first = _alert(trace_id="t-esc", severity=2)
    assert store.save(first).write == AlertWrite.CREATED
    assert store.save(first).write == AlertWrite.UNCHANGED
    assert store.save(_alert(trace_id="t-esc", severity=1)).write == AlertWrite.UNCHANGED
    assert store.save(_alert(trace_id="t-esc", severity=4)).write == AlertWrite.ESCALATED
    item = store.get(first.alert_id)
    assert (
        item is not None
        and int(item["severity"]) == 4
        and item["created_at"] == first.model_dump(mode="json")["created_at"]
    )
    assert item["notified"] is False
    store.mark_notified(first)
    stored = store.save(first)
    assert (stored.write, stored.notified, stored.needs_notify) == (AlertWrite.UNCHANGED, True, False)


def test_counters_apply_exactly_once_in_one_transaction(
    local_aws_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    store = DynamoCounterStore(local_aws_names.name("CountersTable"))
    hour = "2026-11-26T15"
    tenant = f"acme-{uuid.uuid4().hex[:6]}"  # the table is shared by the session's other tests
    increments = {
        CounterKey(hour=hour, tenant=tenant, model="m", metric="chunks"): 1,
        CounterKey(hour=hour, tenant=tenant, model="m", metric="flagged_chunks", category="cyber"): 1,
    }
    assert store.apply_once("traces-0@1", increments) is True
    assert store.apply_once("traces-0@1", increments) is False  # redelivery
    assert store.apply_once("traces-0@2", increments) is True
    rows = {(r["metric"], r["category"]): r["count"] for r in store.hour(hour) if r["tenant"] == tenant}
    assert rows == {("chunks", "-"): 2, ("flagged_chunks", "cyber"): 2}


def test_trace_state_round_trips_and_never_goes_backwards(
    local_aws_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    store = DynamoTraceStateStore(local_aws_names.name("TraceStateTable"))
    store.put(TraceState(trace_key="acme#t-s", last_seq=3, tail="end of chunk three", peak={"cyber": 0.4}))
    store.put(TraceState(trace_key="acme#t-s", last_seq=1, tail="stale redelivery"))
    got = store.get_many(["acme#t-s", "acme#missing"])
    assert list(got) == ["acme#t-s"]
    assert got["acme#t-s"].last_seq == 3 and got["acme#t-s"].peak == {"cyber": 0.4}


def test_dead_letters_land_under_a_deterministic_key(
    local_aws_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    bucket = local_aws_names.name("DataBucket")
    sink = S3DeadLetterSink(bucket)
    letter = DeadLetter(
        reason="not_json", detail="value is not JSON", topic="traces", partition=2, offset=41, timestamp_ms=1,
        key_b64=None, value_b64="eA==", headers=[], dead_lettered_at=datetime.now(UTC),
    )  # fmt: skip
    location = sink.write(letter)
    assert location == sink.write(letter)  # idempotent
    key = location.removeprefix(f"s3://{bucket}/")
    body = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (body["reason"], body["offset"], body["partition"]) == ("not_json", 41, 2)


def test_sns_filter_policy_routes_alerts_by_attributes(
    local_aws_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    # Given an SQS queue subscribed with a filter on category and a numeric severity floor
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    topic_arn = local_aws_names.arn("AlertsTopic")
    queue_url = sqs.create_queue(QueueName=f"{local_aws_names.stack_name}-filter-test")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {"category": ["cyber", "bio_chem"], "severity": [{"numeric": [">=", 3]}], "tenant": ["acme"]}
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"FilterPolicy": json.dumps(policy), "RawMessageDelivery": "true"},
    )
    publisher = SnsAlertPublisher(topic_arn)
    # When alerts of several shapes are published
    sent = [
        _alert("t-a", "cyber", 3),
        _alert("t-b", "cyber", 2),
        _alert("t-c", "bio_chem", 4),
        _alert("t-d", "other_harm", 4),
        _alert("t-e", "cyber", 4, tenant="other"),
    ]
    for alert in sent:
        publisher.publish(alert, AlertWrite.CREATED)
    # Then exactly the matching ones arrive, as the alert JSON
    received: list[dict[str, Any]] = []
    for _ in range(5):
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        received += [json.loads(m["Body"]) for m in batch]
    assert sorted(m["trace_id"] for m in received) == ["t-a", "t-c"]
