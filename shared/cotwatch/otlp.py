"""OpenTelemetry trace exports (OTLP, as protobuf or JSON) to trace chunks: a pure mapping, no I/O.

The OpenTelemetry Collector's Kafka exporter writes one ``ExportTraceServiceRequest`` per record, encoded
as ``otlp_proto`` (protobuf) or ``otlp_json``. Both are decoded here without protobuf or OpenTelemetry
libraries (the Lambda layer carries neither): a small wire-format reader covers the handful of OTLP
messages that matter.

Which spans become chunks: those following the GenAI semantic conventions.

- Model-call spans (``chat``, ``text_completion``, ``generate_content``, ``invoke_agent``...): the
  ``gen_ai.output.messages`` attribute, or the same attribute on a ``gen_ai.client.inference.operation.details``
  event, gives the output message parts in order: ``reasoning`` parts -> reasoning chunks, ``text`` parts ->
  answer chunks, ``tool_call`` parts -> tool_call chunks. Tool results the model was given
  (``tool_call_response`` parts of ``gen_ai.input.messages`` after the last assistant message) come first,
  as tool_result chunks, so an agent's step is scored with what it just saw. System and user text is not
  the model's reasoning and is left out. Older instrumentations' ``gen_ai.choice`` events (a ``message``
  attribute holding ``{"content", "reasoning_content", "tool_calls"}``) are read too.
- Tool spans (``execute_tool``): ``gen_ai.tool.call.arguments`` -> a tool_call chunk and
  ``gen_ai.tool.call.result`` -> a tool_result chunk.

One GenAI span is one cotwatch trace: ``trace_id`` = ``<otel trace id>:<span id>`` (stateless and
deterministic, so a redelivered export maps to the same chunks), ``conversation_id`` =
``gen_ai.conversation.id`` or ``otel-<trace id>`` so every span of one agent run shares it, ``model`` =
``gen_ai.response.model`` or ``gen_ai.request.model``, ``tenant`` = the ``cotwatch.tenant`` span or
resource attribute.

Spans that are not GenAI spans, or carry no text (content capture off), are returned as skips with a
reason; they are normal traffic, not errors. Only bytes that are not OTLP at all raise
:class:`OtlpDecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cotwatch.decoding import PayloadError, load_json
from cotwatch.trace import Segment, TraceChunk, split_text

OTLP_PROTO = "otlp_proto"
OTLP_JSON = "otlp_json"
ENCODINGS = (OTLP_PROTO, OTLP_JSON)
# Record headers that select OTLP decoding (name -> value -> encoding); see encoding_from_headers.
ENCODING_HEADER = "cotwatch-encoding"
_CONTENT_TYPES = {
    "application/x-protobuf": OTLP_PROTO,
    "application/protobuf": OTLP_PROTO,
    "application/x-otlp+json": OTLP_JSON,
}
MAX_CHARS = 1500
_IDENTIFIER_BAD = re.compile(r"[^A-Za-z0-9._:@/+=-]+")
_MODEL_SPAN_EVENT = "gen_ai.client.inference.operation.details"

AttrValue = str | bool | int | float | bytes | list[Any] | dict[str, Any] | None


class OtlpDecodeError(ValueError):
    """The bytes are not an OTLP trace export in the stated encoding."""


@dataclass(frozen=True)
class OtlpEvent:
    name: str
    time_unix_nano: int = 0
    attributes: dict[str, AttrValue] = field(default_factory=dict)


@dataclass(frozen=True)
class OtlpSpan:
    trace_id: str  # lowercase hex, as OTLP/JSON writes it
    span_id: str
    name: str
    start_unix_nano: int = 0
    end_unix_nano: int = 0
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    events: tuple[OtlpEvent, ...] = ()
    resource: dict[str, AttrValue] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedSpan:
    trace_id: str
    span_id: str
    name: str
    reason: str  # not_genai | no_text


@dataclass
class OtlpMapping:
    spans: int = 0
    chunks: list[TraceChunk] = field(default_factory=list)
    skipped: list[SkippedSpan] = field(default_factory=list)


# --- protobuf wire format -------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OtlpDecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OtlpDecodeError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varint/fixed fields, bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OtlpDecodeError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
            continue
        if wire == 2:
            size, pos = _varint(buf, pos)
            width = size
        elif wire == 1:
            width = 8
        elif wire == 5:
            width = 4
        else:
            raise OtlpDecodeError(f"unsupported wire type {wire}")
        if pos + width > len(buf):
            raise OtlpDecodeError("truncated field")
        raw = buf[pos : pos + width]
        pos += width
        yield number, (raw if wire == 2 else int.from_bytes(raw, "little"))


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise OtlpDecodeError("expected a length-delimited field")
    return value


def _str(value: int | bytes) -> str:
    try:
        return _bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OtlpDecodeError(f"string field is not UTF-8: {exc}") from exc


def _int(value: int | bytes) -> int:
    if isinstance(value, bytes):
        raise OtlpDecodeError("expected a scalar field")
    return value


def _any_value_proto(buf: bytes) -> AttrValue:
    value: AttrValue = None
    for number, raw in _fields(buf):
        if number == 1:
            value = _str(raw)
        elif number == 2:
            value = bool(_int(raw))
        elif number == 3:
            n = _int(raw)
            value = n - (1 << 64) if n >= 1 << 63 else n
        elif number == 4:
            value = struct.unpack("<d", _int(raw).to_bytes(8, "little"))[0]
        elif number == 5:
            value = [_any_value_proto(_bytes(v)) for n, v in _fields(_bytes(raw)) if n == 1]
        elif number == 6:
            value = _key_values_proto(_bytes(v) for n, v in _fields(_bytes(raw)) if n == 1)
        elif number == 7:
            value = _bytes(raw)
    return value


def _key_values_proto(items: Iterator[bytes] | Sequence[bytes]) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for item in items:
        key, value = "", None
        for number, raw in _fields(item):
            if number == 1:
                key = _str(raw)
            elif number == 2:
                value = _any_value_proto(_bytes(raw))
        out[key] = value
    return out


def _event_proto(buf: bytes) -> OtlpEvent:
    name, when, attrs = "", 0, []
    for number, raw in _fields(buf):
        if number == 1:
            when = _int(raw)
        elif number == 2:
            name = _str(raw)
        elif number == 3:
            attrs.append(_bytes(raw))
    return OtlpEvent(name=name, time_unix_nano=when, attributes=_key_values_proto(attrs))


def _span_proto(buf: bytes, resource: dict[str, AttrValue]) -> OtlpSpan:
    values: dict[str, Any] = {"trace_id": "", "span_id": "", "name": ""}
    attrs: list[bytes] = []
    events: list[OtlpEvent] = []
    for number, raw in _fields(buf):
        if number == 1:
            values["trace_id"] = _bytes(raw).hex()
        elif number == 2:
            values["span_id"] = _bytes(raw).hex()
        elif number == 5:
            values["name"] = _str(raw)
        elif number == 7:
            values["start_unix_nano"] = _int(raw)
        elif number == 8:
            values["end_unix_nano"] = _int(raw)
        elif number == 9:
            attrs.append(_bytes(raw))
        elif number == 11:
            events.append(_event_proto(_bytes(raw)))
    return OtlpSpan(**values, attributes=_key_values_proto(attrs), events=tuple(events), resource=resource)


def parse_otlp_proto(data: bytes) -> list[OtlpSpan]:
    """Spans of a protobuf ``ExportTraceServiceRequest``."""
    spans: list[OtlpSpan] = []
    for number, resource_spans in _fields(data):
        if number != 1:
            continue
        resource: dict[str, AttrValue] = {}
        scopes: list[bytes] = []
        for inner, raw in _fields(_bytes(resource_spans)):
            if inner == 1:
                resource = _key_values_proto(_bytes(v) for n, v in _fields(_bytes(raw)) if n == 1)
            elif inner == 2:
                scopes.append(_bytes(raw))
        for scope in scopes:
            spans += [_span_proto(_bytes(raw), resource) for n, raw in _fields(scope) if n == 2]
    return spans


# --- OTLP/JSON ------------------------------------------------------------------------------------------


def _get(obj: Mapping[str, Any], camel: str, default: Any = None) -> Any:
    """OTLP/JSON writes lowerCamelCase; protobuf JSON parsers accept snake_case too, so both are read."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return obj.get(camel, obj.get(snake, default))


