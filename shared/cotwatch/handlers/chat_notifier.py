"""The ``chat_notifier`` Lambda handler: alert-topic messages (SNS events) to Slack-compatible webhooks.

Each message goes to the stack's default webhook (if one is configured) and to every chat subscription
whose filter policy matches its message attributes. A delivery that fails after the sender's retries, or a
message that is not a contract message, goes to the dead-letter queue with its reason and the target's
name (never its URL: webhook URLs are credentials); the invocation itself succeeds so SNS does not redeliver
the message and post again to the webhooks that did take it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from cotwatch import observability as obs
from cotwatch.chat import Delivery, slack_payload
from cotwatch.chat_routes import attribute_values, policy_matches

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
DEFAULT_TARGET = "default"


class Sender(Protocol):
    def post(self, url: str, payload: dict[str, Any]) -> Delivery: ...


@dataclass(frozen=True)
class Target:
    name: str  # "default" or the subscription id: what logs and dead letters name
    url: str
    policy: dict[str, Any] | None = None  # None: every message


class Route(Protocol):
    @property
    def subscription_id(self) -> str: ...

    @property
    def webhook_url(self) -> str: ...

    @property
    def policy(self) -> dict[str, Any]: ...


DeadLetter = Callable[[dict[str, Any]], None]
Routes = Callable[[], Sequence[Route]]


def targets_for(attributes: dict[str, str | float], targets: Sequence[Target]) -> list[Target]:
    return [t for t in targets if t.policy is None or policy_matches(t.policy, attributes)]


def make_handler(
    sender: Sender,
    webhook_url: str | None,
    dead_letter: DeadLetter,
    *,
    routes: Routes | None = None,
    alert_base_url: str | None = None,
    logger: Logger | None = None,
) -> Handler:
    logger = logger or Logger(service=obs.SERVICE)
    default = [Target(DEFAULT_TARGET, webhook_url)] if webhook_url else []

    @logger.inject_lambda_context
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        delivered = dead = 0
        # Subscriptions are read once per invocation: one that is created meanwhile gets the next message.
        subscribed = [Target(r.subscription_id, r.webhook_url, r.policy) for r in (routes() if routes else [])]
        for record in event.get("Records", []):
            sns = record.get("Sns") or {}
            raw, message_id = sns.get("Message", ""), sns.get("MessageId")
            try:
                message = json.loads(raw)
                payload = slack_payload(message, alert_base_url)
                attributes = attribute_values(sns.get("MessageAttributes") or {})
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                dead_letter({"reason": "not_a_contract_message", "detail": f"{type(exc).__name__}: {exc}",
                             "message_id": message_id, "message": raw[:200_000]})  # fmt: skip
                dead += 1
                continue
            for target in targets_for(attributes, default + subscribed):
                result = sender.post(target.url, payload)
                if result.delivered:
                    delivered += 1
                    continue
                logger.warning(
                    "chat delivery failed",
                    extra={"message_id": message_id, "target": target.name, "reason": result.reason},
                )
                dead_letter({"reason": "undeliverable", "detail": result.reason, "status": result.status,
                             "attempts": result.attempts, "target": target.name, "message_id": message_id,
                             "message": message})  # fmt: skip
                dead += 1
        return {"delivered": delivered, "dead_lettered": dead}

    handler: Handler = lambda_handler
    return handler
