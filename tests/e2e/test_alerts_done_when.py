"""The alerts issue's done-when flow on real parts (a Kafka broker, the moto server, the real model), as a
user runs it with the CLI against the local stack:

1. after ``cotwatch demo``, ``cotwatch alerts list`` shows the demo's alerts;
2. ``cotwatch subscribe --category cyber --min-severity 3 --sqs NAME`` (and ``--chat-webhook`` on a loopback
   webhook), then a fresh demo run on the same, still running stack: the queue receives exactly the
   matching alerts of that run, the webhook the formatted messages of exactly its matching alerts;
3. ``cotwatch alerts resolve ID --verdict false_positive --note ...`` shows up, audited, in ``alerts show``.

The stack is a LocalStack of its own (own name, own traces topic) on the session's broker and moto server.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from cotwatch_local.api_server import LocalApiServer
from cotwatch_local.cli import main
from cotwatch_local.demo import run_demo
from cotwatch_local.invoker import LocalInvoker
from cotwatch_local.stack import LocalStack, LocalStackInfo

pytestmark = [pytest.mark.e2e, pytest.mark.model, pytest.mark.timeout(1500)]


class Webhook:
    def __init__(self) -> None:
        self.texts: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.texts.append(json.loads(self.rfile.read(int(self.headers["content-length"])))["text"])
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T1/B1/done-when"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def stack(
    tmp_path: Path, kafka_bootstrap: str, moto_endpoint: str, local_aws_env: dict[str, str], session_suffix: str
) -> LocalStack:
    run = uuid.uuid4().hex[:6]
    return LocalStack(
        state_root=tmp_path / "state",
        stack_name=f"dw-{session_suffix}-{run}",
        parameter_overrides={"TracesTopicName": f"cotwatch-traces-dw-{run}"},
        environ={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "AWS_ENDPOINT_URL": moto_endpoint},
    )


@pytest.fixture
def api_url(stack: LocalStack) -> Iterator[str]:
    # What `cotwatch alerts ...` serves locally: functions/alerts_api/app.py with the stack's environment
    info = stack.up()
    invoker = LocalInvoker()
    invoker.set_environment(
        "AlertsApiFunction", {**info.env_for("AlertsApiFunction"), "ALLOW_LOOPBACK_WEBHOOKS": "true"}
    )
    with LocalApiServer(lambda event: dict(invoker.invoke("AlertsApiFunction", event))) as url:
        yield url


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def receive_all(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        for message in batch:
            got.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return got


def test_demo_alerts_are_listed_subscribed_to_and_triaged(
    stack: LocalStack, api_url: str, webhook: Webhook, capsys: pytest.CaptureFixture[str]
) -> None:
    info: LocalStackInfo = stack.up()
    api = ["--api-url", api_url]

    # Given a demo run
    first = run_demo(stack=stack, out=io.StringIO())
    assert first.drained and first.alerts and first.mismatches == []
    # When the alerts are listed (the operator's listing merges every category: the API never scans)
    listed = json.loads(cli(capsys, "alerts", "list", "--all", "--json", *api))["alerts"]
    # Then every demo alert is there
    assert {str(a["alert_id"]) for a in first.alerts} <= {a["alert_id"] for a in listed}
    table = cli(capsys, "alerts", "list", "--tenant", str(first.alerts[0]["tenant"]), *api)
    assert str(first.alerts[0]["alert_id"]) in table

    # Given an SQS subscription for cyber at severity >= 3, and a chat webhook for bio_chem at severity >= 2
    queue = f"oncall-{uuid.uuid4().hex[:6]}"
    cli(capsys, "subscribe", "--category", "cyber", "--min-severity", "3", "--sqs", queue, *api)
    cli(capsys, "subscribe", "--category", "bio_chem", "--min-severity", "2", "--chat-webhook", webhook.url, *api)
    queue_url = boto3.client("sqs").get_queue_url(QueueName=queue)["QueueUrl"]
    # When the demo runs again on the same stack (fresh trace ids)
    second = run_demo(stack=stack, out=io.StringIO())
    assert second.run_id != first.run_id and second.drained

    # Then the queue received exactly the cyber alerts of severity >= 3 of that run, and nothing else
    def matching(category: str, severity: int) -> set[str]:
        return {
            str(a["alert_id"]) for a in second.alerts if a["category"] == category and int(a["severity"]) >= severity
        }

    cyber = matching("cyber", 3)
    assert cyber, "the demo traces raise cyber alerts of severity 3 or more"
    deadline, received = time.monotonic() + 10, receive_all(queue_url)
    while {m["alert_id"] for m in received} != cyber and time.monotonic() < deadline:
        received += receive_all(queue_url)
    assert {m["alert_id"] for m in received} == cyber
    assert all(m["message_type"] == "alert" and m["category"] == "cyber" for m in received)
    # And the chat webhook received the formatted messages of exactly the matching bio_chem alerts
    bio = {a_id: a for a_id, a in ((str(a["alert_id"]), a) for a in second.alerts) if a_id in matching("bio_chem", 2)}
    assert bio and second.chat["dead_lettered"] == 0
    posted = {a_id for a_id, a in bio.items() for text in webhook.texts if f"trace `{a['trace_id']}`" in text}
    assert posted == set(bio)
    assert all("*bio_chem* severity" in text and "> " in text for text in webhook.texts)
    assert second.chat["delivered"] == len(webhook.texts)

    # When one alert is resolved as a false positive with a note
    target = sorted(cyber)[0]
    cli(capsys, "alerts", "resolve", target, "--verdict", "false_positive", "--note", "red-team exercise", *api)
    # Then `alerts show` has the verdict and the audited change (who, when, note)
    shown = cli(capsys, "alerts", "show", target, *api)
    assert f"alert {target}  resolved (false_positive)" in shown
    assert 'resolved -> resolved verdict=false_positive  "red-team exercise"' in shown
    audit = json.loads(cli(capsys, "alerts", "show", target, "--json", *api))["audit"]
    assert audit[0]["action"] == "created" and audit[-1]["action"] == "resolved"
    assert info.names.stack_name.startswith("dw-")
