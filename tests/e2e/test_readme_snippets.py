"""The README's "Sending traces" snippets, run as written against the session's Kafka broker.

Blocks preceded by ``<!-- readme-snippet: run -->`` are taken from README.md; only their addresses are
pointed at this session (the broker for ``localhost:19092``, a fresh topic for ``cotwatch-traces``, the
loopback OpenAI-compatible server for ``http://localhost:8000/v1``). What they published is read back.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from cotwatch.trace import Segment, TraceChunk, TraceDocument
from cotwatch_local.adapter_demo import LoopbackChatServer
from cotwatch_local.cloudformation import create_kafka_topic

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = re.compile(r"<!-- readme-snippet: run -->\n```python\n(.*?)```", re.DOTALL)
CHAT_REPLY = TraceDocument(
    trace_id="Hi", model="qwen3-32b", reasoning="The user greets me. A short greeting back is right.", answer="Hello!"
)


def snippets() -> list[str]:
    return MARKER.findall(README.read_text(encoding="utf-8"))


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[TraceChunk]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=2000)
    chunks: list[TraceChunk] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(chunks) < expected and time.monotonic() < deadline:
            chunks += [TraceChunk.model_validate_json(r.value) for r in consumer]
    finally:
        consumer.close()
    return chunks


def test_the_readme_producer_snippets_run_as_written_and_publish_their_traces(kafka_bootstrap: str) -> None:
    # Given the README's runnable snippets, a topic and a loopback OpenAI-compatible server
    blocks = snippets()
    assert len(blocks) == 3, "the loop, the chat stream and the agent snippets are marked runnable"
    topic = f"readme-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(kafka_bootstrap, topic, 1)
    printed = io.StringIO()
    with LoopbackChatServer([CHAT_REPLY]) as server:
        # When each runs as written, only its addresses pointed at this session
        for block in blocks:
            code = (
                block.replace('"localhost:19092"', repr(kafka_bootstrap))
                .replace('"cotwatch-traces"', repr(topic))
                .replace('"http://localhost:8000/v1"', repr(server.base_url))
            )
            assert code != block
            with contextlib.redirect_stdout(printed):
                exec(compile(code, f"{README}:snippet", "exec"), {"__name__": "readme_snippet"})

    # Then the chat snippet printed the streamed answer to its user
    assert printed.getvalue() == CHAT_REPLY.answer
    # And the three traces are on the topic, whole and closed
    chunks = read_topic(kafka_bootstrap, topic, expected=3)
    traces: dict[str, list[TraceChunk]] = {}
    for chunk in chunks:
        traces.setdefault(chunk.trace_id, []).append(chunk)
    by_model = {trace[0].model: trace for trace in traces.values()}
    assert set(by_model) == {"reasoner-large", "qwen3-32b", "agent-model"}

    def text(model: str, segment: Segment) -> str:
        return "".join(c.text for c in by_model[model] if c.segment == segment)

    assert text("reasoner-large", Segment.REASONING) == "The user wants a port scan. That is their own host."
    assert by_model["reasoner-large"][0].tenant == "acme"
    assert text("qwen3-32b", Segment.REASONING) == CHAT_REPLY.reasoning
    assert text("qwen3-32b", Segment.ANSWER) == CHAT_REPLY.answer
    agent = by_model["agent-model"]
    assert {c.conversation_id for c in agent} == {"conv-19"}
    assert [c.segment for c in agent if c.segment in (Segment.TOOL_CALL, Segment.TOOL_RESULT)] == [
        Segment.TOOL_CALL,
        Segment.TOOL_RESULT,
    ]
    assert "get_weather" in text("agent-model", Segment.TOOL_CALL) and "Oslo" in text("agent-model", Segment.ANSWER)
    for trace in traces.values():
        assert [c.seq for c in trace] == list(range(len(trace))) and trace[-1].final
