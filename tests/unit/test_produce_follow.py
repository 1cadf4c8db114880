"""``cotwatch produce --follow`` and ``--from-otlp`` without a broker: what is read, when it stops, bad input."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cotwatch.kafka_event import KafkaRecord
from cotwatch.otlp import OTLP_JSON, OTLP_PROTO
from cotwatch.score_traces import decode_record
from cotwatch.trace import TraceChunk
from cotwatch_local.cli import main
from cotwatch_local.produce import FollowStats, follow_jsonl, follow_lines, read_otlp_exports


def chunk_line(trace_id: str, text: str = "A sentence.") -> str:
    return json.dumps({"trace_id": trace_id, "model": "m", "text": text}) + "\n"


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_follow_publishes_existing_and_appended_lines_and_never_half_a_line(tmp_path: Path) -> None:
    # Given a JSONL file with one line, followed in a thread
    path = tmp_path / "traces.jsonl"
    path.write_text(chunk_line("t1"))
    sent: list[list[TraceChunk]] = []
    stop = threading.Event()
    result: list[FollowStats] = []
    thread = threading.Thread(
        target=lambda: result.append(follow_jsonl(path, sent.append, chunk_chars=500, stop=stop, poll_s=0.02))
    )
    thread.start()
    try:
        wait_until(lambda: len(sent) == 1)
        # When a writer is caught mid-line, then finishes it and adds a whole trace
        line = chunk_line("t2")
        append(path, line[:10])
        time.sleep(0.2)
        # Then nothing of the half line was published
        assert len(sent) == 1
        append(path, line[10:] + json.dumps({"trace_id": "t3", "model": "m", "reasoning": "x. " * 300}) + "\n")
        wait_until(lambda: len(sent) == 3)
    finally:
        stop.set()
        thread.join(5)
    # And every line was published once, in order, whole traces as their chunks
    assert [batch[0].trace_id for batch in sent] == ["t1", "t2", "t3"]
    assert len(sent[2]) > 1 and sent[2][-1].final
    (stats,) = result
    assert stats.lines == 3 and not thread.is_alive()


def test_follow_stops_after_the_idle_time(tmp_path: Path) -> None:
    # Given a file that stops growing
    path = tmp_path / "idle.jsonl"
    path.write_text(chunk_line("t1"))
    sent: list[list[TraceChunk]] = []
    # When it is followed with an idle exit of 0.3 s
    started = time.monotonic()
    stats = follow_jsonl(path, sent.append, chunk_chars=500, stop=threading.Event(), idle_exit_s=0.3, poll_s=0.02)
    # Then it returns on its own shortly after, with the line published
    assert 0.3 <= time.monotonic() - started < 3
    assert stats.lines == 1 and len(sent) == 1


def test_a_truncated_file_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jsonl"
    path.write_text(chunk_line("before-1") + chunk_line("before-2"))
    stop = threading.Event()
    seen: list[tuple[int, str]] = []
    for number, line in follow_lines(path, stop=stop, idle_exit_s=1.0, poll_s=0.02):
        seen.append((number, json.loads(line)["trace_id"]))
        if len(seen) == 2:
            path.write_text(chunk_line("after"))  # rotated: shorter than what was read
        if len(seen) == 3:
            stop.set()
    assert seen == [(1, "before-1"), (2, "before-2"), (1, "after")]


def test_a_bad_line_is_reported_with_its_place_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(chunk_line("ok-1") + "{not json\n" + chunk_line("ok-2"))
    sent: list[list[TraceChunk]] = []
    reported: list[str] = []
    stats = follow_jsonl(
        path, sent.append, chunk_chars=500, stop=threading.Event(), idle_exit_s=0.1, on_bad_line=reported.append
    )
    assert [b[0].trace_id for b in sent] == ["ok-1", "ok-2"]
    assert len(reported) == 1 and reported[0].startswith(f"{path}:2: not a trace or chunk")
    assert stats.bad_lines == reported


def otlp_spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("cli-test")
    with tracer.start_as_current_span("chat m") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "m")
        parts = [{"type": "reasoning", "content": "I add the two numbers."}, {"type": "text", "content": "4"}]
        span.set_attribute("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": parts}]))
    with tracer.start_as_current_span("GET /health"):
        pass
    provider.shutdown()
    return exporter


def test_an_otlp_proto_file_becomes_one_record_the_scorer_decodes_as_otlp(tmp_path: Path) -> None:
    # Given an OTLP protobuf export written by the real SDK's encoder
    path = tmp_path / "export.pb"
    path.write_bytes(encode_spans(otlp_spans().get_finished_spans()).SerializeToString())
    # When it is read for publishing
    (export,) = read_otlp_exports(path)
    # Then its encoding was recognised and it carries the header the scorer selects OTLP by
    assert export.encoding == OTLP_PROTO and (export.spans, export.chunks, export.skipped) == (2, 2, 1)
    record = KafkaRecord(topic="t", partition=0, offset=0, value=export.value, headers=export.headers)
    decoded = decode_record(record)
    assert [c.segment.value for c in decoded if isinstance(c, TraceChunk)] == ["reasoning", "answer"]


def test_otlp_json_lines_become_one_record_per_line(tmp_path: Path) -> None:
    from google.protobuf.json_format import MessageToJson

    request = encode_spans(otlp_spans().get_finished_spans())
    line = MessageToJson(request, indent=None)
    path = tmp_path / "export.jsonl"
    path.write_text(line + "\n" + line + "\n")
    exports = read_otlp_exports(path)
    assert [e.encoding for e in exports] == [OTLP_JSON, OTLP_JSON]
    assert dict(exports[0].headers)["content-type"] == b"application/x-otlp+json"
    assert exports[0].chunks == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x0a\xff\xff", "not an otlp_proto trace export"),
        (b'{"resourceSpans": []}', "with no spans in it"),
        (b'{"resourceSpans": "x"}\n{"a": 1}\n', ":1: not an otlp_json trace export"),
        (b"  \n", "empty file"),
    ],
)
def test_a_file_that_is_not_an_otlp_export_fails_before_publishing(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "nope"
    path.write_bytes(content)
    # No --bootstrap-servers: reaching the publishing step would fail differently (no local stack)
    with pytest.raises(SystemExit, match=message):
        main(["produce", "--from-otlp", str(path)])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["produce"], "give a JSONL file or --from-otlp FILE"),
        (["produce", "a.jsonl", "--from-otlp", "b.pb"], "give a JSONL file or --from-otlp FILE"),
        (["produce", "--from-otlp", "b.pb", "--follow"], "--follow and --idle-exit go with a JSONL file"),
        (["produce", "/nonexistent.jsonl", "--follow"], "no such file"),
    ],
)
def test_produce_arguments_that_do_not_go_together_say_so(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_idle_exit_needs_follow_and_a_positive_time(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(chunk_line("t1"))
    with pytest.raises(SystemExit, match="--idle-exit goes with --follow"):
        main(["produce", str(path), "--idle-exit", "2"])
    with pytest.raises(SystemExit, match="positive"):
        main(["produce", str(path), "--follow", "--idle-exit", "0", "--bootstrap-servers", "x:1", "--topic", "t"])
