"""Chat subscriptions end to end on the moto stack: ``cotwatch subscribe --chat-webhook URL`` through the
alerts API (functions/alerts_api/app.py on loopback), alerts published to the alert topic, the rig's SNS
stand-in feeding functions/chat_notifier/app.py, and a real loopback webhook receiving the formatted
messages of exactly the matching alerts."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.integration.test_alerts_cli import demo_like_run, run_cli

from cotwatch.alerts import Alert
from cotwatch_local.api_server import LocalApiServer, unsigned_token
from cotwatch_local.cli import main
from cotwatch_local.cloudformation import function_environment
from cotwatch_local.invoker import LocalInvoker
from cotwatch_local.notify import CHAT_NOTIFIER, deliver_chat, ensure_chat_feed
from cotwatch_local.stack import aws_env

pytestmark = pytest.mark.integration


class Webhook:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/secret-part"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def api_env(names: Any, endpoint: str, *, loopback: bool) -> dict[str, str]:
    return {
        **aws_env(endpoint, names.region),
        **function_environment(names, "AlertsApiFunction", endpoint),
        "ALLOW_LOOPBACK_WEBHOOKS": "true" if loopback else "false",
    }


@pytest.fixture
def api_url(local_aws_env: dict[str, str], local_aws_names: Any, moto_endpoint: str) -> Iterator[str]:
    # As the local CLI serves it: the template's environment, loopback webhooks allowed
    invoker = LocalInvoker()
    invoker.set_environment("AlertsApiFunction", api_env(local_aws_names, moto_endpoint, loopback=True))
    with LocalApiServer(lambda event: dict(invoker.invoke("AlertsApiFunction", event))) as url:
        yield url


def alert_id_in(body: dict[str, Any], alerts: list[Alert]) -> str:
    [found] = [a.alert_id for a in alerts if f"trace `{a.trace_id}`" in body["text"]]
    return found


def test_a_chat_webhook_receives_formatted_messages_for_exactly_the_matching_alerts(
    api_url: str, webhook: Webhook, local_aws_names: Any, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, other = f"chat-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    token = unsigned_token({"sub": "u1", "email": "ana@example.com", "cotwatch:tenants": [tenant]})
    api = ["--api-url", api_url, "--token", token]
    ensure_chat_feed(local_aws_names)  # the rig's stand-in for SNS -> chat notifier (subscribe does it locally)

    # Given a chat subscription for cyber at severity 3 or more, made by a caller scoped to one tenant
    out = run_cli(
        capsys, "subscribe", "--category", "cyber", "--min-severity", "3", "--chat-webhook", webhook.url, *api
    )
    # Then the webhook's secret path is never shown back
    assert out.startswith("subscribed chat-") and "secret-part" not in out and "http://127.0.0.1:" in out
    try:
        # When a demo-like run raises five alerts for that tenant and five for another
        mine = demo_like_run(local_aws_names, tenant)
        demo_like_run(local_aws_names, other)
        env = {
            **aws_env(moto_endpoint, local_aws_names.region),
            **function_environment(local_aws_names, CHAT_NOTIFIER, moto_endpoint),
        }
        totals = deliver_chat(local_aws_names, env)

        # Then the webhook received one formatted message per matching alert: the tenant's cyber, severity >= 3
        matching = {a.alert_id for a in mine if a.category == "cyber" and a.severity >= 3}
        assert len(matching) == 2
        assert sorted(alert_id_in(b, mine) for b in webhook.bodies) == sorted(matching)
        assert totals["delivered"] == 2 and totals["dead_lettered"] == 0
        for body in webhook.bodies:
            assert "*cyber* severity" in body["text"] and f"tenant `{tenant}`" in body["text"]
            assert body["blocks"][0]["type"] == "section"
        # And the subscription is listed with its filter, masked
        [listed] = [s for s in json.loads(run_cli(capsys, "subscriptions", "--json", *api)) if s["protocol"] == "chat"]
        assert listed["filter_policy"] == {
            "category": ["cyber"],
            "severity": [{"numeric": [">=", 3]}],
            "tenant": [tenant],
        }
        assert "secret-part" not in listed["endpoint"]
    finally:
        subscriptions = json.loads(run_cli(capsys, "subscriptions", "--json", *api))
        for sub in subscriptions:
            run_cli(capsys, "unsubscribe", sub["id"], *api)
    # And once deleted it is gone
    assert json.loads(run_cli(capsys, "subscriptions", "--json", *api)) == []


def test_chat_subscriptions_are_scoped_and_https_only_when_deployed(
    local_aws_env: dict[str, str], local_aws_names: Any, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the API as deployed (loopback webhooks refused)
    invoker = LocalInvoker()
    invoker.set_environment("AlertsApiFunction", api_env(local_aws_names, moto_endpoint, loopback=False))
    token = unsigned_token({"sub": "u1", "cotwatch:tenants": "acme"})
    with LocalApiServer(lambda event: dict(invoker.invoke("AlertsApiFunction", event))) as url:
        api = ["--api-url", url, "--token", token]
        # Then a plain-http webhook is a 400, and another tenant's alerts cannot be subscribed to (403)
        with pytest.raises(SystemExit, match="400 a chat webhook needs an https:// URL"):
            main(["subscribe", "--chat-webhook", "http://127.0.0.1:9/hook", *api])
        with pytest.raises(SystemExit, match="403 your token is not scoped to tenant"):
            main(["subscribe", "--chat-webhook", "https://hooks.example.com/x", "--tenant", "globex", *api])
        # And another tenant's chat subscription is answered as missing
        operator = ["--api-url", url]
        created = json.loads(
            run_cli(capsys, "subscribe", "--chat-webhook", "https://hooks.example.com/y", "--tenant", "globex",
                    "--json", *operator)
        )  # fmt: skip
        try:
            with pytest.raises(SystemExit, match="404 no subscription"):
                main(["unsubscribe", created["id"], *api])
            assert all(s["id"] != created["id"] for s in json.loads(run_cli(capsys, "subscriptions", "--json", *api)))
        finally:
            run_cli(capsys, "unsubscribe", created["id"], *operator)
