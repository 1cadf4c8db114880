"""Kafka events as Lambda delivers them, for MSK and self-managed Kafka alike.

Lambda's event source mapping sends ``{"eventSource": ..., "records": {"<topic>-<partition>": [record, ...]}}``
with base64 keys and values and headers as arrays of Java (signed) bytes. The local poller builds the
same shape, so a handler cannot tell the two apart.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MSK_SOURCE = "aws:kafka"
SELF_MANAGED_SOURCES = frozenset({"SelfManagedKafka", "aws:SelfManagedKafka"})
KNOWN_SOURCES = frozenset({MSK_SOURCE, *SELF_MANAGED_SOURCES})


class KafkaEventError(ValueError):
    """The event as a whole is not a Kafka event (a single bad record is not this)."""


class KafkaRecord(BaseModel):
    """A decoded Kafka record plus the coordinates needed to report or dead-letter it."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    timestamp_type: str | None = None
    key: bytes | None = None
    value: bytes | None = None
    # Kafka allows a header name more than once, so headers stay an ordered list of (name, value) pairs.
    headers: tuple[tuple[str, bytes], ...] = ()

    @field_validator("headers", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return tuple(value.items()) if isinstance(value, Mapping) else value

    def header(self, name: str) -> bytes | None:
        """The last value sent under ``name`` (what most readers want), or None."""
        found = [v for n, v in self.headers if n == name]
        return found[-1] if found else None

    @property
    def record_id(self) -> str:
        """Unique within a cluster: the natural idempotency key for a record."""
        return f"{self.topic}-{self.partition}@{self.offset}"

    def batch_item_identifier(self) -> dict[str, Any]:
        """The composite identifier Lambda expects in a Kafka partial-batch response."""
        return {"partition": f"{self.topic}-{self.partition}", "offset": self.offset}


class KafkaBatch(BaseModel):
    """One Lambda invocation's worth of Kafka records."""

    event_source: str
    event_source_arn: str | None = None
    bootstrap_servers: list[str] = Field(default_factory=list)
    records: list[KafkaRecord]


def _b64(value: Any, field: str, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KafkaEventError(f"{where}: '{field}' must be a base64 string or null")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KafkaEventError(f"{where}: '{field}' is not valid base64") from exc


def decode_headers(raw: Iterable[Mapping[str, Iterable[int]]] | None) -> tuple[tuple[str, bytes], ...]:
    """Kafka headers arrive as ``[{name: [signed byte, ...]}, ...]``; order and repeated names are kept."""
    return tuple((name, bytes(v & 0xFF for v in values)) for entry in raw or [] for name, values in entry.items())


def encode_headers(headers: Iterable[tuple[str, bytes]]) -> list[dict[str, list[int]]]:
    """The inverse of :func:`decode_headers`, as Lambda writes them (Java signed bytes)."""
    return [{name: [b - 256 if b > 127 else b for b in value]} for name, value in headers]


def parse_kafka_event(event: Mapping[str, Any]) -> KafkaBatch:
    """Decode a Lambda Kafka event; raise :class:`KafkaEventError` when its envelope is malformed."""
    if not isinstance(event, Mapping):
        raise KafkaEventError("event must be a JSON object")
    source = event.get("eventSource")
    if source not in KNOWN_SOURCES:
        raise KafkaEventError(f"unsupported eventSource {source!r}; expected one of {sorted(KNOWN_SOURCES)}")
    groups = event.get("records")
    if not isinstance(groups, Mapping):
        raise KafkaEventError("'records' must map '<topic>-<partition>' to lists of records")
    servers = event.get("bootstrapServers") or ""
    records: list[KafkaRecord] = []
    for group, items in groups.items():
        if not isinstance(items, list):
            raise KafkaEventError(f"records[{group!r}] must be a list")
        for item in items:
            records.append(_parse_record(group, item))
    return KafkaBatch(
        event_source=str(source),
        event_source_arn=event.get("eventSourceArn"),
        bootstrap_servers=[s for s in str(servers).split(",") if s],
        records=records,
    )


def _parse_record(group: str, item: Any) -> KafkaRecord:
    where = f"records[{group!r}]"
    if not isinstance(item, Mapping):
        raise KafkaEventError(f"{where}: each record must be an object")
    try:
        return KafkaRecord(
            topic=item["topic"],
            partition=item["partition"],
            offset=item["offset"],
            timestamp_ms=item.get("timestamp"),
            timestamp_type=item.get("timestampType"),
            key=_b64(item.get("key"), "key", where),
            value=_b64(item.get("value"), "value", where),
            headers=decode_headers(item.get("headers")),
        )
    except KeyError as exc:
        raise KafkaEventError(f"{where}: record lacks {exc.args[0]!r}") from exc
    except (ValidationError, TypeError, AttributeError) as exc:
        raise KafkaEventError(f"{where}: malformed record: {exc}") from exc


def build_kafka_event(
    records: Iterable[KafkaRecord],
    *,
    event_source: str = "SelfManagedKafka",
    bootstrap_servers: str = "",
    event_source_arn: str | None = None,
) -> dict[str, Any]:
    """Build the event Lambda would send for these records (the local poller and tests use it)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(f"{rec.topic}-{rec.partition}", []).append(
            {
                "topic": rec.topic,
                "partition": rec.partition,
                "offset": rec.offset,
                "timestamp": rec.timestamp_ms if rec.timestamp_ms is not None else 0,
                "timestampType": rec.timestamp_type or "CREATE_TIME",
                "key": base64.b64encode(rec.key).decode() if rec.key is not None else None,
                "value": base64.b64encode(rec.value).decode() if rec.value is not None else None,
                "headers": encode_headers(rec.headers),
            }
        )
    event: dict[str, Any] = {"eventSource": event_source, "bootstrapServers": bootstrap_servers, "records": groups}
    if event_source_arn:
        event["eventSourceArn"] = event_source_arn
    return event
