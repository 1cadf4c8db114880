"""The published alert contract: the SNS messages and the API's alert document, as a versioned JSON Schema
shipped in the package (``cotwatch/data/alert.v1.schema.json``). Subscribers code against the schema; a
test validates every message the publisher sends against it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from cotwatch.alerts import Alert
from cotwatch.ports import Digest

CONTRACT_VERSION = 1
SCHEMA_RESOURCE = f"alert.v{CONTRACT_VERSION}.schema.json"


@cache
def alert_schema() -> dict[str, Any]:
    text = resources.files("cotwatch").joinpath("data", SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def alert_link(alert_id: str) -> str:
    """The alert's path on the alerts API (relative: the scorer does not know where the API is served)."""
    return f"/alerts/{alert_id}"


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} minutes" if seconds % 60 == 0 and seconds >= 120 else f"{seconds} seconds"


def alert_message_document(alert: Alert, event: str) -> dict[str, Any]:
    return {
        **alert.model_dump(mode="json"),
        "contract_version": CONTRACT_VERSION,
        "message_type": "alert",
        "event": event,
        "links": {"self": alert_link(alert.alert_id)},
    }


def alert_message(alert: Alert, event: str) -> str:
    """The SNS message of an alert event (``created``, ``escalated``, ``reopened``)."""
    return json.dumps(alert_message_document(alert, event), separators=(",", ":"))


def digest_message_document(digest: Digest) -> dict[str, Any]:
    return {
        **digest.model_dump(mode="json"),
        "contract_version": CONTRACT_VERSION,
        "message_type": "digest",
        "event": "digest",
        "summary": f"and {digest.count} more in the last {_minutes(digest.window_seconds)}",
        "links": {"alerts": [alert_link(a) for a in digest.alert_ids[:20]]},
    }


def digest_message(digest: Digest) -> str:
    """The SNS message of a cooldown window's held-back alerts."""
    return json.dumps(digest_message_document(digest), separators=(",", ":"))


# Bookkeeping of the store (and its index keys), not part of the contract.
_INTERNAL_FIELDS = frozenset(
    {"notified", "pending_event", "version", "expires_at", "tenant_status", "tenant_category", "tenant_model"}
)


def _plain(value: Any) -> Any:
    """DynamoDB hands numbers back as Decimal: integers stay integers, the rest become floats."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def alert_document(item: dict[str, Any]) -> dict[str, Any]:
    """A stored alert as the API returns it (``$defs/alert_document`` of the schema)."""
    plain = {k: _plain(v) for k, v in item.items() if k not in _INTERNAL_FIELDS}
    # Scores are floats in the contract even when DynamoDB holds a whole number.
    for name in ("score", "threshold"):
        plain[name] = float(plain[name])
    for entry in plain.get("evidence", []):
        entry["score"] = float(entry["score"])
    plain.setdefault("status", "open")
    plain.setdefault("verdict", None)
    plain.setdefault("audit", [])
    plain.setdefault("updated_at", plain.get("created_at"))
    return {**plain, "contract_version": CONTRACT_VERSION, "links": {"self": alert_link(str(plain["alert_id"]))}}
