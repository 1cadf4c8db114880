"""Publish trace chunks to Kafka the way model-serving systems should: key = trace_id, acks=all."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from cotwatch.trace import TraceChunk


class TraceProducer:
    def __init__(self, bootstrap_servers: str, topic: str, **config: Any) -> None:
        from kafka import KafkaProducer  # the Lambda functions never produce, so kafka-python stays local-only

        self._topic = topic
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=5,
            max_request_size=2 * 1024 * 1024,
            **config,
        )

    def send(self, chunks: Iterable[TraceChunk]) -> int:
        """Send chunks and wait until the broker has them all; returns how many were sent."""
        futures = [
            self._producer.send(
                self._topic,
                key=chunk.trace_id.encode(),
                value=chunk.model_dump_json().encode(),
                headers=[("content-type", b"application/json"), ("schema-version", str(chunk.schema_version).encode())],
            )
            for chunk in chunks
        ]
        self._producer.flush()
        for future in futures:
            future.get(timeout=30)  # surfaces a delivery error instead of losing the chunk silently
        return len(futures)

    def send_raw(
        self, value: bytes | None, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        """Send bytes as they are (OTLP exports; tests use this for malformed records)."""
        self._producer.send(self._topic, key=key, value=value, headers=headers or []).get(timeout=30)

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> TraceProducer:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