def _id(value: Any) -> str:
    """OTLP/JSON ids are hex; protobuf's canonical JSON writes base64. Accept both."""
    if not value:
        return ""
    text = str(value)
    if re.fullmatch(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}", text):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError) as exc:
        raise OtlpDecodeError(f"id {text!r} is neither hex nor base64") from exc


def _any_value_json(value: Any) -> AttrValue:
    if not isinstance(value, Mapping):
        return None
    if "stringValue" in value or "string_value" in value:
        return str(_get(value, "stringValue"))
    if "boolValue" in value or "bool_value" in value:
        return bool(_get(value, "boolValue"))
    if "intValue" in value or "int_value" in value:
        return int(_get(value, "intValue"))
    if "doubleValue" in value or "double_value" in value:
        return float(_get(value, "doubleValue"))
    if "arrayValue" in value or "array_value" in value:
        return [_any_value_json(v) for v in _get(value, "arrayValue").get("values", [])]
    if "kvlistValue" in value or "kvlist_value" in value:
        return _key_values_json(_get(value, "kvlistValue").get("values", []))
    if "bytesValue" in value or "bytes_value" in value:
        return base64.b64decode(_get(value, "bytesValue"))
    return None


def _key_values_json(items: Any) -> dict[str, AttrValue]:
    return {str(kv.get("key", "")): _any_value_json(kv.get("value")) for kv in items or [] if isinstance(kv, Mapping)}


