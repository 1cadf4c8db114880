"""Every message the alert publisher sends validates against the shipped contract, with at most five
message attributes of the documented types (on the moto server, through SNS -> SQS raw delivery)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import jsonschema
import pytest

from cotwatch.adapters.aws import DynamoAlertStore, SnsAlertPublisher
from cotwatch.alerts import Alert, Verdict, alert_id
from cotwatch.contract import alert_schema
from cotwatch.detection.models import Disposition, Evidence
from cotwatch.ports import Digest
from cotwatch.trace import Segment

pytestmark = pytest.mark.integration

ATTRIBUTE_TYPES = {"category": "String", "severity": "Number", "tenant": "String", "model": "String", "event": "String"}


def make_alert(tenant: str, trace_id: str, score: float, severity: int) -> Alert:
    return Alert(
        alert_id=alert_id(tenant, trace_id, "cyber"),
        tenant=tenant,
        trace_id=trace_id,
        conversation_id="conv-1",
        model="reasoner-large",
        category="cyber",
        severity=severity,
        score=score,
        threshold=0.41,
        disposition=Disposition.COMPLIED,
        chunk_seq=2,
        evidence=(
            Evidence(chunk_seq=2, segment=Segment.REASONING, start=-4, end=90, excerpt="[REDACTED] …", score=score),
        ),
        scorer_version="test",
        calibration_version="cal-test",
        created_at=datetime(2026, 12, 7, 15, tzinfo=UTC),
        source="traces-0@17",
    )


def drain(sqs: Any, queue_url: str, n: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while len(messages) < n and time.monotonic() < deadline:
        messages += sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
    return messages


def test_every_published_message_validates_and_carries_five_attributes(
    local_aws_env: None, local_aws_names: Any
) -> None:
    # Given a queue subscribed to the alert topic for one tenant, raw delivery
    run = uuid.uuid4().hex[:8]
    tenant = f"tenant-{run}"
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue_url = sqs.create_queue(QueueName=f"contract-{run}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=local_aws_names.arn("AlertsTopic"),
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"FilterPolicy": json.dumps({"tenant": [tenant]}), "RawMessageDelivery": "true"},
    )
    publisher = SnsAlertPublisher(local_aws_names.arn("AlertsTopic"))
    store = DynamoAlertStore(local_aws_names.name("AlertsTable"))

    # When an alert is created, escalated, resolved and reopened through the store, and a digest goes out

    for score, severity in [(0.5, 2), (0.7, 3)]:
        alert = make_alert(tenant, f"t-{run}", score, severity)
        stored = store.save(alert)
        publisher.publish(alert, stored.event)

    store.resolve(alert.alert_id, Verdict.FALSE_POSITIVE, who="ana")
    reopened = make_alert(tenant, f"t-{run}", 0.8, 3)
    publisher.publish(reopened, store.save(reopened).event)
    publisher.publish_digest(
        Digest(
            tenant=tenant, model="reasoner-large", category="cyber", severity=3, count=37,
            alert_ids=tuple(f"{i:032x}" for i in range(37)), window_start=datetime(2026, 12, 7, 15, tzinfo=UTC),
            window_seconds=600,
        )
    )  # fmt: skip

    # Then all four arrive, each a valid message of the contract with the five documented attributes
    messages = drain(sqs, queue_url, 4)
    validator = jsonschema.Draft202012Validator(alert_schema(), format_checker=jsonschema.FormatChecker())
    bodies = [json.loads(m["Body"]) for m in messages]
    for body in bodies:
        validator.validate(body)
    for message in messages:
        attributes = message["MessageAttributes"]
        assert {k: v["DataType"] for k, v in attributes.items()} == ATTRIBUTE_TYPES
    assert sorted(b["event"] for b in bodies) == ["created", "digest", "escalated", "reopened"]
    digest = next(b for b in bodies if b["event"] == "digest")
    assert digest["summary"] == "and 37 more in the last 10 minutes"
    # And a message that breaks the contract is caught by it
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**bodies[0], "event": "unchanged"})
