"""The stream tees with the real ``openai`` SDK against a loopback server speaking server-sent events.

The server plays an OpenAI-compatible endpoint (vLLM-style ``reasoning_content`` deltas, tool-call deltas)
and the Responses API event stream; each test picks a script of events and how the stream ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from openai import APIError, AsyncOpenAI, OpenAI

from cotwatch.producer import CLOSE_ATTRIBUTE, AsyncTraceWriter, MemoryChunkSink, TraceWriter
from cotwatch.producer.openai_stream import atee_chat_stream, tee_chat_stream, tee_response_stream
from cotwatch.trace import Segment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@dataclass
class Script:
    events: list[tuple[str | None, dict[str, Any] | str]] = field(default_factory=list)
    delay_s: float = 0.0  # between events, so a client can stop mid-stream
    seen_disconnect: threading.Event = field(default_factory=threading.Event)


class SSEServer(ThreadingHTTPServer):
    daemon_threads = True
    script: Script


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SSEServer

    def log_message(self, *_: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        script = self.server.script
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        try:
            for name, data in script.events:
                payload = data if isinstance(data, str) else json.dumps(data)
                frame = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
                self.wfile.write(frame.encode())
                self.wfile.flush()
                time.sleep(script.delay_s)
        except (BrokenPipeError, ConnectionResetError):
            script.seen_disconnect.set()


@pytest.fixture
def server() -> Iterator[SSEServer]:
    httpd = SSEServer(("127.0.0.1", 0), Handler)
    httpd.script = Script()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def client(httpd: SSEServer) -> OpenAI:
    return OpenAI(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", api_key="test", max_retries=0)


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "qwen3-32b",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


REASONING = ["The user wants ", "a port scan. ", "That is allowed on their own host.\n\n", "I will call the tool."]
CHAT_EVENTS: list[tuple[str | None, dict[str, Any] | str]] = [
    (None, chat_chunk({"role": "assistant", "content": ""})),
    *[(None, chat_chunk({"reasoning_content": r})) for r in REASONING],
    (
        None,
        chat_chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "nmap", "arguments": ""}}
                ]
            }
        ),
    ),
    (None, chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"host": '}}]})),
    (None, chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"127.0.0.1"}'}}]})),
    (None, chat_chunk({"content": "Scanning "})),
    (None, chat_chunk({"content": "localhost now."}, finish="tool_calls")),
    (None, "[DONE]"),
]


def test_chat_stream_passes_every_chunk_through_and_writes_reasoning_answer_and_tool_call(server: SSEServer) -> None:
    # Given a vLLM-style stream with reasoning_content deltas, a tool call in fragments and content
    server.script.events = CHAT_EVENTS
    sink = MemoryChunkSink()
    stream = client(server).chat.completions.create(
        model="qwen3-32b", messages=[{"role": "user", "content": "scan"}], stream=True
    )
    # When the caller iterates the teed stream
    with tee_chat_stream(stream, TraceWriter(sink, model="qwen3-32b", trace_id="chat-1")) as teed:
        received = list(teed)
    # Then the caller got every SDK chunk object, unchanged
    assert len(received) == len(CHAT_EVENTS) - 1
    assert type(received[0]).__name__ == "ChatCompletionChunk"
    assert "".join(c.choices[0].delta.content or "" for c in received) == "Scanning localhost now."
    # And the trace holds the reasoning, the answer and the assembled tool call, closed as complete
    chunks = sink.trace("chat-1")
    by_segment = {s: "".join(c.text for c in chunks if c.segment == s) for s in Segment}
    assert by_segment[Segment.REASONING] == "".join(REASONING)
    assert by_segment[Segment.ANSWER] == "Scanning localhost now."
    assert by_segment[Segment.TOOL_CALL] == 'nmap({"host": "127.0.0.1"})'
    assert chunks[-1].final and chunks[-1].attributes[CLOSE_ATTRIBUTE] == "complete"
    assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_a_client_that_stops_early_closes_the_trace_with_what_it_saw(server: SSEServer) -> None:
    # Given a long, slow stream
    server.script.events = [(None, chat_chunk({"reasoning_content": f"Thought {i}. "})) for i in range(200)]
    server.script.delay_s = 0.01
    sink = MemoryChunkSink()
    stream = client(server).chat.completions.create(model="m", messages=[], stream=True)
    # When the caller breaks out after three chunks
    with tee_chat_stream(stream, TraceWriter(sink, model="m", trace_id="chat-cancel")) as teed:
        for i, _ in enumerate(teed):
            if i == 2:
                break
    # Then the trace is closed, final, as cancelled, holding exactly the three deltas seen
    chunks = sink.trace("chat-cancel")
    assert chunks[-1].final and chunks[-1].attributes[CLOSE_ATTRIBUTE] == "cancelled"
    assert "".join(c.text for c in chunks) == "Thought 0. Thought 1. Thought 2. "
    # And the HTTP stream was closed: the server's writes start failing
    assert server.script.seen_disconnect.wait(10)


def test_an_error_event_mid_stream_raises_to_the_caller_and_closes_the_trace_as_error(server: SSEServer) -> None:
    # Given a stream that reports an error after some reasoning
    server.script.events = [
        (None, chat_chunk({"reasoning_content": "Let me think. "})),
        (None, {"error": {"message": "model overloaded", "type": "server_error"}}),
    ]
    sink = MemoryChunkSink()
    stream = client(server).chat.completions.create(model="m", messages=[], stream=True)
    # When the caller iterates
    with pytest.raises(APIError, match="model overloaded"):
        for _ in tee_chat_stream(stream, TraceWriter(sink, model="m", trace_id="chat-error")):
            pass
    # Then the SDK's error reached the caller and the trace was still closed with what was seen
    (chunk,) = sink.trace("chat-error")
    assert chunk.final and chunk.text == "Let me think. "
    assert chunk.attributes[CLOSE_ATTRIBUTE] == "error" and chunk.attributes["cotwatch.error"] == "APIError"


def response_events() -> list[tuple[str | None, dict[str, Any] | str]]:
    base = {"id": "resp_1", "object": "response", "created_at": 1, "model": "o-mini", "output": [], "tools": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress"}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "summary": []},
        },
        {
            "type": "response.reasoning_summary_part.added",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": ""},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "delta": "**Planning** I will look it up.",
        },
        {
            "type": "response.reasoning_summary_part.added",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 1,
            "part": {"type": "summary_text", "text": ""},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 1,
            "delta": "Then I answer.",
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_9",
                "name": "search",
                "arguments": "",
                "status": "in_progress",
            },
        },
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": '{"q": "wea'},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": 'ther"}'},
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_9",
                "name": "search",
                "arguments": '{"q": "weather"}',
                "status": "completed",
            },
        },
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 2,
            "content_index": 0,
            "delta": "It is sunny.",
        },
        {"type": "response.completed", "response": {**base, "status": "completed"}},
    ]
    return [(e["type"], {**e, "sequence_number": i}) for i, e in enumerate(events)]


def test_responses_stream_writes_summary_paragraphs_function_call_and_text(server: SSEServer) -> None:
    # Given a Responses API stream with a two-part reasoning summary, a function call and output text
    server.script.events = response_events()
    sink = MemoryChunkSink()
    stream = client(server).responses.create(model="o-mini", input="weather?", stream=True)
    # When the caller iterates the teed stream
    with tee_response_stream(stream, TraceWriter(sink, model="o-mini", trace_id="resp-1")) as teed:
        types = [event.type for event in teed]
    # Then every event reached the caller, typed by the SDK
    assert types == [name for name, _ in response_events()]
    chunks = sink.trace("resp-1")
    assert [(c.segment, c.text) for c in chunks] == [
        (Segment.REASONING, "**Planning** I will look it up.\n\nThen I answer."),
        (Segment.TOOL_CALL, 'search({"q": "weather"})'),
        (Segment.ANSWER, "It is sunny."),
    ]
    assert chunks[1].attributes["tool.call_id"] == "call_9"
    assert chunks[-1].final and chunks[-1].attributes[CLOSE_ATTRIBUTE] == "complete"


def test_responses_stream_failed_event_closes_the_trace_as_error(server: SSEServer) -> None:
    events = response_events()[:4]
    failed = {
        "type": "response.failed",
        "sequence_number": 4,
        "response": {"id": "resp_1", "object": "response", "status": "failed", "output": []},
    }
    server.script.events = [*events, ("response.failed", failed)]
    sink = MemoryChunkSink()
    stream = client(server).responses.create(model="o-mini", input="x", stream=True)
    with tee_response_stream(stream, TraceWriter(sink, model="o-mini", trace_id="resp-failed")) as teed:
        assert [e.type for e in teed][-1] == "response.failed"
    (chunk,) = sink.trace("resp-failed")
    assert chunk.text == "**Planning** I will look it up." and chunk.final
    assert chunk.attributes[CLOSE_ATTRIBUTE] == "error"


def test_async_chat_stream_is_teed_the_same_way(server: SSEServer) -> None:
    server.script.events = CHAT_EVENTS
    sink = MemoryChunkSink()
    port = server.server_address[1]

    async def run() -> int:
        aclient = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test", max_retries=0)
        stream = await aclient.chat.completions.create(model="qwen3-32b", messages=[], stream=True)
        count = 0
        async with atee_chat_stream(stream, AsyncTraceWriter(sink, model="qwen3-32b", trace_id="achat")) as teed:
            async for _ in teed:
                count += 1
        await aclient.close()
        return count

    assert asyncio.run(run()) == len(CHAT_EVENTS) - 1
    chunks = sink.trace("achat")
    assert "".join(c.text for c in chunks if c.segment == Segment.REASONING) == "".join(REASONING)
    # The tool call was published as soon as it was whole; the close then adds an empty final marker.
    assert [c.text for c in chunks if c.segment == Segment.TOOL_CALL] == ['nmap({"host": "127.0.0.1"})', ""]
    assert chunks[-1].final and chunks[-1].attributes[CLOSE_ATTRIBUTE] == "complete"
