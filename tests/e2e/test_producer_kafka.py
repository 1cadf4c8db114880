"""The producer library on a real broker: ordering and keys, and what happens when the broker is away."""

from __future__ import annotations

import socket
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from cotwatch.producer import (
    BackpressureTimeoutError,
    BrokerUnavailableError,
    ChunkPolicy,
    DeliveryFailedError,
    KafkaChunkSink,
    TraceWriter,
)
from cotwatch.trace import Segment, TraceChunk
from cotwatch_local.cloudformation import create_kafka_topic
from cotwatch_local.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def new_topic(bootstrap: str, partitions: int = 3) -> str:
    topic = f"producer-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(bootstrap, topic, partitions)
    return topic


def consume(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30
) -> list[tuple[int, bytes, TraceChunk, dict[str, bytes]]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=2000)
    out: list[tuple[int, bytes, TraceChunk, dict[str, bytes]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for record in consumer:
                chunk = TraceChunk.model_validate_json(record.value)
                out.append((record.partition, record.key, chunk, dict(record.headers)))
    finally:
        consumer.close()
    return out


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_interleaved_traces_arrive_keyed_ordered_and_whole(kafka_bootstrap: str) -> None:
    # Given three traces written at once through one shared sink, in small chunks
    topic = new_topic(kafka_bootstrap)
    policy = ChunkPolicy(target_chars=120, max_chars=200, max_delay_s=60)
    texts = {
        f"prod-{uuid.uuid4().hex[:6]}-{n}": "".join(f"Trace {n} step {i} is checked. " for i in range(40))
        for n in range(3)
    }
    with KafkaChunkSink(kafka_bootstrap, topic, max_block_s=20) as sink:
        writers = {tid: TraceWriter(sink, model="m", trace_id=tid, policy=policy) for tid in texts}
        for offset in range(0, 1200, 9):
            for tid, writer in writers.items():
                writer.reasoning(texts[tid][offset : offset + 9])
        for writer in writers.values():
            writer.answer("Done.")
            writer.close()
        sent = {tid: w.sent for tid, w in writers.items()}
    # When the topic is read back
    records = consume(kafka_bootstrap, topic, sum(sent.values()))
    # Then every chunk arrived once, each trace on one partition under its own key, in seq order
    assert len(records) == sum(sent.values())
    per_trace: dict[str, list[tuple[int, bytes, TraceChunk, dict[str, bytes]]]] = defaultdict(list)
    for record in records:
        per_trace[record[2].trace_id].append(record)
    for tid, rows in per_trace.items():
        assert len({p for p, *_ in rows}) == 1
        assert {k for _, k, *_ in rows} == {tid.encode()}
        chunks = [c for _, _, c, _ in rows]
        assert [c.seq for c in chunks] == list(range(sent[tid]))
        assert [c.final for c in chunks].count(True) == 1 and chunks[-1].final
        assert "".join(c.text for c in chunks if c.segment == Segment.REASONING) == texts[tid][:1200]
        assert rows[0][3]["content-type"] == b"application/json"


def test_no_broker_at_all_blocks_for_the_configured_time_then_raises(tmp_path: Path) -> None:
    # Given a bootstrap address where nothing listens
    port = closed_port()
    started = time.monotonic()
    # When a sink is made with a 2 s blocking budget
    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{port}"):
        KafkaChunkSink(f"127.0.0.1:{port}", "traces", max_block_s=2.0)
    waited = time.monotonic() - started
    # Then it waited about that long, not forever and not zero
    assert 1.5 <= waited <= 15, waited


def test_broker_going_away_blocks_writers_then_raises_and_close_reports_the_unacknowledged(tmp_path: Path) -> None:
    # Given a dedicated broker (the session one must stay up) and a sink with a small buffer
    broker = KafkaBroker(state_dir=tmp_path / "kafka", port=0)
    broker.start(timeout=180)
    try:
        topic = new_topic(broker.bootstrap_servers, 1)
        sink = KafkaChunkSink(
            broker.bootstrap_servers, topic, max_buffer_bytes=4096, max_block_s=2.0, delivery_timeout_s=6.0
        )
        writer = TraceWriter(sink, model="m", trace_id="away-1", policy=ChunkPolicy(target_chars=200, max_chars=300))
        sentence = "This sentence keeps the buffer busy while the broker is away. "
        for _ in range(10):
            writer.reasoning(sentence)
        writer.flush()
        sink.flush(10)
        acknowledged = writer.sent
        assert acknowledged >= 2 and sink.buffered_chunks == 0
        # When the broker stops and the writer keeps going
        broker.stop()
        started = time.monotonic()
        with pytest.raises(BackpressureTimeoutError, match="NOT sent") as refused:
            for _ in range(1000):
                writer.reasoning(sentence)
        blocked = time.monotonic() - started
        # Then it blocked for the configured time once the buffer was full, and said why
        assert 1.5 <= blocked <= 20, blocked
        assert "is the broker reachable" in str(refused.value)
        queued = sink.buffered_chunks
        assert queued >= 1
        # And close reports every queued chunk as not acknowledged instead of dropping them
        with pytest.raises(DeliveryFailedError) as failed:
            writer.close()
        assert failed.value.undelivered >= queued
        sink.close(timeout_s=1)
    finally:
        broker.stop()