def parse_otlp_json(data: bytes) -> list[OtlpSpan]:
    """Spans of an OTLP/JSON ``ExportTraceServiceRequest``."""
    try:
        document = load_json(data)  # bounded nesting: a 100k-deep value is an error, not a RecursionError
    except PayloadError as exc:
        raise OtlpDecodeError(f"{exc.reason}: {exc.detail}") from exc
    if not isinstance(document, Mapping) or not isinstance(_get(document, "resourceSpans", []), list):
        raise OtlpDecodeError("not an OTLP trace export: expected an object with 'resourceSpans'")
    spans: list[OtlpSpan] = []
    try:
        for resource_spans in _get(document, "resourceSpans", []):
            resource = _key_values_json((_get(resource_spans, "resource") or {}).get("attributes"))
            for scope in _get(resource_spans, "scopeSpans", []) or []:
                for span in scope.get("spans", []) or []:
                    spans.append(
                        OtlpSpan(
                            trace_id=_id(_get(span, "traceId")),
                            span_id=_id(_get(span, "spanId")),
                            name=str(span.get("name", "")),
                            start_unix_nano=int(_get(span, "startTimeUnixNano", 0)),
                            end_unix_nano=int(_get(span, "endTimeUnixNano", 0)),
                            attributes=_key_values_json(span.get("attributes")),
                            events=tuple(
                                OtlpEvent(
                                    name=str(e.get("name", "")),
                                    time_unix_nano=int(_get(e, "timeUnixNano", 0)),
                                    attributes=_key_values_json(e.get("attributes")),
                                )
                                for e in span.get("events", []) or []
                            ),
                            resource=resource,
                        )
                    )
    except (AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, OtlpDecodeError):
            raise
        raise OtlpDecodeError(f"malformed OTLP/JSON: {exc}") from exc
    return spans


# --- GenAI spans to chunks ------------------------------------------------------------------------------


def _identifier(value: AttrValue, fallback: str | None = None) -> str | None:
    if not isinstance(value, str) or not value:
        return fallback
    cleaned = _IDENTIFIER_BAD.sub("_", value)[:256]
    return cleaned or fallback


def _messages(value: AttrValue) -> list[Any]:
    """``gen_ai.*.messages`` is a JSON string on spans; some SDKs send it as structured values."""
    if isinstance(value, str):
        try:
            value = load_json(value)
        except PayloadError:
            return []
    if isinstance(value, dict):
        value = [value]
    return [m for m in value if isinstance(m, Mapping)] if isinstance(value, list) else []


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


