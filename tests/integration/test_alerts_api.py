"""The alerts API handler on API Gateway v2 events with authorizer claims, against the moto server.

Every route is checked for tenant isolation: a caller scoped to one tenant neither reads, triages nor
subscribes to another tenant's alerts, and every bad request is a 4xx with a message.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from cotwatch.adapters.aws import DynamoAlertStore, SnsAlertPublisher
from cotwatch.adapters.aws_alerts_api import DynamoAlertQuery, SnsSubscriptions
from cotwatch.alerts import Alert, Verdict, alert_id
from cotwatch.alerts_api import Caller, caller_from_event
from cotwatch.detection.models import Disposition, Evidence
from cotwatch.handlers.alerts_api import make_handler
from cotwatch.ports import AlertWrite
from cotwatch.trace import Segment
from cotwatch_local.invoker import LocalLambdaContext

pytestmark = pytest.mark.integration


def api_event(
    method: str,
    path: str,
    *,
    tenants: str | None = None,
    who: str = "ana@example.com",
    iam: bool = False,
    query: dict[str, Any] | None = None,
    body: Any = None,
    authorizer: bool = True,
) -> dict[str, Any]:
    """An HTTP API payload v2 event as API Gateway sends it after the JWT (or IAM) authorizer."""
    if not authorizer:
        auth: dict[str, Any] | None = None
    elif iam:
        auth = {"iam": {"userArn": "arn:aws:iam::123456789012:role/oncall", "userId": "AROA1"}}
    else:
        claims: dict[str, Any] = {"sub": "user-1", "email": who, "iss": "https://issuer.example", "aud": "cotwatch"}
        if tenants is not None:
            claims["cotwatch:tenants"] = tenants
        auth = {"jwt": {"claims": claims, "scopes": None}}
    query = {k: str(v) for k, v in (query or {}).items()}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query),
        "headers": {"content-type": "application/json", "host": "api.example"},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example", "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
            "requestId": uuid.uuid4().hex, "routeKey": "$default", "stage": "$default",
            "time": "07/Dec/2026:15:00:00 +0000", "timeEpoch": 1796655600000,
            **({"authorizer": auth} if auth is not None else {}),
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }  # fmt: skip


@dataclass
class Api:
    handler: Any
    store: DynamoAlertStore
    topic_arn: str

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = self.handler(
            api_event(method, path, **kwargs), LocalLambdaContext(function_name="AlertsApiFunction")
        )
        body = json.loads(response["body"]) if response.get("body") else None
        return int(response["statusCode"]), body


@pytest.fixture
def api(local_aws_env: None, local_aws_names: Any) -> Api:
    table, topic = local_aws_names.name("AlertsTable"), local_aws_names.arn("AlertsTopic")
    store = DynamoAlertStore(table)
    return Api(make_handler(store, DynamoAlertQuery(table), SnsSubscriptions(topic)), store, topic)


def make_alert(tenant: str, n: int, *, severity: int = 2, model: str = "m1", category: str = "cyber") -> Alert:
    return Alert(
        alert_id=alert_id(tenant, f"trace-{n}", category),
        tenant=tenant,
        trace_id=f"trace-{n}",
        model=model,
        category=category,
        severity=severity,
        score=0.5 + severity / 10,
        threshold=0.41,
        disposition=Disposition.COMPLIED,
        chunk_seq=1,
        evidence=(Evidence(chunk_seq=1, segment=Segment.REASONING, start=0, end=30, excerpt=f"step {n}", score=0.7),),
        scorer_version="test",
        calibration_version="cal-test",
        created_at=datetime(2026, 12, 7, 12, tzinfo=UTC) + timedelta(minutes=n),
        source=f"traces-0@{n}",
    )


@pytest.fixture
def tenants() -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    return f"acme-{run}", f"beta-{run}"


def seed(api: Api, tenant: str, count: int, **kwargs: Any) -> list[Alert]:
    alerts = [make_alert(tenant, n, **kwargs) for n in range(count)]
    for alert in alerts:
        api.store.save(alert)
    return alerts


def test_listing_pages_through_more_alerts_than_one_page_with_opaque_cursors(
    api: Api, tenants: tuple[str, str]
) -> None:
    # Given 7 alerts of a tenant
    acme, _ = tenants
    alerts = seed(api, acme, 7)

    # When a caller scoped to it lists 3 at a time
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        status, body = api.call("GET", "/alerts", tenants=acme, query=query)
        assert status == 200, body
        seen += [a["alert_id"] for a in body["alerts"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    # Then every alert comes exactly once, newest first, over three pages
    assert seen == [a.alert_id for a in reversed(alerts)]
    assert pages == 3


def test_listing_filters_by_status_severity_model_category_and_time(api: Api, tenants: tuple[str, str]) -> None:
    acme, _ = tenants
    low = seed(api, acme, 3)
    [high] = [make_alert(acme, 10, severity=4, model="m2")]
    api.store.save(high)
    bio = make_alert(acme, 11, category="bio_chem")
    api.store.save(bio)
    api.store.acknowledge(low[0].alert_id, who="ana")

    def ids(**query: Any) -> set[str]:
        status, body = api.call("GET", "/alerts", tenants=acme, query=query)
        assert status == 200, body
        return {a["alert_id"] for a in body["alerts"]}

    assert ids(min_severity=4) == {high.alert_id}
    assert ids(model="m2") == {high.alert_id}
    assert ids(category="bio_chem") == {bio.alert_id}
    assert ids(status="acknowledged") == {low[0].alert_id}
    assert ids(since="2026-12-07T12:01:00+00:00", until="2026-12-07T12:02:00+00:00") == {
        low[1].alert_id,
        low[2].alert_id,
    }


def test_get_ack_and_resolve_are_audited(api: Api, tenants: tuple[str, str]) -> None:
    acme, _ = tenants
    [alert] = seed(api, acme, 1)
    path = f"/alerts/{alert.alert_id}"

    assert api.call("POST", f"{path}/ack", tenants=acme, body={"note": "on it"})[0] == 200
    status, resolved = api.call(
        "POST", f"{path}/resolve", tenants=acme, who="bo@example.com", body={"verdict": "false_positive", "note": "lab"}
    )
    status_get, shown = api.call("GET", path, tenants=acme)

    assert (status, status_get) == (200, 200)
    assert (shown["status"], shown["verdict"]) == ("resolved", "false_positive")
    assert shown["evidence"][0]["excerpt"] == "step 0"
    assert [(e["action"], e["who"], e["note"]) for e in shown["audit"]] == [
        ("created", "cotwatch", None),
        ("acknowledged", "ana@example.com", "on it"),
        ("resolved", "bo@example.com", "lab"),
    ]
    assert resolved == shown


@pytest.mark.parametrize(
    ("method", "suffix", "body", "status", "message"),
    [
        ("POST", "/resolve", {"verdict": "maybe"}, 422, ""),
        ("POST", "/resolve", {}, 422, ""),
        ("POST", "/ack", {"note": "x", "extra": 1}, 422, ""),
    ],
)
def test_bad_triage_bodies_are_4xx(
    api: Api, tenants: tuple[str, str], method: str, suffix: str, body: Any, status: int, message: str
) -> None:
    acme, _ = tenants
    [alert] = seed(api, acme, 1)

    got, answer = api.call(method, f"/alerts/{alert.alert_id}{suffix}", tenants=acme, body=body)

    assert got == status
    assert answer is not None
    assert answer.get("detail") or answer.get("message")  # powertools' validation detail, or ours


def test_bad_requests_get_clear_4xx_messages(api: Api, tenants: tuple[str, str]) -> None:
    acme, beta = tenants
    [alert] = seed(api, acme, 1)
    api.store.resolve(alert.alert_id, verdict=Verdict.TRUE_POSITIVE, who="x")

    seed(api, acme, 3)
    _, page = api.call("GET", "/alerts", tenants=acme, query={"limit": 1})

    cases = {
        "not an id": api.call("GET", "/alerts/nope", tenants=acme),
        "twice resolved": api.call("POST", f"/alerts/{alert.alert_id}/resolve", tenants=acme, body={"verdict": "needs_policy"}),
        "no authorizer": api.call("GET", "/alerts", authorizer=False),
        "no tenant claim": api.call("GET", "/alerts"),
        "operator, no partition": api.call("GET", "/alerts", iam=True),
        "forged cursor": api.call("GET", "/alerts", tenants=acme, query={"cursor": "bm90LWpzb24"}),
        "other listing's cursor": api.call("GET", "/alerts", iam=True, query={"tenant": beta, "cursor": page["next_cursor"]}),
        "severity 9": api.call("GET", "/alerts", tenants=acme, query={"min_severity": 9}),
    }  # fmt: skip

    assert {name: status for name, (status, _) in cases.items()} == {
        "not an id": 400,
        "twice resolved": 409,
        "no authorizer": 401,
        "no tenant claim": 403,
        "operator, no partition": 400,
        "forged cursor": 400,
        "other listing's cursor": 400,
        "severity 9": 422,
    }
    assert cases["twice resolved"][1]["message"] == f"alert {alert.alert_id} is resolved: it cannot be resolved"
    assert "name a tenant" in cases["operator, no partition"][1]["message"]


def test_a_caller_scoped_to_one_tenant_cannot_reach_another_on_any_route(api: Api, tenants: tuple[str, str]) -> None:
    # Given alerts of two tenants and a caller scoped to acme only
    acme, beta = tenants
    seed(api, acme, 1)
    [theirs] = seed(api, beta, 1)
    queue = boto3.client("sqs").create_queue(QueueName=f"iso-{beta}")["QueueUrl"]
    queue_arn = boto3.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    status, beta_sub = api.call("POST", "/subscriptions", tenants=beta, body={"protocol": "sqs", "endpoint": queue_arn})
    assert status == 201, beta_sub
    path = f"/alerts/{theirs.alert_id}"

    # Then every route refuses beta's alerts and subscriptions to it
    answers = {
        "list": api.call("GET", "/alerts", tenants=acme, query={"tenant": beta}),
        "list by category": api.call("GET", "/alerts", tenants=acme, query={"tenant": beta, "category": "cyber"}),
        "get": api.call("GET", path, tenants=acme),
        "ack": api.call("POST", f"{path}/ack", tenants=acme, body={}),
        "resolve": api.call("POST", f"{path}/resolve", tenants=acme, body={"verdict": "true_positive"}),
        "subscribe": api.call(
            "POST", "/subscriptions", tenants=acme, body={"protocol": "sqs", "endpoint": queue_arn, "tenants": [beta]}
        ),
        "delete subscription": api.call("DELETE", f"/subscriptions/{beta_sub['id']}", tenants=acme),
    }
    assert {route: status for route, (status, _) in answers.items()} == {
        "list": 403, "list by category": 403, "get": 404, "ack": 404, "resolve": 404, "subscribe": 403,
        "delete subscription": 404,
    }  # fmt: skip
    # And acme's listings never show beta's alert or subscription; beta's alert is untouched
    _, mine = api.call("GET", "/alerts", tenants=acme)
    assert {a["tenant"] for a in mine["alerts"]} == {acme}
    _, subs = api.call("GET", "/subscriptions", tenants=acme)
    assert beta_sub["id"] not in {s["id"] for s in subs["subscriptions"]}
    stored = api.store.get(theirs.alert_id)
    assert stored is not None and (stored["status"], len(stored["audit"])) == ("open", 1)
    # And a subscription acme makes without naming tenants is limited to acme
    _, own = api.call("POST", "/subscriptions", tenants=acme, body={"protocol": "email", "endpoint": "a@acme.example"})
    assert own["filter_policy"] == {"tenant": [acme]}
    # And an operator (IAM) lists one category across tenants
    status, across = api.call("GET", "/alerts", iam=True, query={"category": "cyber", "limit": 200})
    assert status == 200 and {acme, beta} <= {a["tenant"] for a in across["alerts"]}


def test_a_subscription_receives_exactly_the_alerts_its_filter_matches(api: Api, tenants: tuple[str, str]) -> None:
    # Given an SQS subscription made through the API: cyber, severity >= 3, acme
    acme, beta = tenants
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"match-{acme}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    status, sub = api.call(
        "POST", "/subscriptions", iam=True,
        body={"protocol": "sqs", "endpoint": queue_arn, "categories": ["cyber"], "min_severity": 3, "tenants": [acme]},
    )  # fmt: skip
    assert status == 201, sub
    assert sub["filter_policy"] == {"category": ["cyber"], "severity": [{"numeric": [">=", 3]}], "tenant": [acme]}

    # When alerts of every combination are published
    publisher = SnsAlertPublisher(api.topic_arn)
    expected = set()
    for n, (tenant, category, severity) in enumerate(
        [(acme, "cyber", 3), (acme, "cyber", 4), (acme, "cyber", 2), (acme, "bio_chem", 4), (beta, "cyber", 4)]
    ):
        alert = make_alert(tenant, n, severity=severity, category=category)
        publisher.publish(alert, AlertWrite.CREATED)
        if (tenant, category) == (acme, "cyber") and severity >= 3:
            expected.add(alert.alert_id)

    # Then the queue receives exactly the two matching ones
    received: list[str] = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        received += [json.loads(m["Body"])["alert_id"] for m in batch]
    assert sorted(received) == sorted(expected)
    # And the subscription is listed, then deleted
    _, listed = api.call("GET", "/subscriptions", tenants=acme)
    assert sub["id"] in {s["id"] for s in listed["subscriptions"]}
    assert api.call("DELETE", f"/subscriptions/{sub['id']}", tenants=acme)[0] == 204
    _, after = api.call("GET", "/subscriptions", tenants=acme)
    assert sub["id"] not in {s["id"] for s in after["subscriptions"]}


def test_bad_subscriptions_are_refused_with_a_reason(api: Api, tenants: tuple[str, str]) -> None:
    acme, _ = tenants
    cases = {
        "bad email": {"protocol": "email", "endpoint": "not-an-address"},
        "http url": {"protocol": "https", "endpoint": "http://hooks.example/x"},
        "queue name not arn": {"protocol": "sqs", "endpoint": "my-queue"},
    }
    for name, body in cases.items():
        status, answer = api.call("POST", "/subscriptions", tenants=acme, body=body)
        assert (name, status) == (name, 400), answer
        assert answer["message"]
    assert api.call("POST", "/subscriptions", tenants=acme, body={"protocol": "fax", "endpoint": "123"})[0] == 422
    assert (
        api.call(
            "POST", "/subscriptions", tenants=acme, body={"protocol": "email", "endpoint": "a@b.c", "tenants": []}
        )[0]
        == 422
    )


def test_authorizer_claims_map_to_a_tenant_scope() -> None:
    def scope(claim: Any) -> frozenset[str] | None:
        event = {"requestContext": {"authorizer": {"jwt": {"claims": {"sub": "u", "cotwatch:tenants": claim}}}}}
        return caller_from_event(event).tenants

    # API Gateway passes array claims as "[a b]"; a JSON array or a comma list are accepted too; "*" is all
    assert scope("[acme beta]") == {"acme", "beta"}
    assert scope('["acme","beta"]') == {"acme", "beta"}
    assert scope("acme, beta") == {"acme", "beta"}
    assert scope("acme") == {"acme"}
    assert scope("*") is None
    iam = caller_from_event({"requestContext": {"authorizer": {"iam": {"userArn": "arn:aws:iam::1:role/x"}}}})
    assert iam == Caller(who="arn:aws:iam::1:role/x", tenants=None)


def test_openapi_document_lists_every_route(api: Api) -> None:
    status, document = api.call("GET", "/openapi.json", iam=True)

    assert status == 200
    assert {"/alerts", "/alerts/{alert_id}", "/alerts/{alert_id}/ack", "/alerts/{alert_id}/resolve",
            "/subscriptions", "/subscriptions/{subscription_id}"} <= set(document["paths"])  # fmt: skip
