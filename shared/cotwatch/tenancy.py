"""Which tenant a record may write to, decided by where it came from and never by its payload alone.

Kafka authenticates producers and authorises them per topic (ACLs), so the topic is the one fact about a
record a producer cannot forge. ``TENANT_BINDINGS`` maps each topic the scorer reads to the tenants allowed
on it: ``traces-acme=acme-labs`` binds a topic to one tenant (the payload may omit it); ``traces=acme|nw``
lets one shared topic carry several tenants (weaker: any producer on it may write any of them, see
docs/deploy.md); ``traces=*`` accepts any valid tenant name on that topic (the development default, as
forgeable as the payload itself). A record on an unbound topic (``unbound_topic``), naming a tenant its topic
is not bound to (``tenant_mismatch``) or naming none on a shared topic (``tenant_missing``) is dead-lettered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cotwatch.trace import TENANT_PATTERN

TENANT_RE = re.compile(TENANT_PATTERN)
_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
ANY_TENANT = "*"  # a shared topic: any valid tenant name the payload gives


def valid_tenant(name: str) -> bool:
    return TENANT_RE.fullmatch(name) is not None


def check_tenant(name: str) -> str:
    """``name`` if it is a valid tenant name, else ``ValueError`` (settings, API and CLI use this)."""
    if not valid_tenant(name):
        raise ValueError(f"{name!r} is not a tenant name (lower-case letters, digits and '-', at most 63)")
    return name


def parse_tenant_bindings(value: object) -> dict[str, frozenset[str]]:
    """``topic=tenant[|tenant...]``, comma-separated; every topic and tenant name checked."""
    items: list[tuple[str, list[str]]] = []
    if isinstance(value, Mapping):
        for topic, tenants in value.items():
            names = str(tenants).split("|") if isinstance(tenants, str) else [str(t) for t in tenants]
            items.append((str(topic), names))
    elif isinstance(value, str):
        for entry in filter(None, (e.strip() for e in value.split(","))):
            topic, sep, tenants = (p.strip() for p in entry.partition("="))
            if not sep or not tenants:
                raise ValueError(f"{entry!r}: expected topic=tenant or topic=tenant|tenant")
            items.append((topic, tenants.split("|")))
    else:
        raise ValueError("expected a comma-separated list of topic=tenant[|tenant]")
    bindings: dict[str, frozenset[str]] = {}
    for topic, tenants in items:
        if not _KAFKA_TOPIC.match(topic):
            raise ValueError(f"{topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
        if topic in bindings:
            raise ValueError(f"topic {topic!r} is bound twice")
        names = [t.strip() for t in tenants]
        if ANY_TENANT in names and len(names) > 1:
            raise ValueError(f"topic {topic!r}: '*' cannot be combined with named tenants")
        bindings[topic] = frozenset(n if n == ANY_TENANT else check_tenant(n) for n in names)
    return bindings


@dataclass(frozen=True)
class TenantBinding:
    """The tenants each topic may carry."""

    topics: Mapping[str, frozenset[str]]

    def resolve(self, topic: str, payload_tenant: str | None) -> tuple[str | None, str, str]:
        """``(tenant, "", "")`` when the record may write to it, else ``(None, reason, detail)``.

        ``payload_tenant`` None means the payload named none: only a topic bound to one tenant fills it in."""
        allowed = self.topics.get(topic)
        if not allowed:
            return None, "unbound_topic", f"topic {topic!r} is bound to no tenant (TENANT_BINDINGS)"
        if payload_tenant is None:
            if len(allowed) == 1 and ANY_TENANT not in allowed:
                return next(iter(allowed)), "", ""
            return None, "tenant_missing", f"topic {topic!r} carries several tenants and the record names none"
        if ANY_TENANT in allowed and valid_tenant(payload_tenant):
            return payload_tenant, "", ""
        if payload_tenant not in allowed:
            return None, "tenant_mismatch", f"payload tenant {payload_tenant!r} is not bound to topic {topic!r}"
        return payload_tenant, "", ""