Part = tuple[Segment, str, dict[str, str]]


def _tool_attrs(name: Any, call_id: Any) -> dict[str, str]:
    attrs = {}
    if isinstance(name, str) and name:
        attrs["tool.name"] = name
    if isinstance(call_id, str) and call_id:
        attrs["tool.call_id"] = call_id
    return attrs


def _message_parts(message: Mapping[str, Any]) -> list[Part]:
    parts: list[Part] = []
    for part in message.get("parts") or []:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "reasoning":
            parts.append((Segment.REASONING, _render(part.get("content")), {}))
        elif kind == "text":
            parts.append((Segment.ANSWER, _render(part.get("content")), {}))
        elif kind == "tool_call":
            name = str(part.get("name") or "tool")
            text = f"{name}({_render(part.get('arguments'))})"
            parts.append((Segment.TOOL_CALL, text, _tool_attrs(name, part.get("id"))))
        elif kind == "tool_call_response":
            parts.append((Segment.TOOL_RESULT, _render(part.get("response")), _tool_attrs(None, part.get("id"))))
    return parts


def _legacy_choice_parts(message: Mapping[str, Any]) -> list[Part]:
    parts: list[Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        parts.append((Segment.REASONING, _render(reasoning), {}))
    if message.get("content"):
        parts.append((Segment.ANSWER, _render(message["content"]), {}))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {} if isinstance(call, Mapping) else {}
        name = str(function.get("name") or "tool")
        text = f"{name}({_render(function.get('arguments'))})"
        parts.append((Segment.TOOL_CALL, text, _tool_attrs(name, call.get("id"))))
    return parts


def span_parts(span: OtlpSpan) -> list[Part]:
    """The text a GenAI span carries, in order, as (segment, text, extra attributes)."""
    attrs = span.attributes
    if attrs.get("gen_ai.operation.name") == "execute_tool":
        name, call_id = attrs.get("gen_ai.tool.name"), attrs.get("gen_ai.tool.call.id")
        label = name if isinstance(name, str) and name else "tool"
        parts: list[Part] = []
        if "gen_ai.tool.call.arguments" in attrs:
            text = f"{label}({_render(attrs['gen_ai.tool.call.arguments'])})"
            parts.append((Segment.TOOL_CALL, text, _tool_attrs(name, call_id)))
        if "gen_ai.tool.call.result" in attrs:
            parts.append((Segment.TOOL_RESULT, _render(attrs["gen_ai.tool.call.result"]), _tool_attrs(name, call_id)))
        return parts
    inputs = _messages(attrs.get("gen_ai.input.messages"))
    outputs = _messages(attrs.get("gen_ai.output.messages"))
    for event in span.events:
        if event.name == _MODEL_SPAN_EVENT:
            inputs = inputs or _messages(event.attributes.get("gen_ai.input.messages"))
            outputs = outputs or _messages(event.attributes.get("gen_ai.output.messages"))
    # Only the tool results the model saw since its own last message: earlier turns were scored already.
    last_assistant = max((i for i, m in enumerate(inputs) if m.get("role") == "assistant"), default=-1)
    parts = [p for m in inputs[last_assistant + 1 :] if m.get("role") == "tool" for p in _message_parts(m)]
    for message in outputs:
        parts += _message_parts(message)
    if not outputs:
        for event in span.events:
            if event.name == "gen_ai.choice":
                message = event.attributes.get("message")
                parsed = _messages(message)
                parts += [p for m in parsed for p in _legacy_choice_parts(m)]
    return [p for p in parts if p[1].strip()]


def is_genai(span: OtlpSpan) -> bool:
    return any(k.startswith("gen_ai.") for k in span.attributes) or any(
        e.name.startswith("gen_ai.") for e in span.events
    )


def map_spans(spans: Sequence[OtlpSpan], *, max_chars: int = MAX_CHARS) -> OtlpMapping:
    """GenAI spans to chunks (one trace per span); everything else counted as skipped with a reason."""
    mapping = OtlpMapping(spans=len(spans))
    for span in spans:
        if not is_genai(span):
            mapping.skipped.append(SkippedSpan(span.trace_id, span.span_id, span.name, "not_genai"))
            continue
        parts = span_parts(span)
        if not parts:
            mapping.skipped.append(SkippedSpan(span.trace_id, span.span_id, span.name, "no_text"))
            continue
        attrs = span.attributes
        model = _identifier(attrs.get("gen_ai.response.model")) or _identifier(attrs.get("gen_ai.request.model"))
        tenant = _identifier(attrs.get("cotwatch.tenant")) or _identifier(span.resource.get("cotwatch.tenant"))
        conversation = _identifier(attrs.get("gen_ai.conversation.id")) or f"otel-{span.trace_id}"
        common = {
            "source": "otlp",
            "otel.trace_id": span.trace_id,
            "otel.span_id": span.span_id,
            "otel.span_name": span.name,
        }
        for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.agent.name"):
            if isinstance(attrs.get(key), str):
                common[key] = str(attrs[key])
        if isinstance(span.resource.get("service.name"), str):
            common["service.name"] = str(span.resource["service.name"])
        moment = datetime.fromtimestamp((span.end_unix_nano or span.start_unix_nano) / 1e9, UTC)
        pieces = [(segment, text, extra) for segment, whole, extra in parts for text in split_text(whole, max_chars)]
        for seq, (segment, text, extra) in enumerate(pieces):
            mapping.chunks.append(
                TraceChunk(
                    trace_id=f"{span.trace_id}:{span.span_id}",
                    seq=seq,
                    final=seq == len(pieces) - 1,
                    model=model or "unknown",
                    tenant=tenant or "default",
                    segment=segment,
                    text=text,
                    created_at=moment,
                    conversation_id=conversation,
                    attributes={**common, **extra},
                )
            )
    return mapping


def decode_otlp(data: bytes, encoding: str) -> OtlpMapping:
    """Decode one OTLP trace export (``otlp_proto`` or ``otlp_json``) and map it to chunks."""
    if encoding == OTLP_PROTO:
        spans = parse_otlp_proto(data)
    elif encoding == OTLP_JSON:
        spans = parse_otlp_json(data)
    else:
        raise ValueError(f"unknown OTLP encoding {encoding!r}; expected one of {ENCODINGS}")
    return map_spans(spans)


def encoding_from_headers(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """The OTLP encoding a record's headers ask for, or None for an ordinary trace-chunk record.

    ``cotwatch-encoding: otlp_proto|otlp_json`` decides; else a ``content-type`` of
    ``application/x-protobuf`` (or ``application/protobuf``) means protobuf and ``application/x-otlp+json``
    means JSON. Plain ``application/json`` stays a trace chunk: that is what cotwatch producers send."""
    values = {name.lower(): value.decode("utf-8", "replace").strip().lower() for name, value in headers}
    chosen = values.get(ENCODING_HEADER)
    if chosen in ENCODINGS:
        return chosen
    return _CONTENT_TYPES.get(values.get("content-type", "").split(";")[0].strip())


def select_encoding(
    headers: Sequence[tuple[str, bytes]], topic: str, otlp_topics: Mapping[str, str] | None = None
) -> str | None:
    """The OTLP encoding of a record by its headers (see :func:`encoding_from_headers`), else by its topic.

    ``otlp_topics`` (the scorer's ``OTLP_TOPICS`` setting) maps topics to the encoding their records have when
    no header names one: the Collector's Kafka exporter sends no headers unless told to. A record on such a
    topic marked ``content-type: application/json`` stays a trace chunk: that is what cotwatch producers send.
    """
    chosen = encoding_from_headers(headers)
    if chosen is not None or not otlp_topics or topic not in otlp_topics:
        return chosen
    content_type = next((v for n, v in headers if n.lower() == "content-type"), b"").decode("utf-8", "replace")
    if content_type.split(";")[0].strip().lower() == "application/json":
        return None
    return otlp_topics[topic]
