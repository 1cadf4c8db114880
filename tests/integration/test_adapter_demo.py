"""The adapters demo's producing step: the demo traces through TraceWriter and through the real ``openai``
SDK streaming from the in-process loopback server, teed by ``tee_chat_stream``, arrive whole."""

from __future__ import annotations

import pytest
from openai import NotFoundError, OpenAI

from cotwatch.producer import CLOSE_ATTRIBUTE, MemoryChunkSink
from cotwatch.trace import Segment
from cotwatch_local.adapter_demo import (
    OPENAI_CHAT,
    PATH_ATTRIBUTE,
    TRACE_WRITER,
    LoopbackChatServer,
    deltas,
    produce_via_adapters,
)
from cotwatch_local.demo import load_documents

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_deltas_join_back_to_the_text() -> None:
    text = "First line.\n\nSecond  paragraph, with  double spaces and a tail "
    pieces = list(deltas(text, words=3))
    assert "".join(pieces) == text and len(pieces) > 2


def test_every_demo_trace_arrives_whole_through_its_adapter_path() -> None:
    # Given the bundled demo traces and an in-memory sink
    docs = load_documents()
    sink = MemoryChunkSink()
    # When they are produced through the writer and the OpenAI stream tee
    sent, paths = produce_via_adapters(docs, sink)
    # Then both paths were used, and every chunk sent is in the sink
    assert paths == {TRACE_WRITER: (len(docs) + 1) // 2, OPENAI_CHAT: len(docs) // 2}
    assert sent == len(sink.chunks)
    for index, doc in enumerate(docs):
        chunks = sink.trace(doc.trace_id)
        # And each trace's reasoning and answer are exactly the document's, in numbered chunks closed complete
        text = {s: "".join(c.text for c in chunks if c.segment == s) for s in (Segment.REASONING, Segment.ANSWER)}
        assert text == {Segment.REASONING: doc.reasoning, Segment.ANSWER: doc.answer}, doc.trace_id
        assert [c.seq for c in chunks] == list(range(len(chunks)))
        assert chunks[-1].final and chunks[-1].attributes[CLOSE_ATTRIBUTE] == "complete"
        assert {c.tenant for c in chunks} == {doc.tenant} and {c.model for c in chunks} == {doc.model}
        assert chunks[0].attributes[PATH_ATTRIBUTE] == (TRACE_WRITER if index % 2 == 0 else OPENAI_CHAT)


def test_the_loopback_server_answers_an_unknown_trace_with_an_api_error() -> None:
    with LoopbackChatServer([]) as server:
        client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with pytest.raises(NotFoundError, match="no demo trace 'nope'"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "nope"}], stream=True)
