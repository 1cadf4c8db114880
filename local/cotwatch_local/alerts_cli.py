"""``cotwatch alerts list|show|ack|resolve`` and ``cotwatch subscribe|unsubscribe|subscriptions``.

With ``--api-url`` (or ``COTWATCH_API_URL``) they call a deployed alerts API with ``--token`` (or
``COTWATCH_TOKEN``) as the bearer JWT. Without it they run ``functions/alerts_api/app.py`` in this process
behind a loopback HTTP server on the local stack, so they exercise the code API Gateway would invoke.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import quote, urlencode

API_FUNCTION = "AlertsApiFunction"
VERDICTS = ["true_positive", "false_positive", "benign_refusal", "needs_policy"]


class ApiCallError(SystemExit):
    """An API answer outside 2xx: exits the CLI with the API's message."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = f"{self._base}{path}" + (f"?{urlencode(params)}" if params else "")
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiCallError(exc.code, f"{method} {path}: {exc.code} {_message(exc.read())}") from exc
        except urllib.error.URLError as exc:
            raise SystemExit(f"cannot reach the alerts API at {self._base}: {exc.reason}") from exc
        return json.loads(raw) if raw else None


def _message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    if isinstance(body, dict) and "detail" in body:  # powertools' request validation
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg', d)}" for d in body["detail"])
    return json.dumps(body)


@contextmanager
def api_client(args: argparse.Namespace) -> Iterator[ApiClient]:
    url = args.api_url or os.environ.get("COTWATCH_API_URL")
    token = args.token or os.environ.get("COTWATCH_TOKEN")
    if url:
        yield ApiClient(url, token)
        return
    from cotwatch_local.api_server import LocalApiServer
    from cotwatch_local.cli import _invoker_for, _stack_info
    from cotwatch_local.invoker import patched_environ
    from cotwatch_local.stack import aws_env

    invoker = _invoker_for(API_FUNCTION, use_stack=True)
    # Loopback chat webhooks (http://127.0.0.1:...) are accepted on the local stack only.
    invoker.set_environment(API_FUNCTION, {**invoker.environment(API_FUNCTION), "ALLOW_LOOPBACK_WEBHOOKS": "true"})
    # This process's own AWS calls (resolving an SQS queue) go to the local stack too.
    with (
        patched_environ(aws_env(_stack_info().aws_endpoint_url)),
        LocalApiServer(lambda event: dict(invoker.invoke(API_FUNCTION, event))) as local_url,
    ):
        yield ApiClient(local_url, token)


