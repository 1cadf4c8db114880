"""The ``chat_notifier`` Lambda handler: alert-topic messages (SNS events) to a Slack-compatible webhook.

A message that cannot be delivered after the sender's retries, or that is not a contract message, goes to
the dead-letter queue with its reason; the invocation itself succeeds so SNS does not redeliver the batch
and post again what was already delivered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from cotwatch import observability as obs
from cotwatch.chat import Delivery, slack_payload

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


class Sender(Protocol):
    def post(self, url: str, payload: dict[str, Any]) -> Delivery: ...


DeadLetter = Callable[[dict[str, Any]], None]


def make_handler(
    sender: Sender,
    webhook_url: str,
    dead_letter: DeadLetter,
    *,
    alert_base_url: str | None = None,
    logger: Logger | None = None,
) -> Handler:
    logger = logger or Logger(service=obs.SERVICE)

    @logger.inject_lambda_context
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        delivered = dead = 0
        for record in event.get("Records", []):
            raw = (record.get("Sns") or {}).get("Message", "")
            message_id = (record.get("Sns") or {}).get("MessageId")
            try:
                message = json.loads(raw)
                payload = slack_payload(message, alert_base_url)
            except (ValueError, KeyError, TypeError) as exc:
                dead_letter({"reason": "not_a_contract_message", "detail": f"{type(exc).__name__}: {exc}",
                             "message_id": message_id, "message": raw[:200_000]})  # fmt: skip
                dead += 1
                continue
            result = sender.post(webhook_url, payload)
            if result.delivered:
                delivered += 1
                continue
            logger.warning("chat delivery failed", extra={"message_id": message_id, "reason": result.reason})
            dead_letter({"reason": "undeliverable", "detail": result.reason, "status": result.status,
                         "attempts": result.attempts, "message_id": message_id, "message": message})  # fmt: skip
            dead += 1
        return {"delivered": delivered, "dead_lettered": dead}

    handler: Handler = lambda_handler
    return handler
