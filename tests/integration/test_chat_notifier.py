"""The chat notifier against a real loopback webhook server: Slack-compatible payloads, retries after 429
(honouring Retry-After) and 5xx, and dead-lettering to an SQS queue on the moto server."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from cotwatch.alerts import Alert, alert_id
from cotwatch.chat import WebhookSender
from cotwatch.contract import alert_message, digest_message
from cotwatch.detection.models import Disposition, Evidence
from cotwatch.handlers.chat_notifier import make_handler
from cotwatch.ports import Digest
from cotwatch.trace import Segment
from cotwatch_local.invoker import LocalLambdaContext

pytestmark = pytest.mark.integration


class Webhook:
    """A loopback webhook that answers from a script of statuses (then 200), recording every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[float, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                hook.requests.append((time.monotonic(), body))
                status, headers = hook.script.pop(0) if hook.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def dlq(local_aws_env: dict[str, str]) -> tuple[Any, str]:
    sqs = boto3.client("sqs")
    return sqs, sqs.create_queue(QueueName=f"chat-dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def sns_event(*messages: str) -> dict[str, Any]:
    return {
        "Records": [
            {"EventSource": "aws:sns", "Sns": {"MessageId": f"m{i}", "Message": m}} for i, m in enumerate(messages)
        ]
    }


ALERT = Alert(
    alert_id=alert_id("acme", "trace-9", "cyber"), tenant="acme", trace_id="trace-9", model="reasoner", category="cyber",
    severity=4, score=0.91, threshold=0.41, disposition=Disposition.COMPLIED, chunk_seq=3,
    evidence=(
        Evidence(chunk_seq=3, segment=Segment.REASONING, start=0, end=40, excerpt="low line", score=0.5),
        Evidence(chunk_seq=3, segment=Segment.REASONING, start=40, end=90, excerpt="encrypt the\nshares [EMAIL]", score=0.9),
    ),
    scorer_version="s", calibration_version="c", created_at=datetime(2026, 12, 7, 15, tzinfo=UTC), source="traces-0@9",
)  # fmt: skip


def handler_for(webhook: Webhook, dlq: tuple[Any, str], **sender: Any) -> Any:
    sqs, url = dlq
    send = WebhookSender(backoff_factor=0.05, **sender)
    return make_handler(
        send, webhook.url, lambda letter: sqs.send_message(QueueUrl=url, MessageBody=json.dumps(letter, default=str)),
        alert_base_url="https://cotwatch.example/console",
    )  # fmt: skip


def dead_letters(dlq: tuple[Any, str]) -> list[dict[str, Any]]:
    sqs, url = dlq
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def invoke(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    return dict(handler(event, LocalLambdaContext(function_name="ChatNotifierFunction")))


def test_alerts_and_digests_arrive_formatted(webhook: Webhook, dlq: tuple[Any, str]) -> None:
    digest = Digest(tenant="acme", model="reasoner", category="cyber", severity=3, count=37,
                    alert_ids=("a" * 32,), window_start=datetime(2026, 12, 7, 15, tzinfo=UTC), window_seconds=600)  # fmt: skip

    result = invoke(handler_for(webhook, dlq), sns_event(alert_message(ALERT, "created"), digest_message(digest)))

    assert result == {"delivered": 2, "dead_lettered": 0}
    alert_text, digest_text = (body["text"] for _, body in webhook.requests)
    # The category, severity, model, tenant, trace, the top evidence line (one line) and a link
    assert "*cyber* severity 4 (created)" in alert_text
    assert "model `reasoner` · tenant `acme`" in alert_text and "trace `trace-9`" in alert_text
    assert "> encrypt the shares [EMAIL]" in alert_text and "low line" not in alert_text
    assert f"<https://cotwatch.example/console/alerts/{ALERT.alert_id}|open alert {ALERT.alert_id}>" in alert_text
    assert "and 37 more in the last 10 minutes" in digest_text
    assert all(body["blocks"][0]["type"] == "section" for _, body in webhook.requests)


def test_429_is_retried_after_retry_after_and_5xx_with_backoff(webhook: Webhook, dlq: tuple[Any, str]) -> None:
    # Given a webhook that rate-limits once (Retry-After: 1) then fails twice with 503/500
    webhook.script = [(429, {"Retry-After": "1"}), (503, {}), (500, {})]

    result = invoke(handler_for(webhook, dlq), sns_event(alert_message(ALERT, "escalated")))

    # Then the fourth attempt delivers it, the first retry waited the second it was told to
    assert result == {"delivered": 1, "dead_lettered": 0}
    times = [t for t, _ in webhook.requests]
    assert len(times) == 4
    assert times[1] - times[0] >= 0.95
    assert dead_letters(dlq) == []


def test_what_cannot_be_delivered_is_dead_lettered_with_its_reason(webhook: Webhook, dlq: tuple[Any, str]) -> None:
    # Given a webhook that keeps failing, then one that refuses the payload (400: not retried)
    webhook.script = [(502, {})] * 3 + [(400, {})]
    handler = handler_for(webhook, dlq, retries=2)

    result = invoke(handler, sns_event(alert_message(ALERT, "created"), alert_message(ALERT, "reopened"), "not json"))

    # Then all three are dead-lettered: after 3 attempts, after 1, and unparseable
    assert result == {"delivered": 0, "dead_lettered": 3}
    assert len(webhook.requests) == 4
    letters = sorted(dead_letters(dlq), key=lambda d: str(d["message_id"]))
    assert [(d["reason"], d.get("status"), d.get("attempts")) for d in letters] == [
        ("undeliverable", 502, 3),
        ("undeliverable", 400, 1),
        ("not_a_contract_message", None, None),
    ]
    assert letters[0]["message"]["alert_id"] == ALERT.alert_id
