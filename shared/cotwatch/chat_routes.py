"""Chat subscriptions: which webhooks an alert-topic message goes to.

A chat subscription is a record (webhook URL + the same SNS filter policy the other protocols get, from
``cotwatch.alerts_api.filter_policy``) that the chat notifier reads; SNS delivers every alert message to the
notifier once and :func:`policy_matches` applies each record's policy to the message attributes, with SNS's
semantics for the policy shapes ``filter_policy`` writes (string lists, ``numeric >=``).

Webhook URLs are credentials (whoever has a Slack incoming-webhook URL can post to the channel): they are
stored encrypted with the table, never logged, and shown to callers only as :func:`masked`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

CHAT_ID_PREFIX = "chat-"
CHAT_ID = re.compile(r"^chat-[0-9a-f]{32}$")
LOOPBACK_HOSTS = frozenset({"localhost"})


def attribute_values(message_attributes: Mapping[str, Any]) -> dict[str, str | float]:
    """SNS message attributes as a Lambda SNS record carries them (``{"Type", "Value"}``) or as the
    publisher sends them (``{"DataType", "StringValue"}``), as plain values; Numbers become floats."""
    values: dict[str, str | float] = {}
    for name, attribute in message_attributes.items():
        kind = attribute.get("Type") or attribute.get("DataType") or "String"
        raw = attribute.get("Value", attribute.get("StringValue"))
        if raw is None:
            continue
        values[name] = float(raw) if kind == "Number" else str(raw)
    return values


def _condition_matches(condition: Any, value: str | float | None) -> bool:
    if isinstance(condition, dict):
        if set(condition) != {"numeric"}:
            raise ValueError(f"unsupported filter condition {condition!r}")
        operator, bound = condition["numeric"]
        if operator != ">=":
            raise ValueError(f"unsupported numeric operator {operator!r}")
        return isinstance(value, float) and value >= float(bound)
    return value is not None and not isinstance(value, float) and value == condition


def policy_matches(policy: Mapping[str, Any], attributes: Mapping[str, str | float]) -> bool:
    """SNS filter-policy matching (attribute scope): every key must be present and match one of its
    conditions; an empty policy matches everything."""
    for name, conditions in policy.items():
        value = attributes.get(name)
        if not any(_condition_matches(c, value) for c in conditions):
            return False
    return True


def check_webhook_url(url: str, *, allow_loopback_http: bool = False) -> str:
    """An https URL; plain http only to a loopback host and only where allowed (the local rig)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("a chat webhook needs an absolute URL (https://hooks.example.com/...)")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and allow_loopback_http and _loopback(parts.hostname):
        return url
    raise ValueError("a chat webhook needs an https:// URL")


def _loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def masked(url: str) -> str:
    """What a caller is shown of a stored webhook: scheme and host, the secret path hidden."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"
