"""Chat notifications: alert-topic messages as Slack-compatible webhook payloads, delivered with retries.

Retries are urllib3's ``Retry``: exponential backoff on 429 and 5xx, honouring ``Retry-After`` (capped, so
one slow webhook cannot run the function out of time). What still fails is dead-lettered with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SEVERITY_EMOJI = {1: ":large_blue_circle:", 2: ":large_yellow_circle:", 3: ":large_orange_circle:", 4: ":red_circle:"}
MAX_EXCERPT = 280


def _one_line(text: str, limit: int = MAX_EXCERPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _link(base_url: str | None, path: str) -> str | None:
    return f"{base_url.rstrip('/')}{path}" if base_url else None


def slack_payload(message: Mapping[str, Any], base_url: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook payload (``text`` fallback plus blocks) for an alert or digest message."""
    severity = int(message["severity"])
    emoji = SEVERITY_EMOJI.get(severity, ":warning:")
    where = f"model `{message['model']}` · tenant `{message['tenant']}`"
    if message.get("message_type") == "digest":
        text = f"{emoji} cotwatch {message['category']} (severity up to {severity}): {message['summary']} · {where}"
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    event = message.get("event", "created")
    headline = f"{emoji} cotwatch *{message['category']}* severity {severity} ({event}) · {where}"
    evidence = sorted(message.get("evidence", []), key=lambda e: float(e.get("score", 0)), reverse=True)
    fields = [
        f"trace `{message['trace_id']}`",
        f"score {float(message['score']):.2f} / {float(message['threshold']):.2f}",
    ]
    lines = [headline, " · ".join(fields)]
    if evidence:
        lines.append(f"> {_one_line(str(evidence[0]['excerpt']))}")  # excerpts are redacted by the scorer
    link = _link(base_url, str((message.get("links") or {}).get("self", f"/alerts/{message['alert_id']}")))
    if link:
        lines.append(f"<{link}|open alert {message['alert_id']}>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


class CappedRetry(Retry):
    """urllib3's Retry, with ``Retry-After`` honoured up to ``max_retry_after`` seconds."""

    max_retry_after: float = 30.0

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_retry_after)


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    status: int | None
    attempts: int
    reason: str | None = None


class WebhookSender:
    def __init__(
        self,
        *,
        retries: int = 4,
        backoff_factor: float = 0.5,
        max_retry_after: float = 30.0,
        timeout_s: float = 10.0,
    ) -> None:
        retry = CappedRetry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),  # a webhook post is not idempotent by method, but is by design
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        retry.max_retry_after = max_retry_after
        self._http = urllib3.PoolManager(retries=retry, timeout=urllib3.Timeout(total=timeout_s))

    def post(self, url: str, payload: Mapping[str, Any]) -> Delivery:
        try:
            response = self._http.request(
                "POST", url, body=json.dumps(payload).encode(), headers={"content-type": "application/json"}
            )
        except urllib3.exceptions.HTTPError as exc:  # retries exhausted on connection errors
            # MaxRetryError's text holds the URL, whose path is the webhook's secret: name the cause only.
            cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else None
            reason = type(exc).__name__ + (f" ({type(cause).__name__})" if cause is not None else "")
            return Delivery(delivered=False, status=None, attempts=0, reason=reason)
        history = response.retries.history if response.retries is not None else ()
        attempts = len(history) + 1
        if 200 <= response.status < 300:
            return Delivery(delivered=True, status=response.status, attempts=attempts)
        body = response.data[:200].decode("utf-8", "replace")
        return Delivery(
            delivered=False, status=response.status, attempts=attempts, reason=f"HTTP {response.status}: {body}"
        )
