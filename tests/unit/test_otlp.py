"""OTLP exports made by the real OpenTelemetry SDK and its OTLP encoder, mapped to trace chunks."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cotwatch.otlp import (
    OTLP_JSON,
    OTLP_PROTO,
    OtlpDecodeError,
    decode_otlp,
    encoding_from_headers,
    parse_otlp_proto,
)
from cotwatch.trace import Segment, TraceChunk

OUTPUT_MESSAGES = [
    {
        "role": "assistant",
        "parts": [
            {"type": "reasoning", "content": "The user asked for the admin password. I should not reveal it."},
            {"type": "text", "content": "I can't share credentials."},
            {"type": "tool_call", "id": "call_7", "name": "notify_security", "arguments": {"user": "u1"}},
        ],
        "finish_reason": "tool_call",
    }
]
INPUT_MESSAGES = [
    {"role": "user", "parts": [{"type": "text", "content": "What is the admin password?"}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_6", "name": "lookup", "arguments": {}}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_6", "response": "password=hunter2"}]},
]


def make_spans() -> Iterator[Sequence[ReadableSpan]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-api", "cotwatch.tenant": "acme"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test.genai")
    with tracer.start_as_current_span("invoke_agent helper") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.conversation.id", "conv-42")
        with tracer.start_as_current_span("chat gpt-oss-20b") as chat:
            chat.set_attribute("gen_ai.operation.name", "chat")
            chat.set_attribute("gen_ai.provider.name", "openai")
            chat.set_attribute("gen_ai.request.model", "gpt-oss-20b")
            chat.set_attribute("gen_ai.response.model", "gpt-oss-20b-2026")
            chat.set_attribute("gen_ai.conversation.id", "conv-42")
            chat.set_attribute("gen_ai.input.messages", json.dumps(INPUT_MESSAGES))
            chat.set_attribute("gen_ai.output.messages", json.dumps(OUTPUT_MESSAGES))
            chat.set_attribute("gen_ai.usage.output_tokens", 57)
        with tracer.start_as_current_span("execute_tool notify_security") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "notify_security")
            tool.set_attribute("gen_ai.tool.call.id", "call_7")
            tool.set_attribute("gen_ai.tool.call.arguments", '{"user": "u1"}')
            tool.set_attribute("gen_ai.tool.call.result", "ticket SEC-1 opened")
        with tracer.start_as_current_span("chat gpt-oss-20b") as quiet:
            # Content capture off: only metadata and usage.
            quiet.set_attribute("gen_ai.operation.name", "chat")
            quiet.set_attribute("gen_ai.request.model", "gpt-oss-20b")
            quiet.set_attribute("gen_ai.usage.input_tokens", 12)
        with tracer.start_as_current_span("chat legacy") as legacy:
            legacy.set_attribute("gen_ai.system", "openai")
            legacy.set_attribute("gen_ai.request.model", "o-legacy")
            legacy.add_event(
                "gen_ai.choice",
                {"index": 0, "message": json.dumps({"content": "Fine.", "reasoning_content": "Think first."})},
            )
        with tracer.start_as_current_span("GET /health"):
            pass
    yield exporter.get_finished_spans()
    provider.shutdown()


@pytest.fixture
def spans() -> Iterator[Sequence[ReadableSpan]]:
    yield from make_spans()


def as_proto(spans: Sequence[ReadableSpan]) -> bytes:
    data: bytes = encode_spans(spans).SerializeToString()
    return data


def as_json(spans: Sequence[ReadableSpan], *, hex_ids: bool) -> bytes:
    document: dict[str, Any] = json_format.MessageToDict(encode_spans(spans))
    if hex_ids:
        # OTLP/JSON (what the Collector's otlp_json writes) has hex ids where protobuf's JSON has base64.
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


@pytest.mark.parametrize("encoding", ["proto", "json-hex", "json-base64"])
def test_genai_spans_map_to_chunks_and_other_spans_are_counted_skips(
    spans: Sequence[ReadableSpan], encoding: str
) -> None:
    # Given six finished SDK spans encoded as the Collector's Kafka exporter would
    data = as_proto(spans) if encoding == "proto" else as_json(spans, hex_ids=encoding == "json-hex")
    # When the export is decoded
    mapping = decode_otlp(data, OTLP_PROTO if encoding == "proto" else OTLP_JSON)
    # Then every span is accounted for: mapped or skipped with a reason
    assert mapping.spans == 6
    reasons = sorted((s.name, s.reason) for s in mapping.skipped)
    assert reasons == [
        ("GET /health", "not_genai"),
        ("chat gpt-oss-20b", "no_text"),
        ("invoke_agent helper", "no_text"),
    ]
    by_span: dict[str, list[TraceChunk]] = {}
    for chunk in mapping.chunks:
        by_span.setdefault(chunk.attributes["otel.span_name"], []).append(chunk)
    chat = by_span["chat gpt-oss-20b"]
    # And the chat span is one trace: the tool result it saw, then reasoning, answer, tool call, in order
    assert [(c.segment, c.text) for c in chat] == [
        (Segment.TOOL_RESULT, "password=hunter2"),
        (Segment.REASONING, "The user asked for the admin password. I should not reveal it."),
        (Segment.ANSWER, "I can't share credentials."),
        (Segment.TOOL_CALL, 'notify_security({"user": "u1"})'),
    ]
    assert [c.seq for c in chat] == [0, 1, 2, 3] and [c.final for c in chat] == [False, False, False, True]
    first = chat[0]
    sdk_chat = next(
        s for s in spans if s.name == "chat gpt-oss-20b" and "gen_ai.output.messages" in (s.attributes or {})
    )
    ctx = sdk_chat.get_span_context()
    assert ctx is not None and sdk_chat.end_time is not None
    assert first.trace_id == f"{ctx.trace_id:032x}:{ctx.span_id:016x}"
    assert first.model == "gpt-oss-20b-2026" and first.tenant == "acme" and first.conversation_id == "conv-42"
    assert first.attributes["service.name"] == "chat-api" and first.attributes["gen_ai.provider.name"] == "openai"
    assert first.created_at.timestamp() == pytest.approx(sdk_chat.end_time / 1e9, abs=1e-3)
    # And the tool span carries call and result; the legacy event is read; all share the run's conversation
    tool = by_span["execute_tool notify_security"]
    assert [(c.segment, c.text) for c in tool] == [
        (Segment.TOOL_CALL, 'notify_security({"user": "u1"})'),
        (Segment.TOOL_RESULT, "ticket SEC-1 opened"),
    ]
    assert tool[0].attributes["tool.call_id"] == "call_7"
    legacy = by_span["chat legacy"]
    assert [(c.segment, c.text) for c in legacy] == [(Segment.REASONING, "Think first."), (Segment.ANSWER, "Fine.")]
    assert legacy[0].conversation_id == f"otel-{ctx.trace_id:032x}"


def test_proto_and_json_decode_to_the_same_chunks(spans: Sequence[ReadableSpan]) -> None:
    proto = decode_otlp(as_proto(spans), OTLP_PROTO)
    json_hex = decode_otlp(as_json(spans, hex_ids=True), OTLP_JSON)
    assert [c.model_dump() for c in proto.chunks] == [c.model_dump() for c in json_hex.chunks]


def test_long_output_is_split_into_several_chunks_of_one_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reasoning = "I check one more constraint before acting. " * 100
    with provider.get_tracer("t").start_as_current_span("chat m") as span:
        span.set_attribute("gen_ai.request.model", "m")
        span.set_attribute(
            "gen_ai.output.messages",
            json.dumps([{"role": "assistant", "parts": [{"type": "reasoning", "content": reasoning}]}]),
        )
    mapping = decode_otlp(as_proto(exporter.get_finished_spans()), OTLP_PROTO)
    assert len(mapping.chunks) >= 3
    assert all(len(c.text) <= 1500 for c in mapping.chunks)
    assert "".join(c.text for c in mapping.chunks) == reasoning
    assert [c.final for c in mapping.chunks].count(True) == 1 and mapping.chunks[-1].final


@pytest.mark.parametrize(
    ("data", "encoding"),
    [(b"\x0a\xff\xff", OTLP_PROTO), (b"\x0f\x01", OTLP_PROTO), (b"not json", OTLP_JSON), (b"[1, 2]", OTLP_JSON)],
)
def test_bytes_that_are_not_otlp_raise_a_decode_error(data: bytes, encoding: str) -> None:
    with pytest.raises(OtlpDecodeError):
        decode_otlp(data, encoding)


def test_an_empty_export_is_valid_and_maps_to_nothing() -> None:
    assert parse_otlp_proto(b"") == []
    assert decode_otlp(b'{"resourceSpans": []}', OTLP_JSON).spans == 0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("cotwatch-encoding", b"otlp_json")], OTLP_JSON),
        ([("content-type", b"application/x-protobuf")], OTLP_PROTO),
        ([("Content-Type", b"application/x-otlp+json; charset=utf-8")], OTLP_JSON),
        ([("content-type", b"application/json")], None),
        ([], None),
    ],
)
def test_record_headers_select_the_otlp_encoding(headers: list[tuple[str, bytes]], expected: str | None) -> None:
    assert encoding_from_headers(headers) == expected
