"""The alert lifecycle and the cooldown, one body each on the in-memory fakes and the moto-backed adapters.

Lifecycle: open -> acknowledged -> resolved with a verdict, every change audited in the alert's row; later
chunks raise score, evidence and severity; a resolved alert that rises again reopens. Cooldown: one
notification per (tenant, model, category) and window, the rest counted into a digest, none lost.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from cotwatch.adapters.aws import DynamoAlertStore, DynamoCooldownStore
from cotwatch.adapters.memory import MemoryAlertStore, MemoryCooldownStore, MemoryPublisher
from cotwatch.alerts import Alert, AlertNotFoundError, InvalidTransitionError, Verdict, alert_id
from cotwatch.contract import alert_document, alert_schema
from cotwatch.cooldown import CooldownPublisher
from cotwatch.detection.models import Disposition, Evidence
from cotwatch.ports import AlertStore, AlertWrite, CooldownStore
from cotwatch.trace import Segment

BACKENDS = ["memory", pytest.param("moto", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


def table_name(request: pytest.FixtureRequest, logical_id: str = "AlertsTable") -> str:
    request.getfixturevalue("local_aws_env")
    return str(request.getfixturevalue("local_aws_names").name(logical_id))


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> AlertStore:
    return MemoryAlertStore() if backend == "memory" else DynamoAlertStore(table_name(request))


@pytest.fixture
def cooldown(backend: str, request: pytest.FixtureRequest) -> CooldownStore:
    return MemoryCooldownStore() if backend == "memory" else DynamoCooldownStore(table_name(request, "CountersTable"))


def finding(trace_id: str, score: float, severity: int, tenant: str = "acme", model: str = "m1") -> Alert:
    return Alert(
        alert_id=alert_id(tenant, trace_id, "cyber"),
        tenant=tenant,
        trace_id=trace_id,
        model=model,
        category="cyber",
        severity=severity,
        score=score,
        threshold=0.41,
        disposition=Disposition.COMPLIED,
        chunk_seq=int(score * 100),
        evidence=(
            Evidence(
                chunk_seq=int(score * 100), segment=Segment.REASONING, start=3, end=40, excerpt=f"e{score}", score=score
            ),
        ),
        scorer_version="test",
        calibration_version="cal-test",
        created_at=datetime(2026, 12, 7, 15, tzinfo=UTC),
        source=f"traces-0@{int(score * 100)}",
    )


def actions(item: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["who"], e.get("note")) for e in item["audit"]]


def test_later_chunks_raise_score_and_evidence_silently_and_severity_with_an_escalation(
    store: AlertStore, run_id: str
) -> None:
    # Given an alert created at severity 2
    trace = f"t-{run_id}"
    assert store.save(finding(trace, 0.50, 2)).write == AlertWrite.CREATED
    store.mark_notified(finding(trace, 0.50, 2))

    # When a later chunk scores higher at the same severity, then one crosses into severity 3
    updated = store.save(finding(trace, 0.55, 2))
    redelivered = store.save(finding(trace, 0.55, 2))
    weaker = store.save(finding(trace, 0.52, 2))
    escalated = store.save(finding(trace, 0.70, 3))

    # Then the first only updates score and evidence (no notification owed), redelivery and weaker change nothing
    assert (updated.write, updated.needs_notify) == (AlertWrite.UPDATED, False)
    assert (redelivered.write, redelivered.needs_notify) == (AlertWrite.UNCHANGED, False)
    assert weaker.write == AlertWrite.UNCHANGED
    # And the escalation is owed to subscribers as an escalation
    assert (escalated.write, escalated.needs_notify, escalated.event) == (
        AlertWrite.ESCALATED,
        True,
        AlertWrite.ESCALATED,
    )
    item = store.get(finding(trace, 0.5, 2).alert_id)
    assert item is not None
    assert (float(item["score"]), int(item["severity"]), item["evidence"][0]["excerpt"]) == (0.70, 3, "e0.7")
    assert item["status"] == "open"
    assert [a for a, _, _ in actions(item)] == ["created", "escalated"]


def test_a_crash_before_publishing_leaves_the_event_owed(store: AlertStore, run_id: str) -> None:
    # Given an escalation stored but never published (the attempt died before mark_notified)
    trace = f"t-{run_id}"
    store.save(finding(trace, 0.50, 2))
    store.mark_notified(finding(trace, 0.50, 2))
    store.save(finding(trace, 0.70, 3))

    # When the record is redelivered
    again = store.save(finding(trace, 0.70, 3))

    # Then the escalation is still owed, as an escalation
    assert (again.write, again.needs_notify, again.event) == (AlertWrite.UNCHANGED, True, AlertWrite.ESCALATED)


def test_triage_is_audited_and_a_resolved_alert_that_rises_reopens(store: AlertStore, run_id: str) -> None:
    # Given an open alert
    trace = f"t-{run_id}"
    first = finding(trace, 0.50, 2)
    store.save(first)
    store.mark_notified(first)

    # When it is acknowledged, then resolved as a false positive with a note
    acked = store.acknowledge(first.alert_id, who="ana@example.com", note="looking")
    resolved = store.resolve(first.alert_id, Verdict.FALSE_POSITIVE, who="ana@example.com", note="pentest lab")

    # Then status, verdict and the audit trail say so
    assert acked["status"] == "acknowledged"
    assert (resolved["status"], resolved["verdict"]) == ("resolved", "false_positive")
    assert actions(resolved) == [
        ("created", "cotwatch", None),
        ("acknowledged", "ana@example.com", "looking"),
        ("resolved", "ana@example.com", "pentest lab"),
    ]
    # And a redelivery of the old chunk leaves it resolved
    assert store.save(first).write == AlertWrite.UNCHANGED
    # When a later chunk rises above it
    reopened = store.save(finding(trace, 0.62, 2))
    # Then it reopens, owed to subscribers as 'reopened', its verdict cleared but kept in the audit trail
    assert (reopened.write, reopened.needs_notify, reopened.event) == (AlertWrite.REOPENED, True, AlertWrite.REOPENED)
    item = store.get(first.alert_id)
    assert item is not None
    assert (item["status"], item["verdict"]) == ("open", None)
    assert [a for a, _, _ in actions(item)] == ["created", "acknowledged", "resolved", "reopened"]
    assert item["audit"][2]["verdict"] == "false_positive"
    # And the stored alert is a valid API document of the published contract
    document_schema = {"$defs": alert_schema()["$defs"], "$ref": "#/$defs/alert_document"}
    jsonschema.Draft202012Validator(document_schema, format_checker=jsonschema.FormatChecker()).validate(
        alert_document(item)
    )


def test_triage_refuses_what_the_lifecycle_does_not_allow(store: AlertStore, run_id: str) -> None:
    alert = finding(f"t-{run_id}", 0.5, 2)
    store.save(alert)

    with pytest.raises(AlertNotFoundError, match="no alert"):
        store.acknowledge(f"{run_id}-missing", who="ana")
    store.resolve(alert.alert_id, Verdict.TRUE_POSITIVE, who="ana")
    with pytest.raises(InvalidTransitionError, match="is resolved: it cannot be acknowledged"):
        store.acknowledge(alert.alert_id, who="bo")
    with pytest.raises(InvalidTransitionError, match="is resolved: it cannot be resolved"):
        store.resolve(alert.alert_id, Verdict.NEEDS_POLICY, who="bo")
    item = store.get(alert.alert_id)
    assert item is not None
    assert (item["verdict"], len(item["audit"])) == ("true_positive", 2)  # refused requests leave no trace


def test_cooldown_turns_a_storm_into_one_notification_and_a_digest(cooldown: CooldownStore, run_id: str) -> None:
    # Given a 10-minute cooldown and a storm of 6 alerts on one (tenant, model, category), one on another model
    sink = MemoryPublisher()
    now = [datetime(2026, 12, 7, 15, tzinfo=UTC)]
    publisher = CooldownPublisher(sink, cooldown, window_seconds=600, clock=lambda: now[0])
    tenant = f"acme-{run_id}"
    storm = [finding(f"t{i}-{run_id}", 0.6, 2 + (i == 3), tenant=tenant) for i in range(6)]
    other = finding(f"o-{run_id}", 0.6, 2, tenant=tenant, model="m2")

    # When they are published within the window, with a redelivery of one held back and of the first
    for alert in [*storm, storm[2], storm[0], other]:
        now[0] += timedelta(seconds=10)
        publisher.publish(alert, AlertWrite.CREATED)

    # Then subscribers heard of the first of the storm (twice: its redelivery is let through) and the other model
    assert [a.alert_id for a, _ in sink.published] == [storm[0].alert_id, storm[0].alert_id, other.alert_id]
    assert sink.digests == []
    # When the next alert of the scope comes after the window
    now[0] += timedelta(minutes=11)
    late = finding(f"late-{run_id}", 0.6, 2, tenant=tenant)
    publisher.publish(late, AlertWrite.CREATED)

    # Then a digest of the 5 held back (each once) goes out before it, at their highest severity
    [digest] = sink.digests
    assert (digest.count, digest.severity, digest.tenant, digest.model) == (5, 3, tenant, "m1")
    assert set(digest.alert_ids) == {a.alert_id for a in storm[1:]}
    assert sink.published[-1][0].alert_id == late.alert_id


def test_cooldown_of_zero_publishes_everything(cooldown: CooldownStore, run_id: str) -> None:
    sink = MemoryPublisher()
    publisher = CooldownPublisher(sink, cooldown, window_seconds=0)
    alerts = [finding(f"t{i}-{run_id}", 0.6, 2) for i in range(3)]

    for alert in alerts:
        publisher.publish(alert, AlertWrite.CREATED)

    assert [a.alert_id for a, _ in sink.published] == [a.alert_id for a in alerts]
