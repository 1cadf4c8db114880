"""Agent loops: tool calls and tool results as segments of the same trace as the reasoning around them.

The monitor scores a trace's chunks in order with the previous chunk's tail as context, so a harmful tool
call is read next to the reasoning that chose it and the result that came back::

    with TraceWriter(sink, model="agent-model") as trace:
        for turn in range(max_turns):
            stream = client.chat.completions.create(model=..., messages=messages, stream=True)
            reply = collect(tee_chat_stream(stream, trace, close_writer=False))
            for call in reply.tool_calls:
                output = run_tool(trace, call.function.name, tools[call.function.name], call.function.arguments,
                                  call_id=call.id)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})

:func:`record_messages` does the same for a non-streaming loop from the OpenAI-format messages it keeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cotwatch.producer.writer import TraceWriter


def render_result(value: object) -> str:
    """A tool's return value as text: strings as they are, everything else as JSON (or ``str``)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _parse_arguments(arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        parsed = json.loads(arguments)
        if not isinstance(parsed, dict):
            raise ValueError(f"tool arguments must be a JSON object, got {type(parsed).__name__}")
        return parsed
    return dict(arguments)


class ToolOutcome:
    """What :func:`tool_span` publishes as the result; set :attr:`output` inside the block."""

    def __init__(self) -> None:
        self.output: object = ""


@contextmanager
def tool_span(
    writer: TraceWriter, name: str, arguments: str | Mapping[str, Any] | None = None, *, call_id: str | None = None
) -> Iterator[ToolOutcome]:
    """Publish the call on entry and the result on exit; an exception is published as the result (flagged
    ``tool.error``) and then re-raised, so a failing tool is still part of the trace."""
    writer.tool_call(name, arguments, call_id=call_id)
    outcome = ToolOutcome()
    try:
        yield outcome
    except Exception as exc:
        writer.tool_result(f"{type(exc).__name__}: {exc}", call_id=call_id, name=name, error=True)
        raise
    writer.tool_result(render_result(outcome.output), call_id=call_id, name=name)


def run_tool(
    writer: TraceWriter,
    name: str,
    function: Callable[..., object],
    arguments: str | Mapping[str, Any] | None = None,
    *,
    call_id: str | None = None,
) -> str:
    """Call ``function(**arguments)`` between a published tool call and its published result; returns the
    result as text, ready for the ``tool`` message of the next turn."""
    with tool_span(writer, name, arguments, call_id=call_id) as outcome:
        outcome.output = function(**_parse_arguments(arguments))
    return render_result(outcome.output)


def _field(item: object, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def record_messages(writer: TraceWriter, messages: Iterable[object]) -> int:
    """Publish the model's side of an OpenAI-format conversation: assistant reasoning (``reasoning_content``
    or ``reasoning``), content and tool calls, and tool results. System and user messages are not the
    model's reasoning and are left out. Accepts dicts or SDK message objects; returns messages recorded."""
    recorded = 0
    for message in messages:
        role = _field(message, "role")
        if role == "assistant":
            reasoning = _field(message, "reasoning_content") or _field(message, "reasoning")
            if isinstance(reasoning, str) and reasoning:
                writer.reasoning(reasoning)
            content = _field(message, "content")
            if isinstance(content, str) and content:
                writer.answer(content)
            for call in _field(message, "tool_calls") or []:
                function = _field(call, "function")
                writer.tool_call(
                    str(_field(function, "name") or "tool"),
                    _field(function, "arguments"),
                    call_id=_field(call, "id"),
                )
            recorded += 1
        elif role == "tool":
            content = _field(message, "content")
            writer.tool_result(render_result(content or ""), call_id=_field(message, "tool_call_id"))
            recorded += 1
    return recorded
