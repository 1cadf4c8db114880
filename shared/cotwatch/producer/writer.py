"""Turn a trace's streaming text into numbered chunks cut at sentence or paragraph boundaries.

:class:`TraceChunker` is the pure part (text in, chunks out, no I/O); :class:`TraceWriter` (sync) and
:class:`AsyncTraceWriter` (asyncio) feed it and hand every chunk to a :class:`~cotwatch.producer.sink.ChunkSink`.

Cutting rules, in order:

- a chunk carries one segment (reasoning, answer, tool_call, tool_result) with one set of attributes; a
  change of either publishes what was buffered;
- once ``target_chars`` are buffered, cut at the last paragraph break, else the last sentence or line end,
  within ``max_chars``; with no boundary, wait until ``max_chars`` and then cut at a space (or hard);
- once the oldest buffered text is ``max_delay_s`` old, cut at the last boundary so a slow stream still
  reaches the monitor (checked whenever text arrives, or on :meth:`TraceWriter.poll`);
- closing publishes the rest as the ``final`` chunk (an empty one when nothing is left), with
  ``cotwatch.close`` = ``complete`` | ``cancelled`` | ``error`` in its attributes.

Whitespace-only pieces between segments are not published: they carry nothing to score.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from cotwatch.producer.errors import DeliveryFailedError, ProducerError, TraceClosedError
from cotwatch.producer.sink import ChunkSink, Delivery
from cotwatch.trace import MAX_CHUNK_CHARS, Segment, TraceChunk

CLOSE_ATTRIBUTE = "cotwatch.close"
ERROR_ATTRIBUTE = "cotwatch.error"
TOOL_NAME_ATTRIBUTE = "tool.name"
TOOL_CALL_ID_ATTRIBUTE = "tool.call_id"
TOOL_ERROR_ATTRIBUTE = "tool.error"

# A sentence ends at . ! ? or … (possibly followed by closing quotes/brackets) and then whitespace.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s+")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")


@dataclass(frozen=True)
class ChunkPolicy:
    """How big and how late chunks may get."""

    target_chars: int = 1000
    max_chars: int = 1500
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.target_chars <= self.max_chars <= MAX_CHUNK_CHARS:
            raise ValueError(f"need 0 < target_chars <= max_chars <= {MAX_CHUNK_CHARS}")
        if self.max_delay_s <= 0:
            raise ValueError("max_delay_s must be positive")


def _boundaries(window: str) -> tuple[int, int]:
    """End offsets of the last paragraph break and of the last sentence or line end in ``window`` (0: none)."""
    paragraph = max((m.end() for m in _PARAGRAPH.finditer(window)), default=0)
    sentence = max((m.end() for m in _SENTENCE_END.finditer(window)), default=0)
    return paragraph, max(sentence, window.rfind("\n") + 1)


def last_boundary(text: str, limit: int, *, prefer_paragraph_from: int = 0) -> int:
    """End offset of the best cut in ``text[:limit]``: a paragraph break at or after ``prefer_paragraph_from``,
    else the last sentence or line end; 0 when there is none."""
    paragraph, sentence = _boundaries(text[:limit])
    if paragraph and paragraph >= prefer_paragraph_from:
        return paragraph
    return max(paragraph, sentence)


def _hard_cut(text: str, limit: int) -> int:
    space = text.rfind(" ", limit // 2, limit)
    return space + 1 if space != -1 else limit


def close_reason_for(exc: BaseException | None) -> str:
    if exc is None:
        return "complete"
    if isinstance(exc, (GeneratorExit, KeyboardInterrupt, asyncio.CancelledError)):
        return "cancelled"
    return "error"


class TraceChunker:
    """Pure: accumulates one trace's text and returns the chunks that are ready."""

    def __init__(
        self,
        *,
        model: str,
        trace_id: str | None = None,
        tenant: str = "default",
        conversation_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
        policy: ChunkPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or ChunkPolicy()
        self._clock = clock
        self._base = {
            "trace_id": trace_id or uuid.uuid4().hex,
            "model": model,
            "tenant": tenant,
            "conversation_id": conversation_id,
        }
        self._attributes = dict(attributes or {})
        # Fail at construction, not at the first chunk, when an identifier does not fit the schema.
        TraceChunk(**self._base, text="", attributes=self._attributes)
        self._seq = 0
        self._buffer = ""
        self._since: float | None = None
        self._segment = Segment.REASONING
        self._extra: dict[str, str] = {}
        self.closed = False

    @property
    def trace_id(self) -> str:
        return str(self._base["trace_id"])

    @property
    def next_seq(self) -> int:
        return self._seq

    def add(self, text: str, segment: Segment, extra: Mapping[str, str] | None = None) -> list[TraceChunk]:
        if self.closed:
            raise TraceClosedError(f"trace {self.trace_id} is closed")
        extra = dict(extra or {})
        ready: list[TraceChunk] = []
        if (segment, extra) != (self._segment, self._extra):
            ready += self._drain()
            self._segment, self._extra = segment, extra
        if text:
            if not self._buffer:
                self._since = self._clock()
            self._buffer += text
        ready += [c for c in self._cut_ready() if c is not None]
        return ready

    def poll(self) -> list[TraceChunk]:
        """Chunks due by time alone (a stream that paused mid-paragraph)."""
        return [] if self.closed else [c for c in self._cut_ready() if c is not None]

    def flush(self) -> list[TraceChunk]:
        """Everything buffered, now, not final."""
        return [] if self.closed else self._drain()

    def finish(self, reason: str = "complete", error: BaseException | None = None) -> list[TraceChunk]:
        """The remaining text as the final chunk; idempotent (a second call returns nothing)."""
        if self.closed:
            return []
        self.closed = True
        ready = self._drain_oversize()
        closing = {CLOSE_ATTRIBUTE: reason}
        if error is not None:
            closing[ERROR_ATTRIBUTE] = type(error).__name__
        text = self._buffer if self._buffer.strip() else ""
        self._buffer = ""
        ready.append(self._chunk(text, final=True, closing=closing))
        return ready

    def _cut_ready(self) -> list[TraceChunk | None]:
        ready: list[TraceChunk | None] = []
        while len(self._buffer) >= self.policy.target_chars:
            cut = self._size_cut()
            if not cut:
                break
            ready.append(self._emit(cut))
        if self._buffer and self._since is not None and self._clock() - self._since >= self.policy.max_delay_s:
            cut = last_boundary(self._buffer, self.policy.max_chars)
            if cut:
                ready.append(self._emit(cut))
        return ready

    def _size_cut(self) -> int:
        """Where to cut by size: a paragraph break past half the target, a sentence end past the target, or,
        once the buffer is at the maximum, the best cut there is; 0 means wait for more text."""
        policy, buffer = self.policy, self._buffer
        paragraph, sentence = _boundaries(buffer[: policy.max_chars])
        if paragraph >= policy.target_chars // 2 and paragraph:
            return paragraph
        if sentence >= policy.target_chars:
            return sentence
        if len(buffer) < policy.max_chars:
            return 0
        return max(paragraph, sentence) or _hard_cut(buffer, policy.max_chars)

    def _drain_oversize(self) -> list[TraceChunk]:
        ready: list[TraceChunk] = []
        while len(self._buffer) > self.policy.max_chars:
            chunk = self._emit(self._size_cut())
            if chunk is not None:
                ready.append(chunk)
        return ready

    def _drain(self) -> list[TraceChunk]:
        ready = self._drain_oversize()
        chunk = self._emit(len(self._buffer))
        if chunk is not None:
            ready.append(chunk)
        self._buffer, self._since = "", None
        return ready

    def _emit(self, cut: int) -> TraceChunk | None:
        text, self._buffer = self._buffer[:cut], self._buffer[cut:]
        self._since = self._clock() if self._buffer else None
        # Whitespace carries nothing to score: it takes no seq, so numbering stays dense.
        return self._chunk(text, final=False) if text.strip() else None

    def _chunk(self, text: str, *, final: bool, closing: Mapping[str, str] | None = None) -> TraceChunk:
        chunk = TraceChunk(
            **self._base,
            seq=self._seq,
            final=final,
            segment=self._segment,
            text=text,
            created_at=datetime.now(UTC),
            attributes={**self._attributes, **self._extra, **(closing or {})},
        )
        self._seq += 1
        return chunk


def tool_call_text(name: str, arguments: str | Mapping[str, Any] | None) -> str:
    """How a tool call reads to the monitor: ``name(arguments)``, arguments as JSON."""
    if arguments is None:
        rendered = ""
    elif isinstance(arguments, str):
        rendered = arguments
    else:
        rendered = json.dumps(arguments, ensure_ascii=False)
    return f"{name}({rendered})"


def _tool_attributes(name: str | None, call_id: str | None, error: bool = False) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if name:
        attrs[TOOL_NAME_ATTRIBUTE] = name
    if call_id:
        attrs[TOOL_CALL_ID_ATTRIBUTE] = call_id
    if error:
        attrs[TOOL_ERROR_ATTRIBUTE] = "true"
    return attrs


class _WriterBase:
    def __init__(
        self,
        sink: ChunkSink,
        *,
        model: str,
        trace_id: str | None = None,
        tenant: str = "default",
        conversation_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
        policy: ChunkPolicy | None = None,
        delivery_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._chunker = TraceChunker(
            model=model,
            trace_id=trace_id,
            tenant=tenant,
            conversation_id=conversation_id,
            attributes=attributes,
            policy=policy,
            clock=clock,
        )
        self._delivery_timeout_s = delivery_timeout_s
        self._pending: list[Delivery] = []
        self.sent: int = 0

    @property
    def trace_id(self) -> str:
        return self._chunker.trace_id

    @property
    def closed(self) -> bool:
        return self._chunker.closed

    def _send_now(self, chunks: list[TraceChunk]) -> None:
        for chunk in chunks:
            self._raise_if_failed()
            self._pending.append(self._sink.send(chunk))
            self.sent += 1
        # Acknowledged chunks need no tracking; keeps a long trace's bookkeeping small.
        self._pending = [d for d in self._pending if not d.done or d.error is not None]

    def _raise_if_failed(self) -> None:
        failed = [d for d in self._pending if d.error is not None]
        if failed:
            first = failed[0]
            raise DeliveryFailedError(
                f"trace {self.trace_id}: chunk seq={first.seq} was not delivered ({first.error!r}); "
                "later chunks would leave a gap, so the trace stops here",
                undelivered=len(failed),
            ) from first.error

    def _wait_all(self) -> None:
        deadline = time.monotonic() + self._delivery_timeout_s
        errors: list[DeliveryFailedError] = []
        for delivery in self._pending:
            try:
                delivery.wait(max(0.0, deadline - time.monotonic()))
            except DeliveryFailedError as exc:
                errors.append(exc)
        self._pending = []
        if errors:
            raise DeliveryFailedError(
                f"trace {self.trace_id}: {len(errors)} of {self.sent} chunks not acknowledged: {errors[0]}",
                undelivered=len(errors),
            ) from errors[0]


class TraceWriter(_WriterBase):
    """Write one trace as it streams; use as a context manager so the trace is always closed.

    ``write`` and friends may block while the sink applies back-pressure, and raise a
    :class:`~cotwatch.producer.errors.ProducerError` when a chunk cannot be sent. ``close`` publishes the
    final chunk and waits until Kafka has acknowledged every chunk of the trace.
    """

    def write(
        self, text: str, segment: Segment = Segment.REASONING, *, attributes: Mapping[str, str] | None = None
    ) -> None:
        self._send_now(self._chunker.add(text, segment, attributes))

    def reasoning(self, text: str) -> None:
        self.write(text, Segment.REASONING)

    def answer(self, text: str) -> None:
        self.write(text, Segment.ANSWER)

    def tool_call(
        self, name: str, arguments: str | Mapping[str, Any] | None = None, *, call_id: str | None = None
    ) -> None:
        """One whole tool call, published at once as its own chunk(s)."""
        self._send_now(
            self._chunker.add(tool_call_text(name, arguments), Segment.TOOL_CALL, _tool_attributes(name, call_id))
        )
        self.flush()

    def tool_result(
        self, content: str, *, call_id: str | None = None, name: str | None = None, error: bool = False
    ) -> None:
        """What a tool returned (or the error it raised), published at once."""
        self._send_now(self._chunker.add(content, Segment.TOOL_RESULT, _tool_attributes(name, call_id, error)))
        self.flush()

    def poll(self) -> None:
        """Publish text that has waited ``max_delay_s``; call it from a loop when the stream may stall."""
        self._send_now(self._chunker.poll())

    def flush(self) -> None:
        self._send_now(self._chunker.flush())

    def close(self, reason: str = "complete", error: BaseException | None = None) -> None:
        """Publish the final chunk and wait for every acknowledgement. Safe to call twice."""
        if self._chunker.closed and not self._pending:
            return
        self._send_now(self._chunker.finish(reason, error))
        self._wait_all()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # On an exception the trace is still closed with what was seen; a delivery error then surfaces too,
        # chained to the original exception.
        self.close(close_reason_for(exc), exc)


class AsyncTraceWriter(_WriterBase):
    """The asyncio twin of :class:`TraceWriter`: the sink's blocking calls run in a worker thread."""

    def __init__(self, sink: ChunkSink, **kwargs: Any) -> None:
        super().__init__(sink, **kwargs)
        self._lock = asyncio.Lock()

    async def _send(self, chunks: list[TraceChunk]) -> None:
        if chunks:
            # Sends stay in order even if callers do not await one write before starting the next.
            async with self._lock:
                await asyncio.to_thread(self._send_now, chunks)

    async def write(
        self, text: str, segment: Segment = Segment.REASONING, *, attributes: Mapping[str, str] | None = None
    ) -> None:
        await self._send(self._chunker.add(text, segment, attributes))

    async def reasoning(self, text: str) -> None:
        await self.write(text, Segment.REASONING)

    async def answer(self, text: str) -> None:
        await self.write(text, Segment.ANSWER)

    async def tool_call(
        self, name: str, arguments: str | Mapping[str, Any] | None = None, *, call_id: str | None = None
    ) -> None:
        await self._send(
            self._chunker.add(tool_call_text(name, arguments), Segment.TOOL_CALL, _tool_attributes(name, call_id))
        )
        await self.flush()

    async def tool_result(
        self, content: str, *, call_id: str | None = None, name: str | None = None, error: bool = False
    ) -> None:
        await self._send(self._chunker.add(content, Segment.TOOL_RESULT, _tool_attributes(name, call_id, error)))
        await self.flush()

    async def poll(self) -> None:
        await self._send(self._chunker.poll())

    async def flush(self) -> None:
        await self._send(self._chunker.flush())

    async def close(self, reason: str = "complete", error: BaseException | None = None) -> None:
        if self._chunker.closed and not self._pending:
            return
        await self._send(self._chunker.finish(reason, error))
        async with self._lock:
            await asyncio.to_thread(self._wait_all)

    async def __aenter__(self) -> AsyncTraceWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close(close_reason_for(exc), exc)


__all__ = [
    "AsyncTraceWriter",
    "ChunkPolicy",
    "ProducerError",
    "TraceChunker",
    "TraceWriter",
    "last_boundary",
    "tool_call_text",
]
