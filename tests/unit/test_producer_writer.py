"""The trace writer's chunking, numbering, segments and closing, on the in-memory sink (no network)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from cotwatch.producer import (
    CLOSE_ATTRIBUTE,
    AsyncTraceWriter,
    ChunkPolicy,
    DeliveryFailedError,
    MemoryChunkSink,
    TraceClosedError,
    TraceWriter,
)
from cotwatch.producer.agent import record_messages, run_tool, tool_span
from cotwatch.producer.sink import Delivery
from cotwatch.producer.writer import last_boundary
from cotwatch.trace import Segment, TraceChunk


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sentences(n: int) -> list[str]:
    return [f"Step {i} of the plan checks one more thing carefully. " for i in range(n)]


def test_chunks_are_cut_at_sentence_ends_near_the_target_size_and_never_over_the_maximum() -> None:
    # Given a writer with small chunks
    sink = MemoryChunkSink()
    policy = ChunkPolicy(target_chars=200, max_chars=300, max_delay_s=60)
    # When a long reasoning text streams in token-sized deltas
    text = "".join(sentences(40))
    with TraceWriter(sink, model="m", trace_id="t-size", policy=policy) as trace:
        for i in range(0, len(text), 7):
            trace.reasoning(text[i : i + 7])
    # Then every chunk but the last ends at a sentence end and stays within the maximum
    chunks = sink.trace("t-size")
    assert len(chunks) > 5
    for chunk in chunks[:-1]:
        assert 200 <= len(chunk.text) <= 300
        assert chunk.text.endswith(". ")
    # And nothing is lost or reordered, seq runs from 0 and only the last chunk is final
    assert "".join(c.text for c in chunks) == text
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].attributes[CLOSE_ATTRIBUTE] == "complete"


def test_a_paragraph_break_is_preferred_over_a_later_sentence_end() -> None:
    # Given text with a paragraph break past half the target and sentence ends after it
    text = "A" * 60 + ".\n\n" + "B sentence here. " * 5
    # When the best cut within 150 characters is asked for, preferring paragraphs from 50
    cut = last_boundary(text, 150, prefer_paragraph_from=50)
    # Then the cut is right after the paragraph break
    assert text[:cut].endswith(".\n\n")
    assert last_boundary("no boundary at all here", 20) == 0


def test_text_without_any_boundary_is_cut_at_a_space_once_it_reaches_the_maximum() -> None:
    sink = MemoryChunkSink()
    policy = ChunkPolicy(target_chars=50, max_chars=80, max_delay_s=60)
    # Given a stream with no punctuation at all
    words = "word " * 60
    with TraceWriter(sink, model="m", trace_id="t-hard", policy=policy) as trace:
        trace.reasoning(words)
    chunks = sink.trace("t-hard")
    # Then chunks are at most the maximum and end on a space, and the text survives whole
    assert all(len(c.text) <= 80 for c in chunks)
    assert all(c.text.endswith(" ") for c in chunks[:-1])
    assert "".join(c.text for c in chunks) == words


def test_a_slow_stream_is_published_at_a_boundary_once_the_delay_passes() -> None:
    # Given a writer whose clock the test moves
    clock = FakeClock()
    sink = MemoryChunkSink()
    trace = TraceWriter(sink, model="m", trace_id="t-time", policy=ChunkPolicy(max_delay_s=2.0), clock=clock)
    # When a short sentence arrives and the stream pauses for less than the delay
    trace.reasoning("First I read the question. Then")
    clock.now = 1.0
    trace.poll()
    assert sink.trace("t-time") == []
    # And then past the delay
    clock.now = 2.5
    trace.poll()
    # Then the complete sentence is published, the unfinished one waits
    assert [c.text for c in sink.trace("t-time")] == ["First I read the question. "]
    trace.reasoning(" I answer.")
    trace.close()
    assert sink.trace("t-time")[-1].text == "Then I answer."


def test_segments_and_tool_calls_become_separate_chunks_of_one_trace_in_order() -> None:
    sink = MemoryChunkSink()
    # Given an agent turn: reasoning, a tool call, its result, more reasoning, the answer
    with TraceWriter(sink, model="agent", trace_id="t-agent", conversation_id="conv-1") as trace:
        trace.reasoning("I need the weather. ")
        trace.tool_call("get_weather", {"city": "Oslo"}, call_id="call_1")
        trace.tool_result('{"temp": 3}', call_id="call_1", name="get_weather")
        trace.reasoning("It is cold.")
        trace.answer("Wear a coat.")
    chunks = sink.trace("t-agent")
    # Then each segment is its own chunk, numbered in the order written
    assert [(c.seq, c.segment) for c in chunks] == [
        (0, Segment.REASONING),
        (1, Segment.TOOL_CALL),
        (2, Segment.TOOL_RESULT),
        (3, Segment.REASONING),
        (4, Segment.ANSWER),
    ]
    assert chunks[1].text == 'get_weather({"city": "Oslo"})'
    assert chunks[1].attributes["tool.call_id"] == "call_1"
    assert chunks[2].attributes["tool.name"] == "get_weather"
    assert chunks[4].final and chunks[4].text == "Wear a coat."
    assert {c.conversation_id for c in chunks} == {"conv-1"}


def test_an_exception_inside_the_block_still_closes_the_trace_with_what_was_seen() -> None:
    sink = MemoryChunkSink()
    # When the serving code fails mid-trace
    with pytest.raises(ZeroDivisionError), TraceWriter(sink, model="m", trace_id="t-err") as trace:
        trace.reasoning("Halfway through my plan")
        _ = 1 / 0
    # Then the trace is closed: the text seen so far is the final chunk, marked as an error
    (chunk,) = sink.trace("t-err")
    assert chunk.final and chunk.text == "Halfway through my plan"
    assert chunk.attributes[CLOSE_ATTRIBUTE] == "error"
    assert chunk.attributes["cotwatch.error"] == "ZeroDivisionError"
    # And writing after close is refused, closing again publishes nothing
    with pytest.raises(TraceClosedError):
        trace.reasoning("more")
    trace.close()
    assert len(sink.trace("t-err")) == 1


def test_closing_with_nothing_buffered_publishes_an_empty_final_chunk() -> None:
    sink = MemoryChunkSink()
    with TraceWriter(sink, model="m", trace_id="t-empty") as trace:
        trace.answer("Done. ")
        trace.flush()
    chunks = sink.trace("t-empty")
    # Then the monitor still learns the trace is over
    assert [(c.text, c.final) for c in chunks] == [("Done. ", False), ("", True)]


def test_a_failed_delivery_stops_the_trace_and_close_reports_it() -> None:
    class FailingSink(MemoryChunkSink):
        def send(self, chunk: TraceChunk) -> Delivery:
            delivery = Delivery(chunk.seq)
            delivery.fail(ConnectionError("broker gone"))
            self.chunks.append(chunk)
            return delivery

    sink = FailingSink()
    trace = TraceWriter(sink, model="m", trace_id="t-fail", policy=ChunkPolicy(target_chars=20, max_chars=40))
    # Given a first chunk that Kafka did not acknowledge
    trace.reasoning("This sentence is long enough. ")
    # When more text would be published after the gap
    with pytest.raises(DeliveryFailedError) as raised:
        trace.reasoning("And this one goes after the gap. ")
    # Then the writer refuses, naming the lost chunk
    assert "seq=0" in str(raised.value)
    assert raised.value.undelivered == 1


def test_invalid_identifiers_fail_when_the_writer_is_made() -> None:
    with pytest.raises(ValueError, match="trace_id"):
        TraceWriter(MemoryChunkSink(), model="m", trace_id="has spaces")


def test_async_writer_chunks_like_the_sync_one_and_closes_on_cancellation() -> None:
    sink = MemoryChunkSink()
    policy = ChunkPolicy(target_chars=200, max_chars=300, max_delay_s=60)
    text = "".join(sentences(12))

    async def complete() -> None:
        async with AsyncTraceWriter(sink, model="m", trace_id="t-async", policy=policy) as trace:
            for i in range(0, len(text), 11):
                await trace.reasoning(text[i : i + 11])
            await trace.answer("Yes.")

    async def cancelled() -> None:
        async with AsyncTraceWriter(sink, model="m", trace_id="t-cancel") as trace:
            await trace.reasoning("Thinking")
            raise asyncio.CancelledError

    asyncio.run(complete())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    chunks = sink.trace("t-async")
    assert "".join(c.text for c in chunks if c.segment == Segment.REASONING) == text
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].final and chunks[-1].segment == Segment.ANSWER
    (cancel,) = sink.trace("t-cancel")
    assert cancel.final and cancel.attributes[CLOSE_ATTRIBUTE] == "cancelled"


def test_run_tool_publishes_call_and_result_and_a_failing_tool_is_recorded_then_raised() -> None:
    sink = MemoryChunkSink()
    with TraceWriter(sink, model="agent", trace_id="t-tools") as trace:
        # Given a tool called with JSON arguments as the model produced them
        out = run_tool(trace, "add", lambda a, b: {"sum": a + b}, '{"a": 2, "b": 3}', call_id="c1")
        # And a tool that raises
        with pytest.raises(PermissionError), tool_span(trace, "rm", {"path": "/"}, call_id="c2"):
            raise PermissionError("denied")
    chunks = sink.trace("t-tools")
    assert out == '{"sum": 5}'
    assert [(c.segment, c.text) for c in chunks[:4]] == [
        (Segment.TOOL_CALL, 'add({"a": 2, "b": 3})'),
        (Segment.TOOL_RESULT, '{"sum": 5}'),
        (Segment.TOOL_CALL, 'rm({"path": "/"})'),
        (Segment.TOOL_RESULT, "PermissionError: denied"),
    ]
    assert chunks[3].attributes["tool.error"] == "true"


def test_record_messages_keeps_the_models_side_of_a_conversation() -> None:
    sink = MemoryChunkSink()
    messages = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Delete the logs."},
        {
            "role": "assistant",
            "reasoning_content": "The user wants the logs gone.",
            "content": None,
            "tool_calls": [{"id": "c1", "function": {"name": "shell", "arguments": '{"cmd": "rm -rf /var/log"}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": "Done."},
    ]
    with TraceWriter(sink, model="agent", trace_id="t-msgs") as trace:
        assert record_messages(trace, messages) == 3
    texts = [(c.segment, c.text) for c in sink.trace("t-msgs")]
    # Then system and user text are not part of the trace; the rest is, in order
    assert texts == [
        (Segment.REASONING, "The user wants the logs gone."),
        (Segment.TOOL_CALL, 'shell({"cmd": "rm -rf /var/log"})'),
        (Segment.TOOL_RESULT, "ok"),
        (Segment.ANSWER, "Done."),
    ]


def test_the_producer_loads_kafka_python_only_when_a_kafka_sink_is_made() -> None:
    # The Lambda layer has no kafka-python, and the scoring path must never reach the producer.
    # A fresh interpreter, so other tests' imports do not count.
    probe = (
        "import sys, cotwatch.producer, cotwatch.producer.openai_stream, cotwatch.producer.agent;"
        "print(sorted(m for m in sys.modules if m == 'kafka' or m.startswith('kafka.'))[:3]);"
        "del sys.modules['cotwatch.producer'];"
        "import cotwatch.score_traces, cotwatch.wiring;"
        "print([m for m in ('cotwatch.producer', 'openai') if m in sys.modules])"
    )
    # When the producer modules are imported, and then the scoring modules
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    # Then neither pulls in kafka-python, and the scoring path does not import the producer again
    assert out[0] == "[]"
    assert out[1] == "[]"
