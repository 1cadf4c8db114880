"""Chat subscriptions in DynamoDB, and the API's subscriptions routed by protocol.

Every chat subscription is one item of the chat subscriptions table under a single partition
(``pk = "chat"``, ``sk`` = the subscription id), so the notifier reads them all with one Query, never a Scan.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from cotwatch.adapters.aws import dynamodb_resource
from cotwatch.alerts_api import ApiError, Caller, SubscriptionRequest, filter_policy, policy_visible_to
from cotwatch.chat_routes import CHAT_ID, CHAT_ID_PREFIX, masked

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBServiceResource

    from cotwatch.handlers.alerts_api import Subscriptions

PARTITION = "chat"


@dataclass(frozen=True)
class ChatRoute:
    subscription_id: str
    webhook_url: str
    policy: dict[str, Any]


class DynamoChatSubscriptions:
    def __init__(self, table_name: str, ddb: DynamoDBServiceResource | None = None) -> None:
        self._table = (ddb or dynamodb_resource()).Table(table_name)

    def create(self, caller: Caller, request: SubscriptionRequest, webhook_url: str) -> dict[str, Any]:
        policy = filter_policy(request, caller)
        subscription_id = f"{CHAT_ID_PREFIX}{uuid.uuid4().hex}"
        self._table.put_item(
            Item={
                "pk": PARTITION,
                "sk": subscription_id,
                "webhook_url": webhook_url,
                "filter_policy": json.dumps(policy, sort_keys=True),
                "created_by": caller.who,
                "created_at": datetime.now(UTC).isoformat(),
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
        return _document(subscription_id, webhook_url, policy)

    def routes(self) -> list[ChatRoute]:
        """Every chat subscription (the notifier's read)."""
        found: list[ChatRoute] = []
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(PARTITION), "ConsistentRead": True}
        while True:
            page = self._table.query(**kwargs)
            for item in page.get("Items", []):
                found.append(
                    ChatRoute(str(item["sk"]), str(item["webhook_url"]), json.loads(str(item["filter_policy"])))
                )
            last = page.get("LastEvaluatedKey")
            if last is None:
                return found
            kwargs["ExclusiveStartKey"] = last

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        return [
            _document(r.subscription_id, r.webhook_url, r.policy)
            for r in self.routes()
            if policy_visible_to(r.policy, caller)
        ]

    def delete(self, caller: Caller, subscription_id: str) -> None:
        if not any(s["id"] == subscription_id for s in self.list(caller)):
            raise ApiError(404, f"no subscription {subscription_id!r}")  # or another tenant's: not revealed
        self._table.delete_item(Key={"pk": PARTITION, "sk": subscription_id})


def _document(subscription_id: str, webhook_url: str, policy: dict[str, Any]) -> dict[str, Any]:
    return {"id": subscription_id, "protocol": "chat", "endpoint": masked(webhook_url), "filter_policy": policy}


class RoutedSubscriptions:
    """The API's subscriptions: ``chat`` to the chat subscriptions table, the others to SNS."""

    def __init__(self, sns: Subscriptions, chat: DynamoChatSubscriptions, *, allow_loopback_http: bool) -> None:
        self._sns = sns
        self._chat = chat
        self._allow_loopback_http = allow_loopback_http

    def create(self, caller: Caller, request: SubscriptionRequest) -> dict[str, Any]:
        if request.protocol == "chat":
            url = request.checked_endpoint(allow_loopback_http=self._allow_loopback_http)
            return self._chat.create(caller, request, url)
        return self._sns.create(caller, request)

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        return self._sns.list(caller) + self._chat.list(caller)

    def delete(self, caller: Caller, subscription_id: str) -> None:
        if CHAT_ID.match(subscription_id):
            self._chat.delete(caller, subscription_id)
        else:
            self._sns.delete(caller, subscription_id)
