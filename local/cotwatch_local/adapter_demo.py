"""The demo traces produced the way a serving stack would: through :class:`~cotwatch.producer.TraceWriter`
and through the OpenAI chat-stream tee, against an OpenAI-compatible endpoint played in-process.

``LoopbackChatServer`` speaks the ``/v1/chat/completions`` streaming protocol (server-sent events of
``chat.completion.chunk`` objects, vLLM-style ``reasoning_content`` deltas, then content deltas, then
``[DONE]``). The request's last user message names the demo trace to stream, so every trace is replayed
as deltas the real ``openai`` SDK parses; nothing about the adapters is stubbed.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cotwatch.producer import ChunkSink, TraceWriter
from cotwatch.trace import TraceDocument

TRACE_WRITER = "trace_writer"
OPENAI_CHAT = "openai_chat"
PATH_ATTRIBUTE = "cotwatch.demo_path"
_PIECE = re.compile(r"\S+\s*|\s+")


def deltas(text: str, words: int = 4) -> Iterator[str]:
    """The text in pieces of a few words, whitespace kept: joined, they give the text back exactly."""
    pieces = _PIECE.findall(text)
    for start in range(0, len(pieces), words):
        yield "".join(pieces[start : start + words])


def _chunk(trace_id: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{trace_id}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackChatServer

    def log_message(self, *_: Any) -> None:  # the demo prints its own progress
        pass

    def _error(self, status: int, message: str) -> None:
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            trace_id = str(request["messages"][-1]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._error(400, f"expected a chat request whose last message names a demo trace: {exc}")
            return
        if self.path.rstrip("/") != "/v1/chat/completions" or not request.get("stream"):
            self._error(400, "this server only streams /v1/chat/completions")
            return
        doc = self.server.documents.get(trace_id)
        if doc is None:
            self._error(404, f"no demo trace {trace_id!r}")
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        events = [_chunk(trace_id, doc.model, {"role": "assistant", "content": ""})]
        events += [_chunk(trace_id, doc.model, {"reasoning_content": d}) for d in deltas(doc.reasoning)]
        events += [_chunk(trace_id, doc.model, {"content": d}) for d in deltas(doc.answer)]
        events.append(_chunk(trace_id, doc.model, {}, finish="stop"))
        try:
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: its tee closes the trace as cancelled


class LoopbackChatServer(ThreadingHTTPServer):
    """An OpenAI-compatible streaming endpoint on 127.0.0.1 that replays the given traces."""

    daemon_threads = True

    def __init__(self, documents: Sequence[TraceDocument]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.documents = {doc.trace_id: doc for doc in documents}
        self._thread = threading.Thread(target=self.serve_forever, name="loopback-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> LoopbackChatServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


def _writer(sink: ChunkSink, doc: TraceDocument, path: str) -> TraceWriter:
    return TraceWriter(
        sink,
        model=doc.model,
        trace_id=doc.trace_id,
        tenant=doc.tenant,
        conversation_id=doc.conversation_id,
        attributes={**doc.attributes, PATH_ATTRIBUTE: path},
    )


def produce_via_adapters(documents: Sequence[TraceDocument], sink: ChunkSink) -> tuple[int, Counter[str]]:
    """Every other trace straight through a ``TraceWriter`` fed delta by delta, the rest streamed by the
    ``openai`` SDK from the loopback server through ``tee_chat_stream``. Returns the chunks sent and the
    number of traces per path."""
    try:
        from openai import OpenAI

        from cotwatch.producer.openai_stream import tee_chat_stream
    except ImportError as exc:  # the SDK is an extra: cotwatch[openai], or make setup's dev dependencies
        raise SystemExit(f"the adapters demo needs the openai SDK (pip install 'cotwatch[openai]'): {exc}") from exc
    sent, paths = 0, Counter[str]()
    with LoopbackChatServer(documents) as server:
        client = OpenAI(base_url=server.base_url, api_key="loopback", max_retries=0)
        for index, doc in enumerate(documents):
            if index % 2 == 0:
                with _writer(sink, doc, TRACE_WRITER) as trace:
                    for delta in deltas(doc.reasoning):
                        trace.reasoning(delta)
                    for delta in deltas(doc.answer):
                        trace.answer(delta)
                sent, paths[TRACE_WRITER] = sent + trace.sent, paths[TRACE_WRITER] + 1
                continue
            stream = client.chat.completions.create(
                model=doc.model, messages=[{"role": "user", "content": doc.trace_id}], stream=True
            )
            writer = _writer(sink, doc, OPENAI_CHAT)
            with tee_chat_stream(stream, writer) as chunks:
                for _ in chunks:
                    pass  # a serving app would forward each chunk to its user here
            sent, paths[OPENAI_CHAT] = sent + writer.sent, paths[OPENAI_CHAT] + 1
    return sent, paths
