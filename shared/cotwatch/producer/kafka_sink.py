"""Publish chunks to Kafka with kafka-python: durable, ordered per trace, bounded, loud on failure.

Settings and why:

- ``acks="all"`` and ``enable_idempotence=True``: a chunk counts as sent only once every in-sync replica
  has it, and the producer's retries (unbounded within ``delivery_timeout_s``) never duplicate or reorder it.
- key = ``trace_id``: every chunk of a trace lands on one partition, in order.
- ``compression_type`` (gzip by default: it needs no extra package): reasoning text compresses well.
- A bounded buffer: kafka-python 3 has no buffer-memory limit of its own, so this sink counts the bytes
  sent but not yet acknowledged. When they reach ``max_buffer_bytes``, ``send`` blocks until
  acknowledgements free room, for at most ``max_block_s``, then raises
  :class:`~cotwatch.producer.errors.BackpressureTimeoutError`; the chunk in hand is not sent.

When the broker is away:

- at construction: no broker answers within ``max_block_s`` -> :class:`BrokerUnavailableError`;
- while running: chunks queue in kafka-python and are retried; the buffer fills, so ``send`` blocks then
  raises :class:`BackpressureTimeoutError`; chunks already queued fail after ``delivery_timeout_s`` and the
  writer's ``close`` raises :class:`DeliveryFailedError` with how many chunks were not acknowledged.

No path drops a chunk without an exception reaching the caller.

kafka-python is imported here only, when a sink is made: the scoring Lambda never produces and never
imports this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from cotwatch.producer.errors import BackpressureTimeoutError, BrokerUnavailableError, ProducerError
from cotwatch.producer.sink import Delivery
from cotwatch.trace import TraceChunk

PRODUCER_HEADER = b"cotwatch.producer/1"


class KafkaChunkSink:
    """A thread-safe sink that many :class:`~cotwatch.producer.writer.TraceWriter` s can share."""

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str,
        *,
        max_buffer_bytes: int = 8 * 1024 * 1024,
        max_block_s: float = 30.0,
        delivery_timeout_s: float = 120.0,
        compression_type: str | None = "gzip",
        linger_ms: int = 10,
        **kafka_config: Any,
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

        if max_buffer_bytes <= 0 or max_block_s <= 0:
            raise ValueError("max_buffer_bytes and max_block_s must be positive")
        servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
        self.topic = topic
        self.max_buffer_bytes = max_buffer_bytes
        self.max_block_s = max_block_s
        self._kafka_error: type[Exception] = KafkaError
        self._space = threading.Condition()
        self._buffered_bytes = 0
        self._buffered_chunks = 0
        block_ms = int(max_block_s * 1000)
        # kafka-python requires delivery_timeout >= linger + request timeout.
        request_timeout_ms = min(30_000, max(1_000, int(delivery_timeout_s * 1000) - linger_ms))
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=servers,
                acks="all",
                enable_idempotence=True,
                compression_type=compression_type,
                linger_ms=linger_ms,
                delivery_timeout_ms=int(delivery_timeout_s * 1000),
                request_timeout_ms=request_timeout_ms,
                max_block_ms=block_ms,
                bootstrap_timeout_ms=block_ms,
                max_request_size=2 * 1024 * 1024,
                **kafka_config,
            )
        except (KafkaTimeoutError, KafkaConnectionError) as exc:
            # kafka-python 3 reports a bootstrap that found no broker as a timeout.
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {','.join(servers)} within {max_block_s:.1f}s; nothing was sent"
            ) from exc

    @property
    def buffered_bytes(self) -> int:
        """Bytes handed to Kafka and not yet acknowledged (or failed)."""
        with self._space:
            return self._buffered_bytes

    @property
    def buffered_chunks(self) -> int:
        with self._space:
            return self._buffered_chunks

    def send(self, chunk: TraceChunk) -> Delivery:
        value = chunk.model_dump_json().encode()
        size = len(value)
        self._reserve(size, chunk)
        delivery = Delivery(chunk.seq)
        try:
            future = self._producer.send(
                self.topic,
                key=chunk.trace_id.encode(),
                value=value,
                headers=[
                    ("content-type", b"application/json"),
                    ("schema-version", str(chunk.schema_version).encode()),
                    ("producer", PRODUCER_HEADER),
                ],
            )
        except self._kafka_error as exc:
            self._release(size)
            # kafka-python raises KafkaTimeoutError here when the topic's metadata did not arrive in time.
            raise BrokerUnavailableError(
                f"chunk {chunk.trace_id}#{chunk.seq} not sent: no metadata for topic {self.topic!r} "
                f"within {self.max_block_s:.1f}s ({exc})"
            ) from exc
        except BaseException:
            self._release(size)
            raise

        def acknowledged(_: Any) -> None:
            self._release(size)
            delivery.succeed()

        def failed(error: BaseException) -> None:
            self._release(size)
            delivery.fail(error)

        future.add_callback(acknowledged)
        future.add_errback(failed)
        return delivery

    def _reserve(self, size: int, chunk: TraceChunk) -> None:
        deadline = time.monotonic() + self.max_block_s
        with self._space:
            # One chunk larger than the whole budget may still go when nothing else is waiting.
            while self._buffered_chunks and self._buffered_bytes + size > self.max_buffer_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackpressureTimeoutError(
                        f"chunk {chunk.trace_id}#{chunk.seq} NOT sent: {self._buffered_chunks} chunks "
                        f"({self._buffered_bytes} bytes) waited more than {self.max_block_s:.1f}s for Kafka to "
                        f"acknowledge them (buffer limit {self.max_buffer_bytes} bytes); is the broker reachable?"
                    )
                self._space.wait(left)
            self._buffered_bytes += size
            self._buffered_chunks += 1

    def _release(self, size: int) -> None:
        with self._space:
            self._buffered_bytes -= size
            self._buffered_chunks -= 1
            self._space.notify_all()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything queued now and wait for the broker (``None``: up to the delivery timeout)."""
        try:
            self._producer.flush(timeout=timeout_s)
        except self._kafka_error as exc:
            raise ProducerError(f"flush did not finish: {exc}") from exc

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and close; chunks still unacknowledged afterwards fail their deliveries (writers raise)."""
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> KafkaChunkSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
