"""Two guarantees of the alert store on the moto server:

* every listing the API offers is a Query on the index designed for it, never a Scan (a botocore hook on the
  store's own session counts the DynamoDB calls it makes);
* a cooldown window's held-back count goes out as a digest when the window ends (the digest flush), once,
  and not again when the scope's next alert opens a new window.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from cotwatch.adapters.aws import BOTO_CONFIG, DynamoAlertStore, DynamoCooldownStore, SnsAlertPublisher
from cotwatch.adapters.aws_alerts_api import DynamoAlertQuery, SnsSubscriptions
from cotwatch.alerts import Alert, Verdict, alert_id
from cotwatch.cooldown import CooldownPublisher, FlushDigests
from cotwatch.detection.models import Disposition, Evidence
from cotwatch.handlers.alerts_api import make_handler
from cotwatch.ports import AlertWrite
from cotwatch.trace import Segment
from cotwatch_local.api_server import to_event, unsigned_token
from cotwatch_local.cloudformation import function_environment
from cotwatch_local.invoker import LocalLambdaContext
from cotwatch_local.notify import DIGEST_FLUSH, flush_digests
from cotwatch_local.stack import aws_env

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 7, 15, tzinfo=UTC)


def make_alert(tenant: str, n: int, category: str, severity: int, model: str = "reasoner") -> Alert:
    return Alert(
        alert_id=alert_id(tenant, f"t-{n}", category), tenant=tenant, trace_id=f"t-{n}", model=model,
        category=category, severity=severity, score=0.5 + severity / 10, threshold=0.41,
        disposition=Disposition.COMPLIED, chunk_seq=0,
        evidence=(Evidence(chunk_seq=0, segment=Segment.REASONING, start=0, end=9, excerpt=f"e{n}", score=0.7),),
        scorer_version="s", calibration_version="c", source=f"traces-0@{n}", created_at=T0 + timedelta(seconds=n),
    )  # fmt: skip


class DynamoCalls:
    """The DynamoDB operations a boto3 session makes, with their index, from botocore's before-parameter-build event."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.session = boto3.session.Session()
        self.session.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, params.get("IndexName")))

    def named(self, operation: str) -> list[str | None]:
        return [index for name, index in self.calls if name == operation]


def test_every_listing_is_a_query_on_its_own_index_never_a_scan(
    local_aws_env: dict[str, str], local_aws_names: Any
) -> None:
    # Given alerts of two tenants, several categories, models, severities and statuses
    tenant, other = f"q-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    calls = DynamoCalls()
    ddb = calls.session.resource("dynamodb", config=BOTO_CONFIG)
    table = local_aws_names.name("AlertsTable")
    store = DynamoAlertStore(table, ddb=ddb)
    specs = [("cyber", 3, "reasoner"), ("cyber", 1, "mini"), ("bio_chem", 4, "reasoner"), ("cyber", 4, "mini")]
    mine = [make_alert(tenant, n, c, s, m) for n, (c, s, m) in enumerate(specs)]
    for alert in [*mine, make_alert(other, 9, "cyber", 4)]:
        store.save(alert)
    store.resolve(mine[0].alert_id, Verdict.FALSE_POSITIVE, who="ana")
    handler = make_handler(
        store, DynamoAlertQuery(table, ddb=ddb), SnsSubscriptions(local_aws_names.arn("AlertsTopic"))
    )
    scoped = {"authorization": f"Bearer {unsigned_token({'sub': 'ana', 'cotwatch:tenants': [tenant]})}"}

    def listing(query: str, headers: dict[str, str] | None = None) -> list[str]:
        calls.calls.clear()
        answer = handler(
            to_event("GET", f"/alerts?{query}", scoped if headers is None else headers, b""), LocalLambdaContext("api")
        )
        assert answer["statusCode"] == 200, answer
        return [a["alert_id"] for a in json.loads(answer["body"])["alerts"]]

    ids = [a.alert_id for a in mine]
    # When each kind of listing is made, Then it is one Query of the index built for it and returns exactly
    # the matching alerts, newest first
    cases: list[tuple[str, str, list[str], dict[str, str] | None]] = [
        ("", "by_tenant", ids[::-1], None),
        ("status=resolved", "by_tenant_status", [ids[0]], None),
        ("status=open&category=cyber", "by_tenant_category", [ids[3], ids[1]], None),
        ("category=cyber&min_severity=3", "by_tenant_category", [ids[3], ids[0]], None),
        ("model=mini", "by_tenant_model", [ids[3], ids[1]], None),
        ("min_severity=4", "by_tenant", [ids[3], ids[2]], None),
        (f"since={(T0 + timedelta(seconds=1)):%Y-%m-%dT%H:%M:%SZ}&until={(T0 + timedelta(seconds=2)):%Y-%m-%dT%H:%M:%SZ}",
         "by_tenant", [ids[2], ids[1]], None),
        # An operator across tenants, one category
        ("category=bio_chem", "by_category", [], {}),
    ]  # fmt: skip
    for query, index, expected, headers in cases:
        got = listing(query, headers)
        if headers == {}:  # the operator sees every tenant's bio_chem alerts: ours is among them
            assert ids[2] in got, query
        else:
            assert got == expected, query
        assert calls.named("Query") and set(calls.named("Query")) == {index}, (query, calls.calls)
        assert calls.named("Scan") == [], query
    # And paging with the opaque cursor stays on the same index
    first = json.loads(
        handler(to_event("GET", "/alerts?category=cyber&limit=1", scoped, b""), LocalLambdaContext("api"))["body"]
    )
    calls.calls.clear()
    cursor = first["next_cursor"]
    second = json.loads(
        handler(
            to_event("GET", f"/alerts?category=cyber&limit=1&cursor={cursor}", scoped, b""), LocalLambdaContext("api")
        )["body"]
    )
    assert [first["alerts"][0]["alert_id"], second["alerts"][0]["alert_id"]] == [ids[3], ids[1]]
    assert set(calls.named("Query")) == {"by_tenant_category"} and calls.named("Scan") == []


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        for message in batch:
            got.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return got


