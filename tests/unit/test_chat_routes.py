"""Chat routing on in-memory fakes: SNS filter-policy semantics on message attributes, webhook URL rules,
and the notifier posting each message to the default webhook and exactly the matching subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from cotwatch.alerts import Alert, alert_id
from cotwatch.chat import Delivery
from cotwatch.chat_routes import attribute_values, check_webhook_url, masked, policy_matches
from cotwatch.contract import alert_message
from cotwatch.detection.models import Disposition
from cotwatch.handlers.chat_notifier import make_handler
from cotwatch_local.invoker import LocalLambdaContext

POLICY = {"category": ["cyber"], "severity": [{"numeric": [">=", 3]}], "tenant": ["acme"]}


@pytest.mark.parametrize(
    ("attributes", "matches"),
    [
        ({"category": "cyber", "severity": 3.0, "tenant": "acme"}, True),
        ({"category": "cyber", "severity": 4.0, "tenant": "acme", "model": "m"}, True),
        ({"category": "cyber", "severity": 2.0, "tenant": "acme"}, False),
        ({"category": "bio_chem", "severity": 4.0, "tenant": "acme"}, False),
        ({"category": "cyber", "severity": 4.0, "tenant": "globex"}, False),
        ({"category": "cyber", "tenant": "acme"}, False),  # a missing attribute never matches
        ({"category": "cyber", "severity": "4", "tenant": "acme"}, False),  # a String is not a Number
    ],
)
def test_policies_match_as_sns_matches_them(attributes: dict[str, Any], matches: bool) -> None:
    assert policy_matches(POLICY, attributes) is matches


def test_an_empty_policy_matches_everything_and_unknown_operators_are_refused() -> None:
    assert policy_matches({}, {}) is True
    with pytest.raises(ValueError, match="unsupported"):
        policy_matches({"severity": [{"numeric": ["<", 3]}]}, {"severity": 1.0})


def test_attributes_are_read_in_both_sns_shapes() -> None:
    lambda_shape = {"severity": {"Type": "Number", "Value": "3"}, "tenant": {"Type": "String", "Value": "acme"}}
    publish_shape = {"severity": {"DataType": "Number", "StringValue": "3"}}
    assert attribute_values(lambda_shape) == {"severity": 3.0, "tenant": "acme"}
    assert attribute_values(publish_shape) == {"severity": 3.0}


def test_webhooks_are_https_and_loopback_http_only_where_allowed() -> None:
    assert check_webhook_url("https://hooks.slack.com/services/T/B/x") == "https://hooks.slack.com/services/T/B/x"
    assert check_webhook_url("http://127.0.0.1:8080/h", allow_loopback_http=True) == "http://127.0.0.1:8080/h"
    for url, loopback in [
        ("http://127.0.0.1:8080/h", False),
        ("http://10.0.0.1/h", True),
        ("ftp://x/y", True),
        ("/h", True),
    ]:
        with pytest.raises(ValueError):
            check_webhook_url(url, allow_loopback_http=loopback)
    assert masked("https://hooks.slack.com/services/T/B/secret") == "https://hooks.slack.com/…"


@dataclass(frozen=True)
class Route:
    subscription_id: str
    webhook_url: str
    policy: dict[str, Any]


class Recorder:
    def __init__(self, failing: set[str]) -> None:
        self.posts: list[str] = []
        self.failing = failing

    def post(self, url: str, payload: dict[str, Any]) -> Delivery:
        self.posts.append(url)
        if url in self.failing:
            return Delivery(delivered=False, status=503, attempts=5, reason="HTTP 503: busy")
        return Delivery(delivered=True, status=200, attempts=1)


def record(severity: int, tenant: str = "acme") -> dict[str, Any]:
    alert = Alert(
        alert_id=alert_id(tenant, "t", "cyber"), tenant=tenant, trace_id="t", model="m", category="cyber",
        severity=severity, score=0.9, threshold=0.4, disposition=Disposition.COMPLIED, chunk_seq=0, evidence=(),
        scorer_version="s", calibration_version="c", created_at=datetime(2026, 12, 7, tzinfo=UTC), source="t-0@0",
    )  # fmt: skip
    attributes = {k: {"Type": "Number" if isinstance(v, int) else "String", "Value": str(v)}
                  for k, v in alert.message_attributes().items()}  # fmt: skip
    return {"Sns": {"MessageId": f"m-{tenant}-{severity}", "Message": alert_message(alert, "created"),
                    "MessageAttributes": attributes}}  # fmt: skip


def test_each_message_goes_to_the_default_webhook_and_the_matching_subscriptions() -> None:
    # Given a default webhook, a subscription for acme cyber >= 3 and one whose webhook is down
    sender, letters = Recorder(failing={"https://down/x"}), []
    routes = [Route("chat-a", "https://a/x", POLICY), Route("chat-b", "https://down/x", {"tenant": ["acme"]})]
    handler = make_handler(sender, "https://default/x", letters.append, routes=lambda: routes)

    # When three messages arrive: acme severity 4, acme severity 2, globex severity 4
    event = {"Records": [record(4), record(2), record(4, tenant="globex")]}
    answer = handler(event, LocalLambdaContext(function_name="ChatNotifierFunction"))  # type: ignore[arg-type]

    # Then each went to the default; acme 4 to both subscriptions, acme 2 to the tenant-wide one only
    assert sender.posts == [
        "https://default/x", "https://a/x", "https://down/x",
        "https://default/x", "https://down/x",
        "https://default/x",
    ]  # fmt: skip
    # And the two posts to the broken webhook are dead-lettered under the subscription's id, not its URL
    assert answer == {"delivered": 4, "dead_lettered": 2}
    assert [(d["target"], d["status"]) for d in letters] == [("chat-b", 503), ("chat-b", 503)]
    assert "https://down/x" not in str(letters)
