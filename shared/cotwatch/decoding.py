"""Untrusted bytes to JSON values, with every failure a named reason and never a crash.

Python's ``json`` recurses per nesting level, so ``[[[[...]]]]`` 100k levels deep raises ``RecursionError``
(not a ``ValueError``) and, uncaught, fails the whole Lambda batch. pydantic-core's parser (jiter) has a
fixed nesting limit and reports it as a ``ValueError``; sizes are checked before any parsing at all.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

MAX_RECORD_BYTES = 1_048_576  # Kafka's default max.message.bytes: nothing larger is a valid record


class PayloadError(ValueError):
    """Bytes that cannot become a JSON value; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def load_json(data: bytes | str, *, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """Parse ``data`` as JSON or raise :class:`PayloadError` with reason ``too_large``, ``not_utf8``,
    ``too_deep`` or ``not_json``."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > max_bytes:
        raise PayloadError("too_large", f"value is {size} bytes, over the {max_bytes}-byte limit")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError("not_utf8", f"value is not UTF-8: {exc}") from exc
    try:
        return from_json(data)
    except RecursionError as exc:  # belt and braces: jiter reports depth as a ValueError
        raise PayloadError("too_deep", "value nests deeper than the parser's limit") from exc
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise PayloadError("too_deep", f"value nests too deeply: {exc}") from exc
        raise PayloadError("not_json", f"value is not JSON: {exc}") from exc
