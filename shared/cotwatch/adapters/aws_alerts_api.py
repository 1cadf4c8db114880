"""boto3 side of the alerts API: index queries over the alerts table and subscriptions on the alert topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key

from cotwatch.adapters.aws import dynamodb_resource, sns_client
from cotwatch.alerts_api import (
    AlertFilter,
    ApiError,
    Caller,
    IndexQuery,
    SubscriptionRequest,
    decode_cursor,
    encode_cursor,
    filter_policy,
    plan_listing,
    policy_visible_to,
)
from cotwatch.contract import alert_document

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBServiceResource
    from mypy_boto3_sns import SNSClient

MAX_QUERY_PAGES = 20  # a sparse filter reads at most this many index pages per API page


class DynamoAlertQuery:
    def __init__(self, table_name: str, ddb: DynamoDBServiceResource | None = None) -> None:
        self._table = (ddb or dynamodb_resource()).Table(table_name)

    def list(self, caller: Caller, wanted: AlertFilter, cursor: str | None) -> dict[str, Any]:
        query = plan_listing(caller, wanted)
        key: ConditionBase = Key(query.key_name).eq(query.key_value)
        since, until = _bound(wanted.since, ""), _bound(wanted.until, "Z")
        if since is not None and until is not None:
            key = key & Key("created_at").between(since, until)
        elif since is not None:
            key = key & Key("created_at").gte(since)
        elif until is not None:
            key = key & Key("created_at").lte(until)
        filters = _filters(query, wanted)
        kwargs: dict[str, Any] = {
            "IndexName": query.index,
            "KeyConditionExpression": key,
            "ScanIndexForward": False,  # newest first
        }
        if filters is not None:
            kwargs["FilterExpression"] = filters
        if cursor is not None:
            kwargs["ExclusiveStartKey"] = decode_cursor(query, cursor)
        items: list[dict[str, Any]] = []
        more = False
        for _ in range(MAX_QUERY_PAGES):
            page = self._table.query(**kwargs, Limit=wanted.limit - len(items))
            items += [dict(i) for i in page.get("Items", [])]
            last = page.get("LastEvaluatedKey")
            more = last is not None
            if not more or len(items) >= wanted.limit:
                break
            kwargs["ExclusiveStartKey"] = last
        next_cursor = None
        if items and (more or len(items) >= wanted.limit):
            tail = items[-1]
            next_cursor = encode_cursor(
                query,
                {"alert_id": tail["alert_id"], "created_at": tail["created_at"], query.key_name: tail[query.key_name]},
            )
        return {"alerts": [alert_document(i) for i in items], "next_cursor": next_cursor}


def _bound(moment: datetime | None, suffix: str) -> str | None:
    """A time bound in the stored form (pydantic's UTC ``...Z``), to the second: ``since`` without the
    ``Z`` sorts before every stored time of that second, ``until`` with it after the whole-second one."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ApiError(400, "since/until need a time zone (e.g. 2026-12-07T12:00:00Z)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + suffix


def _filters(query: IndexQuery, wanted: AlertFilter) -> ConditionBase | None:
    conditions: list[ConditionBase] = []
    for field in ("category", "status", "model"):
        value = getattr(wanted, field)
        if value is not None and field not in query.covers:
            conditions.append(Attr(field).eq(value))
    if wanted.min_severity is not None:
        conditions.append(Attr("severity").gte(wanted.min_severity))
    if query.tenants_filter is not None:
        conditions.append(Attr("tenant").is_in(sorted(query.tenants_filter)))
    if not conditions:
        return None
    combined = conditions[0]
    for condition in conditions[1:]:
        combined = combined & condition
    return combined


class SnsSubscriptions:
    """Subscriptions on the alert topic, each a filter policy on the message attributes."""

    def __init__(self, topic_arn: str, sns: SNSClient | None = None) -> None:
        self._topic_arn = topic_arn
        self._sns = sns or sns_client()

    def create(self, caller: Caller, request: SubscriptionRequest) -> dict[str, Any]:
        endpoint = request.checked_endpoint()
        policy = filter_policy(request, caller)
        attributes = {"FilterPolicy": json.dumps(policy), "FilterPolicyScope": "MessageAttributes"}
        if request.protocol in ("sqs", "https"):
            attributes["RawMessageDelivery"] = "true"  # the body is the contract's JSON, not an SNS envelope
        arn = self._sns.subscribe(
            TopicArn=self._topic_arn,
            Protocol=request.protocol,
            Endpoint=endpoint,
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return {
            "id": _subscription_id(arn),
            "protocol": request.protocol,
            "endpoint": endpoint,
            "filter_policy": policy,
        }

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TopicArn": self._topic_arn}
        while True:
            page = self._sns.list_subscriptions_by_topic(**kwargs)
            for sub in page.get("Subscriptions", []):
                arn = sub["SubscriptionArn"]
                if not arn.startswith("arn:"):
                    continue  # pending confirmation: no attributes to read yet
                policy = self._policy(arn)
                if policy_visible_to(policy, caller):
                    found.append(
                        {"id": _subscription_id(arn), "protocol": sub["Protocol"], "endpoint": sub["Endpoint"],
                         "filter_policy": policy}
                    )  # fmt: skip
            token = page.get("NextToken")
            if not token:
                return found
            kwargs["NextToken"] = token

    def delete(self, caller: Caller, subscription_id: str) -> None:
        arn = f"{self._topic_arn}:{subscription_id}"
        for sub in self.list(caller):
            if sub["id"] == subscription_id:
                self._sns.unsubscribe(SubscriptionArn=arn)
                return
        # Another tenant's subscription is answered as if it did not exist.
        raise ApiError(404, f"no subscription {subscription_id!r}")

    def _policy(self, arn: str) -> dict[str, Any]:
        attributes = self._sns.get_subscription_attributes(SubscriptionArn=arn).get("Attributes", {})
        policy: dict[str, Any] = json.loads(attributes.get("FilterPolicy") or "{}")
        return policy


def _subscription_id(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]