def subscriber(names: Any, tenant: str) -> str:
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName=f"digests-{tenant}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=names.arn("AlertsTopic"), Protocol="sqs", Endpoint=arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"tenant": [tenant]})},
    )  # fmt: skip
    return str(url)


def test_a_storm_that_stops_is_counted_out_when_its_window_ends(
    local_aws_env: dict[str, str], local_aws_names: Any
) -> None:
    # Given a 600 s cooldown and a subscriber to one tenant's messages
    tenant = f"d-{uuid.uuid4().hex[:8]}"
    queue = subscriber(local_aws_names, tenant)
    now = [T0]
    clock: Callable[[], datetime] = lambda: now[0]  # noqa: E731
    windows = DynamoCooldownStore(local_aws_names.name("CountersTable"))
    inner = SnsAlertPublisher(local_aws_names.arn("AlertsTopic"))
    publisher = CooldownPublisher(inner, windows, window_seconds=600, clock=clock)
    flush = FlushDigests(windows, inner, window_seconds=600, clock=clock)
    # When a storm of three alerts of one scope arrives and then stops
    storm = [make_alert(tenant, n, "cyber", 2 + n) for n in range(3)]
    for n, alert in enumerate(storm):
        now[0] = T0 + timedelta(seconds=n)
        publisher.publish(alert, AlertWrite.CREATED)
    # Then only the first is published, and a flush inside the window sends nothing
    now[0] = T0 + timedelta(seconds=599)
    assert flush.run() == []
    assert [m["alert_id"] for m in drain(queue)] == [storm[0].alert_id]
    # When the flush runs after the window ended
    now[0] = T0 + timedelta(seconds=601)
    [digest] = flush.run()
    # Then one digest with the two held back goes out, and the next run sends nothing more
    [message] = drain(queue)
    assert message["message_type"] == "digest" and message["count"] == 2 and message["severity"] == 4
    assert message["alert_ids"] == sorted(a.alert_id for a in storm[1:]) == list(digest.alert_ids)
    assert message["summary"] == "and 2 more in the last 10 minutes"
    assert flush.run() == []
    # And the scope's next alert opens a new window without repeating that digest
    now[0] = T0 + timedelta(seconds=700)
    publisher.publish(make_alert(tenant, 7, "cyber", 3), AlertWrite.CREATED)
    assert [m.get("message_type") for m in drain(queue)] == ["alert"]


def test_the_digest_flush_function_publishes_ended_windows(
    local_aws_env: dict[str, str], local_aws_names: Any, moto_endpoint: str
) -> None:
    # Given a 1 s cooldown window that held one alert back and has ended
    tenant = f"f-{uuid.uuid4().hex[:8]}"
    queue = subscriber(local_aws_names, tenant)
    windows = DynamoCooldownStore(local_aws_names.name("CountersTable"))
    publisher = CooldownPublisher(SnsAlertPublisher(local_aws_names.arn("AlertsTopic")), windows, window_seconds=1)
    for n in range(2):
        publisher.publish(make_alert(tenant, n, "bio_chem", 3), AlertWrite.CREATED)
    time.sleep(1.2)
    # When functions/flush_digests/app.py runs as the schedule invokes it, with the stack's environment
    env = {
        **aws_env(moto_endpoint, local_aws_names.region),
        **function_environment(local_aws_names, DIGEST_FLUSH, moto_endpoint),
        "ALERT_COOLDOWN_SECONDS": "1",
    }
    answer = flush_digests(env)
    # Then the held-back alert went out as a digest (other tests' ended windows may be flushed too)
    assert answer["digests"] >= 1
    digests = [m for m in drain(queue) if m.get("message_type") == "digest"]
    assert [(d["tenant"], d["count"], d["alert_ids"]) for d in digests] == [
        (tenant, 1, [alert_id(tenant, "t-1", "bio_chem")])
    ]