# ------------------------------------------------------------------------------------------ output


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], out: TextIO) -> None:
    cells = [[str(row.get(key) if row.get(key) is not None else "-") for key, _ in columns] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title) in enumerate(columns)]
    out.write("  ".join(t.ljust(w) for (_, t), w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


ALERT_COLUMNS = [
    ("alert_id", "ID"), ("created_at", "CREATED"), ("tenant", "TENANT"), ("model", "MODEL"),
    ("category", "CATEGORY"), ("severity", "SEV"), ("status", "STATUS"), ("verdict", "VERDICT"),
    ("trace_id", "TRACE"),
]  # fmt: skip


def render_alert(alert: dict[str, Any], out: TextIO) -> None:
    out.write(
        f"alert {alert['alert_id']}  {alert['status']}"
        + (f" ({alert['verdict']})" if alert.get("verdict") else "")
        + "\n"
    )
    for key in ("tenant", "model", "category", "severity", "score", "threshold", "disposition", "trace_id",
                "conversation_id", "source", "created_at", "updated_at", "scorer_version", "calibration_version"):  # fmt: skip
        out.write(f"  {key:<20} {alert.get(key)}\n")
    out.write("  evidence\n")
    for e in alert.get("evidence", []):
        out.write(
            f"    chunk {e['chunk_seq']} {e['segment']} [{e['start']}:{e['end']}] {e['score']:.3f}  {e['excerpt']}\n"
        )
    out.write("  audit\n")
    for entry in alert.get("audit", []):
        extra = "".join(f" {k}={entry[k]}" for k in ("verdict",) if entry.get(k))
        note = f'  "{entry["note"]}"' if entry.get("note") else ""
        out.write(f"    {entry['at']}  {entry['who']}  {entry['action']} -> {entry['status']}{extra}{note}\n")


# ------------------------------------------------------------------------------------------ commands


def cmd_local_notify(command: str) -> int:
    from cotwatch_local.cli import _stack_info
    from cotwatch_local.invoker import patched_environ
    from cotwatch_local.notify import CHAT_NOTIFIER, DIGEST_FLUSH, deliver_chat, flush_digests

    info = _stack_info()
    with patched_environ(info.aws_env):
        if command == "flush-digests":
            result = flush_digests(info.env_for(DIGEST_FLUSH))
            print(f"published {result['digests']} digests of {result['alerts']} held-back alerts")
        else:
            totals = deliver_chat(info.names, info.env_for(CHAT_NOTIFIER))
            print(
                f"{totals['messages']} alert-topic messages: {totals['delivered']} chat posts, "
                f"{totals['dead_lettered']} dead-lettered"
            )
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    if args.alerts_command in ("flush-digests", "deliver-chat"):
        return cmd_local_notify(args.alerts_command)
    out = sys.stdout
    with api_client(args) as api:
        if args.alerts_command == "list":
            query = {
                "tenant": args.tenant, "category": args.category, "model": args.model, "status": args.status,
                "min_severity": args.min_severity, "since": args.since, "until": args.until, "limit": args.limit,
            }  # fmt: skip
            try:
                alerts, cursor = _list_pages(api, query, args.all)
            except ApiCallError as exc:
                if exc.status != 400 or args.tenant or args.category:
                    raise
                # A caller over several tenants must name a partition (the API never scans): list each
                # category of the packaged taxonomy and merge, newest first.
                from cotwatch.detection.taxonomy import load_taxonomy

                alerts, cursor = [], None
                for category in load_taxonomy().category_ids:
                    alerts += _list_pages(api, {**query, "category": category}, True)[0]
                alerts.sort(key=lambda a: str(a["created_at"]), reverse=True)
                if not args.all:
                    alerts = alerts[: args.limit]
            if args.json:
                json.dump({"alerts": alerts, "next_cursor": cursor}, out, indent=2)
                out.write("\n")
            else:
                _table(alerts, ALERT_COLUMNS, out)
                if cursor:
                    out.write("(more: --all)\n")
            return 0
        path = f"/alerts/{quote(args.alert_id, safe='')}"
        if args.alerts_command == "show":
            alert = api.call("GET", path)
        elif args.alerts_command == "ack":
            alert = api.call("POST", f"{path}/ack", body={"note": args.note})
        else:
            alert = api.call("POST", f"{path}/resolve", body={"verdict": args.verdict, "note": args.note})
    if args.json:
        json.dump(alert, out, indent=2)
        out.write("\n")
    else:
        render_alert(alert, out)
    return 0


def _list_pages(api: ApiClient, query: dict[str, Any], follow: bool) -> tuple[list[dict[str, Any]], str | None]:
    alerts: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.call("GET", "/alerts", query={**query, "cursor": cursor})
        alerts += page["alerts"]
        cursor = page.get("next_cursor")
        if cursor is None or not follow:
            return alerts, cursor


def sqs_arn(name_or_arn: str) -> str:
    """The queue's ARN, with a policy that lets the alert topic deliver to it (created if missing)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name_or_arn)["QueueUrl"]  # returns the existing queue's URL if it exists
    arn = str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "CotwatchAlerts", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": arn}],
    }  # fmt: skip
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return arn


def cmd_subscribe(args: argparse.Namespace) -> int:
    options = (("email", args.email), ("https", args.https), ("sqs", args.sqs), ("chat", args.chat_webhook))
    targets = [(p, v) for p, v in options if v]
    if len(targets) != 1:
        raise SystemExit("give exactly one of --email ADDRESS, --https URL, --sqs QUEUE, --chat-webhook URL")
    [(protocol, endpoint)] = targets
    with api_client(args) as api:
        if protocol == "sqs":
            endpoint = sqs_arn(endpoint)
        if protocol == "chat" and not (args.api_url or os.environ.get("COTWATCH_API_URL")):
            from cotwatch_local.cli import _stack_info
            from cotwatch_local.notify import ensure_chat_feed

            ensure_chat_feed(_stack_info().names)  # locally the rig plays SNS's delivery to the notifier
        body = {
            "protocol": protocol, "endpoint": endpoint, "categories": args.category, "min_severity": args.min_severity,
            "tenants": args.tenant, "models": args.model,
        }  # fmt: skip
        created = api.call("POST", "/subscriptions", body={k: v for k, v in body.items() if v is not None})
    if args.json:
        json.dump(created, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        shown = created["endpoint"]  # a chat webhook is shown masked: its URL is a credential
        print(f"subscribed {created['id']}: {protocol} {shown} filter {json.dumps(created['filter_policy'])}")
    return 0


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    with api_client(args) as api:
        api.call("DELETE", f"/subscriptions/{quote(args.subscription_id, safe='')}")
    print(f"unsubscribed {args.subscription_id}")
    return 0


def cmd_subscriptions(args: argparse.Namespace) -> int:
    with api_client(args) as api:
        subscriptions = api.call("GET", "/subscriptions")["subscriptions"]
    if args.json:
        json.dump(subscriptions, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        rows = [{**s, "filter": json.dumps(s["filter_policy"], separators=(",", ":"))} for s in subscriptions]
        _table(
            rows, [("id", "ID"), ("protocol", "PROTOCOL"), ("endpoint", "ENDPOINT"), ("filter", "FILTER")], sys.stdout
        )
    return 0


# ------------------------------------------------------------------------------------------ parsers


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", help="a deployed alerts API (default: COTWATCH_API_URL, else the local stack)")
    parser.add_argument("--token", help="bearer JWT for the API (default: COTWATCH_TOKEN; none = local operator)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_commands(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="list, show, acknowledge and resolve alerts (alerts API)")
    actions = alerts.add_subparsers(dest="alerts_command", required=True)
    listing = actions.add_parser("list", help="alerts newest first")
    for name in ("tenant", "category", "model"):
        listing.add_argument(f"--{name}")
    listing.add_argument("--status", choices=["open", "acknowledged", "resolved"])
    listing.add_argument("--min-severity", type=int, choices=[1, 2, 3, 4])
    listing.add_argument("--since", help="ISO time with zone, e.g. 2026-12-07T12:00:00Z")
    listing.add_argument("--until", help="ISO time with zone")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--all", action="store_true", help="follow the cursors to the last page")
    show = actions.add_parser("show", help="one alert with its evidence and audit trail")
    show.add_argument("alert_id")
    ack = actions.add_parser("ack", help="acknowledge an open alert")
    ack.add_argument("alert_id")
    ack.add_argument("--note")
    resolve = actions.add_parser("resolve", help="resolve an alert with a verdict")
    resolve.add_argument("alert_id")
    resolve.add_argument("--verdict", required=True, choices=VERDICTS)
    resolve.add_argument("--note")
    for parser in (listing, show, ack, resolve):
        _api_options(parser)
    actions.add_parser("flush-digests", help="local stack: one run of the digest flush (the schedule's job)")
    actions.add_parser("deliver-chat", help="local stack: post the alert topic's new messages to chat webhooks")
    alerts.set_defaults(func=cmd_alerts)

    subscribe = sub.add_parser("subscribe", help="subscribe an email, https endpoint or SQS queue to matching alerts")
    subscribe.add_argument("--category", action="append", help="repeatable")
    subscribe.add_argument("--min-severity", type=int, choices=[1, 2, 3, 4])
    subscribe.add_argument("--tenant", action="append", help="repeatable; default: your token's tenants")
    subscribe.add_argument("--model", action="append", help="repeatable")
    subscribe.add_argument("--email")
    subscribe.add_argument("--https", metavar="URL")
    subscribe.add_argument("--sqs", metavar="QUEUE", help="queue name (created if missing, policy set) or ARN")
    subscribe.add_argument(
        "--chat-webhook", metavar="URL", help="Slack-compatible incoming webhook (https; locally also http loopback)"
    )
    _api_options(subscribe)
    subscribe.set_defaults(func=cmd_subscribe)
    unsubscribe = sub.add_parser("unsubscribe", help="delete a subscription")
    unsubscribe.add_argument("subscription_id")
    _api_options(unsubscribe)
    unsubscribe.set_defaults(func=cmd_unsubscribe)
    subscriptions = sub.add_parser("subscriptions", help="the subscriptions you may see")
    _api_options(subscriptions)
    subscriptions.set_defaults(func=cmd_subscriptions)
