"""OTLP records through the scorer's use case: chunks scored, textless spans counted, garbage dead-lettered."""

from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.unit.conftest import CYBER_LINE, Adapters

from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import Outcome, ScoreTraces

PROTO = [("content-type", b"application/x-protobuf")]


def otlp_export() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("chat m") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "m")
        messages = [{"role": "assistant", "parts": [{"type": "reasoning", "content": CYBER_LINE}]}]
        span.set_attribute("gen_ai.output.messages", json.dumps(messages))
    with tracer.start_as_current_span("chat m") as quiet:
        quiet.set_attribute("gen_ai.request.model", "m")
    with tracer.start_as_current_span("GET /"):
        pass
    data: bytes = encode_spans(exporter.get_finished_spans()).SerializeToString()
    provider.shutdown()
    return data


def batch(*records: KafkaRecord) -> KafkaBatch:
    return KafkaBatch(event_source="SelfManagedKafka", records=list(records))


def test_an_otlp_record_is_scored_and_its_textless_spans_are_counted_not_dead_lettered(
    use_case: ScoreTraces, adapters: Adapters
) -> None:
    # Given one Kafka record holding an OTLP export: an unsafe reasoning span, a textless one, an HTTP one
    record = KafkaRecord(topic="otlp_spans", partition=0, offset=7, value=otlp_export(), headers=PROTO)
    # When the batch is processed, twice (Lambda redelivers)
    report = use_case.process_batch(batch(record))
    use_case.process_batch(batch(record))
    # Then the reasoning chunk was scored and alerted, the two other spans counted as skipped by reason
    assert [r.outcome for r in report.records] == [Outcome.SCORED, Outcome.SKIPPED]
    assert report.received == 1 and report.spans_skipped == 2
    assert len(adapters.alerts.items) == 1
    assert next(iter(adapters.alerts.items.values()))["category"] == "cyber"
    skipped = {k.category: n for k, n in adapters.counters.counts.items() if k.metric == "otlp_spans_skipped"}
    assert skipped == {"no_text": 1, "not_genai": 1}
    # And nothing was dead-lettered, and the redelivery counted nothing twice
    assert adapters.dead_letters.letters == {}
    assert sum(n for k, n in adapters.counters.counts.items() if k.metric == "chunks") == 1


def test_bytes_that_claim_to_be_otlp_but_are_not_are_dead_lettered(use_case: ScoreTraces, adapters: Adapters) -> None:
    record = KafkaRecord(topic="otlp_spans", partition=0, offset=8, value=b"\x0a\xff\xff", headers=PROTO)
    report = use_case.process_batch(batch(record))
    assert [r.outcome for r in report.records] == [Outcome.DEAD_LETTERED]
    (letter,) = adapters.dead_letters.letters.values()
    assert letter.reason == "not_otlp"


def test_trace_chunk_records_without_otlp_headers_decode_as_before(use_case: ScoreTraces, adapters: Adapters) -> None:
    value = json.dumps({"trace_id": "t1", "model": "m", "text": "Add the numbers.", "final": True}).encode()
    record = KafkaRecord(
        topic="traces", partition=0, offset=1, key=b"t1", value=value, headers=[("content-type", b"application/json")]
    )
    report = use_case.process_batch(batch(record))
    assert [r.outcome for r in report.records] == [Outcome.SCORED]
    assert report.spans_skipped == 0
