"""Alerts carry the alert table's TTL attribute (``expires_at``, template.yaml), set from ALERT_TTL_DAYS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cotwatch.adapters.aws import DynamoAlertStore
from cotwatch.alerts import Alert, alert_id
from cotwatch.detection.models import Disposition, Evidence
from cotwatch.ports import AlertWrite
from cotwatch.trace import Segment
from cotwatch_local.cloudformation import LocalNames

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _alert(trace_id: str, severity: int) -> Alert:
    return Alert(
        alert_id=alert_id("acme", trace_id, "cyber"),
        tenant="acme",
        trace_id=trace_id,
        model="reasoner-large",
        category="cyber",
        severity=severity,
        score=0.5 + severity / 10,
        threshold=0.41,
        disposition=Disposition.COMPLIED,
        chunk_seq=0,
        evidence=(
            Evidence(chunk_seq=0, segment=Segment.REASONING, start=0, end=10, excerpt="…", score=0.9, exemplar_ids=()),
        ),
        scorer_version="test",
        calibration_version="cal-test",
        created_at=NOW,
        source="traces-0@1",
    )


def test_alert_ttl_attribute_is_set_on_create_and_moved_on_escalation(
    local_aws_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    # Given an alert store with a 30-day retention whose clock we move
    clock: dict[str, Any] = {"now": NOW}
    store = DynamoAlertStore(local_aws_names.name("AlertsTable"), clock=lambda: clock["now"], ttl_days=30)
    trace_id = f"t-ttl-{uuid.uuid4().hex[:8]}"

    # When an alert is created
    assert store.save(_alert(trace_id, severity=2)).write is AlertWrite.CREATED
    item = store.get(alert_id("acme", trace_id, "cyber"))

    # Then its expires_at is 30 days after its creation, in epoch seconds (what DynamoDB TTL reads)
    assert item is not None
    assert int(item["expires_at"]) == int((NOW + timedelta(days=30)).timestamp())

    # When a later chunk escalates it two days on
    clock["now"] = NOW + timedelta(days=2)
    assert store.save(_alert(trace_id, severity=4)).write is AlertWrite.ESCALATED
    item = store.get(alert_id("acme", trace_id, "cyber"))

    # Then retention counts from the escalation
    assert item is not None
    assert int(item["expires_at"]) == int((NOW + timedelta(days=32)).timestamp())
