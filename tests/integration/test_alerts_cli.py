"""The alerts CLI against functions/alerts_api/app.py served on loopback (as the local stack serves it),
on the moto stack: list, show, ack, resolve, and an SQS subscription receiving exactly its matches."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from cotwatch.adapters.aws import DynamoAlertStore, SnsAlertPublisher
from cotwatch.alerts import Alert, alert_id
from cotwatch.detection.models import Disposition, Evidence
from cotwatch.trace import Segment
from cotwatch_local.api_server import LocalApiServer, unsigned_token
from cotwatch_local.cli import main
from cotwatch_local.cloudformation import function_environment
from cotwatch_local.invoker import LocalInvoker
from cotwatch_local.stack import aws_env

pytestmark = pytest.mark.integration


@pytest.fixture
def api_url(local_aws_env: dict[str, str], local_aws_names: Any, moto_endpoint: str) -> Iterator[str]:
    # The real entry point, loaded as the local stack loads it, with the stack's environment
    invoker = LocalInvoker()
    env = {
        **aws_env(moto_endpoint, local_aws_names.region),
        **function_environment(local_aws_names, "AlertsApiFunction", moto_endpoint),
    }
    invoker.set_environment("AlertsApiFunction", env)
    with LocalApiServer(lambda event: dict(invoker.invoke("AlertsApiFunction", event))) as url:
        yield url


def demo_like_run(names: Any, tenant: str) -> list[Alert]:
    """What the scorer does for each finding: store the alert, publish the event it is owed."""
    store, publisher = DynamoAlertStore(names.name("AlertsTable")), SnsAlertPublisher(names.arn("AlertsTopic"))
    alerts = []
    for n, (category, severity) in enumerate([("cyber", 3), ("cyber", 4), ("cyber", 2), ("bio_chem", 4), ("cyber", 1)]):
        alert = Alert(
            alert_id=alert_id(tenant, f"demo-{n}", category), tenant=tenant, trace_id=f"demo-{n}", model="reasoner",
            category=category, severity=severity, score=0.4 + severity / 10, threshold=0.41,
            disposition=Disposition.COMPLIED, chunk_seq=0,
            evidence=(Evidence(chunk_seq=0, segment=Segment.REASONING, start=0, end=20, excerpt=f"excerpt {n}", score=0.7),),
            scorer_version="test", calibration_version="cal", source=f"traces-0@{n}",
            created_at=datetime(2026, 12, 7, 15, tzinfo=UTC) + timedelta(seconds=n),
        )  # fmt: skip
        publisher.publish(alert, store.save(alert).event)
        alerts.append(alert)
    return alerts


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_subscribe_list_show_and_resolve_through_the_cli(
    api_url: str, local_aws_names: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = f"demo-{uuid.uuid4().hex[:8]}"
    queue = f"oncall-{tenant}"
    token = unsigned_token({"sub": "u1", "email": "ana@example.com", "cotwatch:tenants": [tenant]})
    api = ["--api-url", api_url, "--token", token]

    # Given an SQS subscription for cyber at severity 3 or more (the queue is created, its policy set)
    out = run_cli(capsys, "subscribe", "--category", "cyber", "--min-severity", "3", "--sqs", queue, *api)
    assert out.startswith("subscribed ")
    # When a demo-like run raises five alerts
    alerts = demo_like_run(local_aws_names, tenant)

    # Then the queue receives exactly the two cyber alerts of severity >= 3
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    received: list[str] = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        received += [
            json.loads(m["Body"])["alert_id"]
            for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", [])
        ]
    assert sorted(received) == sorted(a.alert_id for a in alerts if a.category == "cyber" and a.severity >= 3)
    # And `alerts list` shows all five (table), newest first, and --json has them too
    table = run_cli(capsys, "alerts", "list", *api).splitlines()
    assert table[0].split()[:4] == ["ID", "CREATED", "TENANT", "MODEL"]
    assert [line.split()[0] for line in table[1:]] == [a.alert_id for a in reversed(alerts)]
    listed = json.loads(run_cli(capsys, "alerts", "list", "--json", "--min-severity", "4", *api))
    assert {a["alert_id"] for a in listed["alerts"]} == {alerts[1].alert_id, alerts[3].alert_id}
    # When one is acknowledged and resolved as a false positive with a note
    target = alerts[0].alert_id
    run_cli(capsys, "alerts", "ack", target, "--note", "looking", *api)
    run_cli(capsys, "alerts", "resolve", target, "--verdict", "false_positive", "--note", "red-team exercise", *api)
    # Then `alerts show` has the verdict and the audited trail
    shown = run_cli(capsys, "alerts", "show", target, *api)
    assert f"alert {target}  resolved (false_positive)" in shown
    assert 'ana@example.com  resolved -> resolved verdict=false_positive  "red-team exercise"' in shown
    assert 'ana@example.com  acknowledged -> acknowledged  "looking"' in shown
    # And the subscription is listed and can be removed
    subscriptions = json.loads(run_cli(capsys, "subscriptions", "--json", *api))
    [mine] = subscriptions
    assert mine["filter_policy"] == {"category": ["cyber"], "severity": [{"numeric": [">=", 3]}], "tenant": [tenant]}
    run_cli(capsys, "unsubscribe", mine["id"], *api)
    assert json.loads(run_cli(capsys, "subscriptions", "--json", *api)) == []


def test_api_errors_reach_the_user_as_a_message(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = unsigned_token({"sub": "u1", "cotwatch:tenants": "acme"})

    with pytest.raises(SystemExit, match=r"404 no alert '0{32}'"):
        main(["alerts", "show", "0" * 32, "--api-url", api_url, "--token", token])
    with pytest.raises(SystemExit, match="give exactly one of"):
        main(["subscribe", "--category", "cyber", "--api-url", api_url])
    with pytest.raises(SystemExit, match="401 the bearer token is not a JWT"):
        main(["alerts", "list", "--api-url", api_url, "--token", "garbage"])


def test_an_operator_listing_with_no_partition_merges_the_categories(
    api_url: str, local_aws_names: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a demo-like run's alerts, and an operator (no token: every tenant) naming neither tenant nor category
    alerts = demo_like_run(local_aws_names, f"op-{uuid.uuid4().hex[:8]}")

    # When they list everything
    listed = json.loads(run_cli(capsys, "alerts", "list", "--all", "--json", "--api-url", api_url))["alerts"]

    # Then every category's alerts are there, newest first
    assert {a.alert_id for a in alerts} <= {a["alert_id"] for a in listed}
    assert [a["created_at"] for a in listed] == sorted((a["created_at"] for a in listed), reverse=True)
