"""Get a model's reasoning onto the cotwatch topic: a chunking trace writer and a Kafka sink.

Ten lines from a serving loop::

    from cotwatch.producer import KafkaChunkSink, TraceWriter

    sink = KafkaChunkSink("localhost:19092", "cotwatch-traces")
    with TraceWriter(sink, model="my-model") as trace:
        for delta in reasoning_stream:
            trace.reasoning(delta)
        trace.answer(answer_text)
    sink.close()

Adapters: :mod:`cotwatch.producer.openai_stream` (OpenAI-compatible chat streams and Responses event
streams) and :mod:`cotwatch.producer.agent` (tool calls and results of an agent loop).

This package is for producers; the scoring Lambda never imports it (kafka-python is loaded only when a
:class:`KafkaChunkSink` is made).
"""

from __future__ import annotations

from cotwatch.producer.errors import (
    BackpressureTimeoutError,
    BrokerUnavailableError,
    DeliveryFailedError,
    ProducerError,
    TraceClosedError,
)
from cotwatch.producer.kafka_sink import KafkaChunkSink
from cotwatch.producer.sink import ChunkSink, Delivery, MemoryChunkSink
from cotwatch.producer.writer import (
    CLOSE_ATTRIBUTE,
    AsyncTraceWriter,
    ChunkPolicy,
    TraceChunker,
    TraceWriter,
)

__all__ = [
    "CLOSE_ATTRIBUTE",
    "AsyncTraceWriter",
    "BackpressureTimeoutError",
    "BrokerUnavailableError",
    "ChunkPolicy",
    "ChunkSink",
    "Delivery",
    "DeliveryFailedError",
    "KafkaChunkSink",
    "MemoryChunkSink",
    "ProducerError",
    "TraceChunker",
    "TraceClosedError",
    "TraceWriter",
]
