"""Triage verdicts into the counters: a resolution and its ``triage_<verdict>`` cells are one write, exact under
retries and races, on the memory adapters and on DynamoDB (moto server)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from cotwatch.adapters.aws import DynamoAlertStore, DynamoCounterStore
from cotwatch.adapters.memory import MemoryAlertStore, MemoryCounterStore
from cotwatch.alerts import Alert, AlertStatus, InvalidTransitionError, Verdict, alert_id, plan_triage
from cotwatch.detection.models import Disposition
from cotwatch.ports import AlertStore
from cotwatch_local.cloudformation import LocalNames

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 7, 15, 20, tzinfo=UTC)


def _alert(tenant: str, trace_id: str, category: str = "cyber") -> Alert:
    return Alert(
        alert_id=alert_id(tenant, trace_id, category),
        tenant=tenant,
        trace_id=trace_id,
        model="reasoner-large",
        category=category,
        severity=2,
        score=0.8,
        threshold=0.4,
        disposition=Disposition.COMPLIED,
        chunk_seq=0,
        evidence=(),
        scorer_version="test",
        calibration_version="cal-test",
        created_at=AT,
        source="traces-0@1",
    )


class Backend:
    def __init__(self, kind: str, names: LocalNames | None) -> None:
        self.tenant = f"acme-{uuid.uuid4().hex[:6]}"  # the moto tables are shared by the session
        if kind == "memory":
            self.memory = MemoryCounterStore()
            self.store: AlertStore = MemoryAlertStore(clock=lambda: AT, counters=self.memory)
            self.dynamo: DynamoCounterStore | None = None
        else:
            assert names is not None
            self.store = DynamoAlertStore(
                names.name("AlertsTable"), clock=lambda: AT, counters_table=names.name("CountersTable")
            )
            self.dynamo = DynamoCounterStore(names.name("CountersTable"))

    def verdicts(self) -> Counter[tuple[str, str]]:
        """(metric, category) -> count over this backend's tenant, the triage cells only."""
        rows: list[dict[str, Any]]
        if self.dynamo is None:
            rows = [{**k.model_dump(), "count": n} for k, n in self.memory.counts.items()]
        else:
            rows = self.dynamo.hour("2026-12-07T15")
        found: Counter[tuple[str, str]] = Counter()
        for row in rows:
            if row["tenant"] == self.tenant and str(row["metric"]).startswith("triage_"):
                found[(str(row["metric"]), str(row["category"]))] += int(row["count"])
        return Counter({k: n for k, n in found.items() if n})


@pytest.fixture(params=["memory", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Backend("memory", None)
    request.getfixturevalue("local_aws_env")
    return Backend("dynamodb", request.getfixturevalue("local_aws_names"))


def test_a_resolution_counts_its_verdict_once_however_often_it_is_retried(backend: Backend) -> None:
    # Given two alerts of a tenant, one of them acknowledged first
    first, second = _alert(backend.tenant, "t-1"), _alert(backend.tenant, "t-2", category="bio_chem")
    backend.store.save(first)
    backend.store.save(second)
    backend.store.acknowledge(second.alert_id, "oncall@example.com")
    # When both are resolved, and each resolution is sent again (a client retry after a lost answer)
    backend.store.resolve(first.alert_id, Verdict.TRUE_POSITIVE, "oncall@example.com")
    backend.store.resolve(second.alert_id, Verdict.FALSE_POSITIVE, "oncall@example.com")
    for alert, verdict in ((first, Verdict.TRUE_POSITIVE), (second, Verdict.FALSE_POSITIVE)):
        with pytest.raises(InvalidTransitionError):
            backend.store.resolve(alert.alert_id, verdict, "oncall@example.com")
    # Then each verdict is counted exactly once, in the hour it was given, under the alert's category
    assert backend.verdicts() == Counter(
        {("triage_true_positive", "cyber"): 1, ("triage_false_positive", "bio_chem"): 1}
    )
    # And acknowledging counted nothing (only resolutions carry a verdict)
    stored = backend.store.get(second.alert_id)
    assert stored is not None and stored["verdict"] == "false_positive"


def test_a_reopened_alert_resolved_again_moves_its_verdict(backend: Backend) -> None:
    # Given an alert resolved as a false positive
    alert = _alert(backend.tenant, "t-3")
    backend.store.save(alert)
    backend.store.resolve(alert.alert_id, Verdict.FALSE_POSITIVE, "oncall@example.com")
    # When a later chunk rises above it (the scorer reopens it) and triage then confirms it
    backend.store.save(alert.model_copy(update={"score": 0.95, "severity": 3}))
    reopened = backend.store.get(alert.alert_id)
    assert reopened is not None and reopened["status"] == "open" and reopened["verdict"] is None
    backend.store.resolve(alert.alert_id, Verdict.TRUE_POSITIVE, "lead@example.com")
    # Then the alert counts once, under its latest verdict: the false positive moved to true positive
    assert backend.verdicts() == Counter({("triage_true_positive", "cyber"): 1})


def test_racing_resolutions_count_one_verdict(local_aws_names: LocalNames, local_aws_env: dict[str, str]) -> None:
    # Given one alert and two on-call engineers with their own store (two API invocations)
    backend = Backend("dynamodb", local_aws_names)
    alert = _alert(backend.tenant, "t-4")
    backend.store.save(alert)
    other = DynamoAlertStore(
        local_aws_names.name("AlertsTable"), clock=lambda: AT, counters_table=local_aws_names.name("CountersTable")
    )
    current = backend.store.get(alert.alert_id)
    assert current is not None
    # When the first resolution commits between the second's read and its write (the version moved on)
    backend.store.resolve(alert.alert_id, Verdict.TRUE_POSITIVE, "a@example.com")
    updates, entry = plan_triage(
        current, alert.alert_id, AlertStatus.RESOLVED, "b@example.com", AT, Verdict.NEEDS_POLICY
    )
    stale = other._resolve_counted(alert.alert_id, current, updates, entry)
    # Then the stale write is refused as a whole: neither its status nor its verdict cell landed
    assert stale is None
    assert backend.verdicts() == Counter({("triage_true_positive", "cyber"): 1})
