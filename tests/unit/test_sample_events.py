"""The sample events in events/: shaped as Lambda delivers them, decodable by the scorer, and up to date."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cotwatch.kafka_event import MSK_SOURCE, SELF_MANAGED_SOURCES, KafkaBatch, parse_kafka_event
from cotwatch.rollup import parse_hour, previous_hour
from cotwatch.score_traces import Rejection, decode_chunk
from cotwatch.trace import TraceChunk, TraceDocument

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
KAFKA_EVENTS = sorted(EVENTS_DIR.glob("score_traces*.json"))
DEMO_TRACES = Path(__file__).resolve().parents[2] / "local" / "cotwatch_local" / "data" / "demo_traces.jsonl"


def _load(path: Path) -> dict[str, Any]:
    event = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(event, dict)
    return event


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cotwatch_sample_events_generate", EVENTS_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _demo_documents() -> dict[str, TraceDocument]:
    lines = DEMO_TRACES.read_text(encoding="utf-8").splitlines()
    docs = [TraceDocument.model_validate_json(line) for line in lines if line.strip()]
    return {d.trace_id: d for d in docs}


def test_both_kafka_flavours_are_present() -> None:
    # Given the events folder / When listing the score_traces events / Then MSK and self-managed are both there
    assert [p.name for p in KAFKA_EVENTS] == ["score_traces_msk.json", "score_traces_self_managed.json"]


@pytest.mark.parametrize("path", KAFKA_EVENTS, ids=lambda p: p.name)
def test_kafka_event_parses_with_several_partitions_and_a_null_key(path: Path) -> None:
    # Given a committed sample Kafka event
    event = _load(path)

    # When it is parsed the way the handler parses it
    batch = parse_kafka_event(event)

    # Then it has records from the traces topic in at least two partitions, and one record without a key
    assert {r.topic for r in batch.records} == {"cotwatch-traces"}
    assert len({r.partition for r in batch.records}) >= 2
    assert sum(1 for r in batch.records if r.key is None) == 1
    assert len({r.record_id for r in batch.records}) == len(batch.records)


def test_msk_and_self_managed_envelopes_differ_only_where_aws_does() -> None:
    # Given the two Kafka events
    msk = parse_kafka_event(_load(EVENTS_DIR / "score_traces_msk.json"))
    self_managed = parse_kafka_event(_load(EVENTS_DIR / "score_traces_self_managed.json"))

    # Then MSK carries a cluster ARN and self-managed Kafka does not, and both list their brokers
    assert msk.event_source == MSK_SOURCE
    assert msk.event_source_arn is not None and msk.event_source_arn.startswith("arn:aws:kafka:")
    assert self_managed.event_source in SELF_MANAGED_SOURCES
    assert self_managed.event_source_arn is None
    assert len(msk.bootstrap_servers) >= 2 and len(self_managed.bootstrap_servers) >= 2
    # And the records themselves are the same
    assert msk.records == self_managed.records


@pytest.mark.parametrize("path", KAFKA_EVENTS, ids=lambda p: p.name)
def test_headers_decode_from_signed_bytes(path: Path) -> None:
    # Given a sample event whose headers are arrays of signed bytes, some of them negative
    raw_headers = [h for group in _load(path)["records"].values() for r in group for h in r["headers"]]
    assert any(b < 0 for h in raw_headers for values in h.values() for b in values)

    # When the event is parsed
    batch = parse_kafka_event(_load(path))

    # Then every record's headers come back as the bytes the producer sent
    for record in batch.records:
        assert record.header("content-type") == b"application/json"
        assert record.header("producer") in {b"model-gateway/2.4.1", b"batch-replayer/0.9.0"}
        assert record.value is not None
        assert record.header("content-sha256") == hashlib.sha256(record.value).digest()


def _decoded(batch: KafkaBatch) -> tuple[list[TraceChunk], list[tuple[str, Rejection]]]:
    chunks: list[TraceChunk] = []
    rejected: list[tuple[str, Rejection]] = []
    for record in batch.records:
        result = decode_chunk(record)
        if isinstance(result, Rejection):
            rejected.append((record.record_id, result))
        else:
            chunks.append(result)
    return chunks, rejected


@pytest.mark.parametrize("path", KAFKA_EVENTS, ids=lambda p: p.name)
def test_every_value_is_a_chunk_except_the_truncated_one(path: Path) -> None:
    # Given a sample Kafka event
    batch = parse_kafka_event(_load(path))

    # When each record is decoded as the scorer decodes it
    chunks, rejected = _decoded(batch)

    # Then exactly one record is rejected, and for the reason the generator promises: its value is not JSON
    assert len(rejected) == 1
    record_id, rejection = rejected[0]
    assert record_id == "cotwatch-traces-2@4456"
    assert rejection.reason == "not_json"
    assert "not JSON" in rejection.detail
    # And the other records are all valid chunks
    assert len(chunks) == len(batch.records) - 1


@pytest.mark.parametrize("path", KAFKA_EVENTS, ids=lambda p: p.name)
def test_chunks_are_the_demo_traces_in_order(path: Path) -> None:
    # Given the demo traces the events were cut from
    docs = _demo_documents()

    # When the valid records are decoded
    chunks, _ = _decoded(parse_kafka_event(_load(path)))

    # Then every chunk's text is part of its demo trace, with an unsafe and a benign trace among them
    by_trace: dict[str, list[TraceChunk]] = {}
    for chunk in chunks:
        doc = docs[chunk.trace_id]
        assert chunk.text in (doc.reasoning if chunk.segment == "reasoning" else doc.answer)
        assert (chunk.model, chunk.tenant) == (doc.model, doc.tenant)
        by_trace.setdefault(chunk.trace_id, []).append(chunk)
    assert any(docs[t].expect for t in by_trace) and any(not docs[t].expect for t in by_trace)
    # And each trace's chunks run from seq 0 to a final chunk, in offset order
    for trace_chunks in by_trace.values():
        assert [c.seq for c in trace_chunks] == list(range(len(trace_chunks)))
        assert trace_chunks[-1].final and not any(c.final for c in trace_chunks[:-1])


def test_rollup_schedule_event_rolls_up_the_previous_hour() -> None:
    # Given the EventBridge scheduled event
    event = _load(EVENTS_DIR / "rollup_counters_schedule.json")
    assert (event["detail-type"], event["source"]) == ("Scheduled Event", "aws.events")

    # When its time is read the way rollup_counters reads it
    hour = previous_hour(datetime.fromisoformat(event["time"].replace("Z", "+00:00")))

    # Then it names the same hour as the backfill example
    assert hour == "2026-11-26T15"
    assert "hour" not in event


def test_rollup_backfill_event_names_a_valid_hour() -> None:
    # Given the manual backfill event / When its hour is parsed / Then it is a valid hour bucket
    event = _load(EVENTS_DIR / "rollup_counters_backfill.json")
    assert event == {"hour": "2026-11-26T15"}
    assert parse_hour(event["hour"]) == "2026-11-26T15"


def test_committed_events_match_the_generator() -> None:
    # Given the generator script
    generate = _generator()

    # When it renders every event from the demo traces
    rendered = {name: generate.render(event) for name, event in generate.build_events().items()}

    # Then the committed files are exactly what it would write (regenerate with events/generate.py)
    assert sorted(rendered) == sorted(p.name for p in EVENTS_DIR.glob("*.json"))
    for name, text in rendered.items():
        assert (EVENTS_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale"
