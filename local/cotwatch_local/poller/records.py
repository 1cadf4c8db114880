"""Kafka records as the ESM sees them: consumer records to event records, grouping and event sizes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Protocol

from cotwatch.kafka_event import KafkaRecord, build_kafka_event

SELF_MANAGED_KAFKA = "SelfManagedKafka"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invoke payload limit (6 MB)
MAX_RETRIES_WITH_DESTINATION = 10  # Lambda caps "infinite" retries at 10 once a destination is set
_TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}
_COMPACT = (",", ":")

TP = tuple[str, int]


class ConsumerRecordLike(Protocol):
    """The fields of kafka-python's ``ConsumerRecord`` the poller reads (no deserializers configured)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def record_from_consumer(msg: ConsumerRecordLike) -> KafkaRecord:
    """Convert a consumed record into the project's :class:`KafkaRecord`."""
    return KafkaRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=msg.timestamp if msg.timestamp is not None and msg.timestamp >= 0 else None,
        timestamp_type=_TIMESTAMP_TYPES.get(msg.timestamp_type, "CREATE_TIME"),
        key=msg.key,
        value=msg.value,
        # Kafka allows null header values; Lambda's byte arrays cannot express null, so they become empty.
        headers=tuple((name, value or b"") for name, value in (msg.headers or [])),
    )


def partition_key(topic: str, partition: int) -> str:
    """The ``"<topic>-<partition>"`` key Lambda uses in ``records`` and in item identifiers."""
    return f"{topic}-{partition}"


def group_by_partition(records: Iterable[KafkaRecord]) -> dict[TP, list[KafkaRecord]]:
    groups: dict[TP, list[KafkaRecord]] = {}
    for rec in records:
        groups.setdefault((rec.topic, rec.partition), []).append(rec)
    return groups


class EventSizer:
    """Exact size of the compact JSON event :func:`build_kafka_event` produces, computed incrementally.

    Recomputing the whole event per added record would be quadratic at batch sizes of 10,000.
    """

    def __init__(self, *, event_source: str = SELF_MANAGED_KAFKA, bootstrap_servers: str = "") -> None:
        self.event_source = event_source
        self.bootstrap_servers = bootstrap_servers
        self.envelope = len(
            json.dumps(
                build_kafka_event([], event_source=event_source, bootstrap_servers=bootstrap_servers),
                separators=_COMPACT,
            )
        )

    def record_size(self, record: KafkaRecord) -> int:
        event = build_kafka_event([record], event_source=self.event_source, bootstrap_servers=self.bootstrap_servers)
        (entries,) = event["records"].values()
        return len(json.dumps(entries[0], separators=_COMPACT))

    @staticmethod
    def group_overhead(topic: str, partition: int) -> int:
        # '"<key>":[' + ']' ; commas between groups/records are added by the caller.
        return len(json.dumps(partition_key(topic, partition))) + 3

    def event_size(self, records: Sequence[KafkaRecord]) -> int:
        """Size of the whole event, the slow way (for checks and tests)."""
        event = build_kafka_event(records, event_source=self.event_source, bootstrap_servers=self.bootstrap_servers)
        return len(json.dumps(event, separators=_COMPACT))
