"""What the alerts API does, apart from HTTP: who the caller is and which tenants they may see, listing
alerts through the table's indexes with opaque cursors, and subscriptions as SNS filter policies.

Tenant scope comes from the token: a caller scoped to some tenants can read, triage and subscribe to those
tenants' alerts only; anything else is answered as if it did not exist (404) or refused (403).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cotwatch.chat_routes import check_webhook_url

ALL_TENANTS = "*"
DEFAULT_TENANT_CLAIM = "cotwatch:tenants"
ALERT_ID = re.compile(r"^[0-9a-f]{32}$")


class ApiError(Exception):
    """A request the API refuses, with the status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Caller:
    who: str
    tenants: frozenset[str] | None  # None: every tenant (an operator)

    def allows(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def require(self, tenants: Sequence[str]) -> None:
        outside = sorted(t for t in tenants if not self.allows(t))
        if outside:
            raise ApiError(403, f"your token is not scoped to tenant(s) {', '.join(outside)}")


def _claim_values(value: Any) -> list[str]:
    """HTTP API JWT claims arrive as strings; an array claim as ``[a b]`` or a JSON array."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        except json.JSONDecodeError:
            text = text[1:-1]
    return [v for v in re.split(r"[\s,]+", text) if v]


def caller_from_event(event: Mapping[str, Any], tenant_claim: str = DEFAULT_TENANT_CLAIM) -> Caller:
    """The caller of an API Gateway v2 event: JWT claims (tenant claim, sub/email) or an IAM principal.

    IAM callers are operators (the IAM policy is what scopes them), so they see every tenant."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    jwt = authorizer.get("jwt")
    if jwt is not None:
        claims = jwt.get("claims") or {}
        who = str(claims.get("email") or claims.get("sub") or "")
        if not who:
            raise ApiError(401, "the token has neither a sub nor an email claim")
        if tenant_claim not in claims:
            raise ApiError(403, f"the token has no {tenant_claim!r} claim: no tenant scope")
        tenants = _claim_values(claims[tenant_claim])
        if not tenants:
            raise ApiError(403, f"the token's {tenant_claim!r} claim is empty: no tenant scope")
        return Caller(who=who, tenants=None if ALL_TENANTS in tenants else frozenset(tenants))
    iam = authorizer.get("iam")
    if iam is not None:
        who = str(iam.get("userArn") or iam.get("userId") or "")
        if not who:
            raise ApiError(401, "the IAM principal has no ARN")
        return Caller(who=who, tenants=None)
    raise ApiError(401, "no authorizer context: the API must be called through its JWT or IAM authorizer")


# ------------------------------------------------------------------------------------------ listing


class AlertFilter(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str | None = None
    category: str | None = None
    model: str | None = None
    status: Literal["open", "acknowledged", "resolved"] | None = None
    min_severity: int | None = Field(default=None, ge=1, le=4)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=50, ge=1, le=200)


@dataclass(frozen=True)
class IndexQuery:
    """Which index answers a listing, on which partition."""

    index: str
    key_name: str
    key_value: str
    tenants_filter: frozenset[str] | None  # tenants the caller may see, when the partition is not one tenant
    covers: frozenset[str] = frozenset()  # the filter fields the partition key already answers


# A tenant's listing narrowed by one of these is a Query on that index's "tenant#value" partition
# (most selective first); the other filters are filter expressions on what it reads.
TENANT_INDEXES = (
    ("category", "by_tenant_category", "tenant_category"),
    ("status", "by_tenant_status", "tenant_status"),
    ("model", "by_tenant_model", "tenant_model"),
)


def plan_listing(caller: Caller, wanted: AlertFilter) -> IndexQuery:
    """A tenant's alerts come from ``by_tenant`` or, narrowed by category, status or model, from the index
    keyed on that pair; an operator's of one category across tenants from ``by_category``. Never a scan: a
    listing that names neither a tenant nor a category is refused."""
    tenant = wanted.tenant
    if tenant is None and caller.tenants is not None and len(caller.tenants) == 1:
        [tenant] = caller.tenants
    if tenant is not None:
        caller.require([tenant])
        for field, index, key_name in TENANT_INDEXES:
            value = getattr(wanted, field)
            if value is not None:
                return IndexQuery(index, key_name, f"{tenant}#{value}", None, frozenset({field}))
        return IndexQuery("by_tenant", "tenant", tenant, None)
    if wanted.category is not None:
        return IndexQuery("by_category", "category", wanted.category, caller.tenants, frozenset({"category"}))
    raise ApiError(400, "name a tenant (tenant=...) or a category (category=...) to list alerts")


def encode_cursor(query: IndexQuery, key: Mapping[str, Any]) -> str:
    payload = {"i": query.index, "k": {k: str(v) for k, v in key.items()}}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(query: IndexQuery, cursor: str) -> dict[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        key = payload["k"]
        index = payload["i"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "cursor is not one this API issued") from exc
    expected = {"alert_id", "created_at", query.key_name}
    if index != query.index or not isinstance(key, dict) or set(key) != expected:
        raise ApiError(400, "cursor belongs to a different listing: repeat the query's filters with it")
    if key[query.key_name] != query.key_value:
        raise ApiError(400, "cursor belongs to a different listing: repeat the query's filters with it")
    return {str(k): str(v) for k, v in key.items()}


# ------------------------------------------------------------------------------------------ subscriptions

Protocol = Literal["email", "https", "sqs", "chat"]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SQS_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?$")


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Protocol
    endpoint: str = Field(min_length=3, max_length=2048)
    categories: list[str] | None = None
    min_severity: int | None = Field(default=None, ge=1, le=4)
    tenants: list[str] | None = None
    models: list[str] | None = None

    @field_validator("categories", "tenants", "models")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not v for v in value)):
            raise ValueError("give at least one non-empty value, or leave the field out")
        return value

    def checked_endpoint(self, *, allow_loopback_http: bool = False) -> str:
        if self.protocol == "chat":
            try:
                return check_webhook_url(self.endpoint, allow_loopback_http=allow_loopback_http)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from exc
        if self.protocol == "email" and not _EMAIL.match(self.endpoint):
            raise ApiError(400, f"{self.endpoint!r} is not an email address")
        if self.protocol == "https" and not self.endpoint.startswith("https://"):
            raise ApiError(400, "an https subscription needs an https:// URL")
        if self.protocol == "sqs" and not _SQS_ARN.match(self.endpoint):
            raise ApiError(400, "an sqs subscription needs the queue's ARN (arn:aws:sqs:region:account:name)")
        return self.endpoint


def filter_policy(request: SubscriptionRequest, caller: Caller) -> dict[str, Any]:
    """The SNS filter policy on the alert topic's message attributes. A scoped caller's subscription is
    always limited to tenants it may see (its whole scope when it names none)."""
    tenants = request.tenants
    if tenants is not None:
        caller.require(tenants)
    elif caller.tenants is not None:
        tenants = sorted(caller.tenants)
    policy: dict[str, Any] = {}
    if tenants is not None:
        policy["tenant"] = sorted(set(tenants))
    if request.categories is not None:
        policy["category"] = sorted(set(request.categories))
    if request.models is not None:
        policy["model"] = sorted(set(request.models))
    if request.min_severity is not None:
        policy["severity"] = [{"numeric": [">=", request.min_severity]}]
    return policy


def policy_visible_to(policy: Mapping[str, Any], caller: Caller) -> bool:
    """A subscription is the caller's business if every tenant it can receive is in the caller's scope."""
    if caller.tenants is None:
        return True
    tenants = policy.get("tenant")
    return isinstance(tenants, list) and bool(tenants) and all(caller.allows(str(t)) for t in tenants)
