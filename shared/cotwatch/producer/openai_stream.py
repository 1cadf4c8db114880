"""Tee an OpenAI-compatible stream into a :class:`~cotwatch.producer.writer.TraceWriter`, unchanged.

Chat Completions (``client.chat.completions.create(..., stream=True)``): each chunk's first choice is read
for reasoning deltas (``delta.reasoning_content`` as vLLM and DeepSeek-style servers send it, or
``delta.reasoning``), content deltas (the answer; refusals too) and tool-call deltas (assembled per index
and published when the choice finishes). Responses API (``client.responses.create(..., stream=True)``):
reasoning-summary and reasoning-text deltas, output-text and refusal deltas, and function calls (published
at ``response.output_item.done``).

The wrapper yields every chunk or event object exactly as the SDK produced it. The trace is closed
(``final`` chunk, ``cotwatch.close`` attribute) when the stream ends (``complete``), when the caller
stops early and closes the wrapper or leaves its ``with`` block (``cancelled``; the upstream HTTP stream
is closed too), or when the stream raises (``error``; the exception propagates). A producer failure
(broker away) propagates from the iteration: a monitored stream does not go on unmonitored silently.

With ``close_writer=False`` (agent loops: several model turns in one trace) the turn's text is flushed
at the end and the writer stays open. The ``openai`` package is needed only to make the streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

from cotwatch.producer.writer import AsyncTraceWriter, TraceWriter, close_reason_for

T = TypeVar("T")


@dataclass
class _ToolCallParts:
    call_id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Op:
    """One thing to do to the writer: ``reasoning``/``answer`` text, a whole ``tool_call``, or ``close``."""

    kind: str
    text: str = ""
    name: str = ""
    call_id: str | None = None
    reason: str = ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class ChatChunkReader:
    """Turns chat-completion chunks into writer operations; keeps tool-call fragments between chunks."""

    def __init__(self, choice_index: int = 0) -> None:
        self.choice_index = choice_index
        self._calls: dict[int, _ToolCallParts] = {}
        self.finish_reason: str | None = None

    def read(self, chunk: Any) -> list[Op]:
        ops: list[Op] = []
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0) != self.choice_index:
                continue
            delta = getattr(choice, "delta", None)
            if delta is not None:
                # Not in the SDK's schema: servers add it, and the SDK keeps unknown fields as attributes.
                reasoning = _text(getattr(delta, "reasoning_content", None)) or _text(getattr(delta, "reasoning", None))
                if reasoning:
                    ops.append(Op("reasoning", reasoning))
                content = _text(getattr(delta, "content", None)) + _text(getattr(delta, "refusal", None))
                if content:
                    ops.append(Op("answer", content))
                for call in getattr(delta, "tool_calls", None) or []:
                    parts = self._calls.setdefault(int(getattr(call, "index", 0) or 0), _ToolCallParts())
                    parts.call_id = getattr(call, "id", None) or parts.call_id
                    function = getattr(call, "function", None)
                    if function is not None:
                        parts.name += _text(getattr(function, "name", None))
                        parts.arguments.append(_text(getattr(function, "arguments", None)))
            if getattr(choice, "finish_reason", None):
                self.finish_reason = str(choice.finish_reason)
                ops += self.pending_calls()
        return ops

    def pending_calls(self) -> list[Op]:
        """Tool calls assembled so far, in index order (also called when a stream ends or is cut)."""
        ops = [
            Op("tool_call", "".join(parts.arguments), name=parts.name or "tool", call_id=parts.call_id)
            for _, parts in sorted(self._calls.items())
        ]
        self._calls.clear()
        return ops


class ResponseEventReader:
    """Turns Responses API stream events into writer operations."""

    def __init__(self) -> None:
        self._calls: dict[str, _ToolCallParts] = {}
        self.status: str | None = None

    def read(self, event: Any) -> list[Op]:
        kind = getattr(event, "type", "")
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [Op("reasoning", _text(getattr(event, "delta", None)))]
        if kind == "response.reasoning_summary_part.added" and getattr(event, "summary_index", 0):
            return [Op("reasoning", "\n\n")]  # summary parts are paragraphs
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            return [Op("answer", _text(getattr(event, "delta", None)))]
        item: Any = getattr(event, "item", None)
        if kind == "response.output_item.added" and getattr(item, "type", None) == "function_call":
            self._calls[str(item.id)] = _ToolCallParts(call_id=getattr(item, "call_id", None), name=item.name)
        elif kind == "response.function_call_arguments.delta":
            self._calls.setdefault(str(event.item_id), _ToolCallParts()).arguments.append(_text(event.delta))
        elif kind == "response.output_item.done" and getattr(item, "type", None) == "function_call":
            self._calls.pop(str(item.id), None)
            return [Op("tool_call", _text(item.arguments), name=item.name, call_id=getattr(item, "call_id", None))]
        elif kind == "response.completed":
            return [Op("close", reason="complete")]
        elif kind == "response.incomplete":
            return [Op("close", reason="incomplete")]
        elif kind in ("response.failed", "error"):
            return [Op("close", reason="error")]
        return []

    def pending_calls(self) -> list[Op]:
        ops = [
            Op("tool_call", "".join(p.arguments), name=p.name or "tool", call_id=p.call_id)
            for p in self._calls.values()
        ]
        self._calls.clear()
        return ops


Reader = ChatChunkReader | ResponseEventReader


def _apply(writer: TraceWriter, op: Op) -> bool:
    """Apply one op; True when it asks to close the trace."""
    if op.kind == "reasoning":
        writer.reasoning(op.text)
    elif op.kind == "answer":
        writer.answer(op.text)
    elif op.kind == "tool_call":
        writer.tool_call(op.name, op.text, call_id=op.call_id)
    return op.kind == "close"


async def _apply_async(writer: AsyncTraceWriter, op: Op) -> bool:
    if op.kind == "reasoning":
        await writer.reasoning(op.text)
    elif op.kind == "answer":
        await writer.answer(op.text)
    elif op.kind == "tool_call":
        await writer.tool_call(op.name, op.text, call_id=op.call_id)
    return op.kind == "close"


class TeedStream(Generic[T]):
    """Iterate it like the SDK stream; it yields the same objects and writes the trace as they pass."""

    def __init__(self, stream: Iterable[T], writer: TraceWriter, reader: Reader, *, close_writer: bool = True) -> None:
        self._stream = stream
        self._iterator: Iterator[T] = iter(stream)
        self.writer = writer
        self._reader = reader
        self._close_writer = close_writer
        self._finished = False
        self._close_reason: str | None = None

    def __iter__(self) -> TeedStream[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        try:
            item = next(self._iterator)
        except StopIteration:
            self._finish(self._close_reason or "complete", None)
            raise
        except BaseException as exc:
            self._finish(close_reason_for(exc), exc, quiet=True)
            raise
        try:
            for op in self._reader.read(item):
                if _apply(self.writer, op):
                    self._close_reason = op.reason
        except BaseException as exc:
            self._close_upstream()
            self._finish("error", exc, quiet=True)
            raise
        return item

    def _finish(self, reason: str, error: BaseException | None, *, quiet: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            for op in self._reader.pending_calls():
                _apply(self.writer, op)
            if self._close_writer:
                self.writer.close(reason, error)
            else:
                self.writer.flush()
        except Exception as exc:
            if not quiet:
                raise
            if error is not None:
                error.add_note(f"cotwatch: closing trace {self.writer.trace_id} also failed: {exc!r}")

    def _close_upstream(self) -> None:
        closer = getattr(self._stream, "close", None)
        if callable(closer):
            closer()

    def close(self) -> None:
        """Stop early: closes the HTTP stream and the trace (``cancelled``) with what was seen."""
        if not self._finished:
            self._close_upstream()
            self._finish("cancelled", None)

    def __enter__(self) -> TeedStream[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not self._finished:
            self._close_upstream()
            self._finish(close_reason_for(exc), exc, quiet=True)
        self.close()


class AsyncTeedStream(Generic[T]):
    """The asyncio twin of :class:`TeedStream`, for ``AsyncOpenAI`` streams and :class:`AsyncTraceWriter`."""

    def __init__(
        self, stream: AsyncIterable[T], writer: AsyncTraceWriter, reader: Reader, *, close_writer: bool = True
    ) -> None:
        self._stream = stream
        self._iterator: AsyncIterator[T] = aiter(stream)
        self.writer = writer
        self._reader = reader
        self._close_writer = close_writer
        self._finished = False
        self._close_reason: str | None = None

    def __aiter__(self) -> AsyncTeedStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await anext(self._iterator)
        except StopAsyncIteration:
            await self._finish(self._close_reason or "complete", None)
            raise
        except BaseException as exc:
            await self._finish(close_reason_for(exc), exc, quiet=True)
            raise
        try:
            for op in self._reader.read(item):
                if await _apply_async(self.writer, op):
                    self._close_reason = op.reason
        except BaseException as exc:
            await self._close_upstream()
            await self._finish("error", exc, quiet=True)
            raise
        return item

    async def _finish(self, reason: str, error: BaseException | None, *, quiet: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            for op in self._reader.pending_calls():
                await _apply_async(self.writer, op)
            if self._close_writer:
                await self.writer.close(reason, error)
            else:
                await self.writer.flush()
        except Exception as exc:
            if not quiet:
                raise
            if error is not None:
                error.add_note(f"cotwatch: closing trace {self.writer.trace_id} also failed: {exc!r}")

    async def _close_upstream(self) -> None:
        closer = getattr(self._stream, "close", None)
        if callable(closer):
            result = closer()
            if hasattr(result, "__await__"):
                await result

    async def aclose(self) -> None:
        if not self._finished:
            await self._close_upstream()
            await self._finish("cancelled", None)

    async def __aenter__(self) -> AsyncTeedStream[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not self._finished:
            await self._close_upstream()
            await self._finish(close_reason_for(exc), exc, quiet=True)
        await self.aclose()


def tee_chat_stream(stream: Iterable[T], writer: TraceWriter, *, close_writer: bool = True) -> TeedStream[T]:
    """Wrap a streamed chat completion (``Stream[ChatCompletionChunk]``)."""
    return TeedStream(stream, writer, ChatChunkReader(), close_writer=close_writer)


def tee_response_stream(stream: Iterable[T], writer: TraceWriter, *, close_writer: bool = True) -> TeedStream[T]:
    """Wrap a streamed Responses API call (``Stream[ResponseStreamEvent]``)."""
    return TeedStream(stream, writer, ResponseEventReader(), close_writer=close_writer)


def atee_chat_stream(
    stream: AsyncIterable[T], writer: AsyncTraceWriter, *, close_writer: bool = True
) -> AsyncTeedStream[T]:
    """Wrap an ``AsyncOpenAI`` streamed chat completion."""
    return AsyncTeedStream(stream, writer, ChatChunkReader(), close_writer=close_writer)


def atee_response_stream(
    stream: AsyncIterable[T], writer: AsyncTraceWriter, *, close_writer: bool = True
) -> AsyncTeedStream[T]:
    """Wrap an ``AsyncOpenAI`` streamed Responses API call."""
    return AsyncTeedStream(stream, writer, ResponseEventReader(), close_writer=close_writer)
