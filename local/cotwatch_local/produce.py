"""What ``cotwatch produce`` reads: a JSONL file, once or followed as it grows, and OTLP trace exports.

The functions here do no Kafka I/O: they yield chunks or records and take a ``send`` callable, so the
command's behaviour (partial lines, truncation, idle exit, bad lines) is tested without a broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from cotwatch.otlp import ENCODING_HEADER, OTLP_JSON, OTLP_PROTO, OtlpDecodeError, decode_otlp
from cotwatch.trace import TraceChunk, TraceDocument

# What the Collector's Kafka exporter would send next to each encoding (see cotwatch.otlp.encoding_from_headers).
OTLP_CONTENT_TYPES = {OTLP_PROTO: b"application/x-protobuf", OTLP_JSON: b"application/x-otlp+json"}


class BadLineError(ValueError):
    """A JSONL line that is neither a whole trace nor a chunk; the message names ``file:line``."""


def parse_line(path: Path, number: int, line: str, chunk_chars: int) -> list[TraceChunk]:
    """A line is a whole trace (``reasoning``/``answer``) or a ready chunk (``text``)."""
    try:
        raw = json.loads(line)
        if isinstance(raw, dict) and "text" in raw:
            return [TraceChunk.model_validate(raw)]
        return TraceDocument.model_validate(raw).to_chunks(chunk_chars)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise BadLineError(f"{path}:{number}: not a trace or chunk: {exc}") from exc


@dataclass
class FollowStats:
    lines: int = 0
    chunks: int = 0
    traces: set[str] = field(default_factory=set)
    bad_lines: list[str] = field(default_factory=list)
    truncations: int = 0


def follow_lines(
    path: Path,
    *,
    stop: threading.Event,
    idle_exit_s: float | None = None,
    poll_s: float = 0.2,
    stats: FollowStats | None = None,
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` for every complete line of ``path``, then for each one appended later.

    A line counts once its newline is written, so a writer caught mid-line is never read half. The file
    shrinking (truncated or replaced by log rotation) restarts reading from its beginning. Ends when
    ``stop`` is set or, with ``idle_exit_s``, when nothing new arrived for that long.
    """
    position, number, pending = 0, 0, b""
    last_data = time.monotonic()
    while not stop.is_set():
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0  # rotated away and not yet recreated: wait for it
        if size < position:
            position, pending, number = 0, b"", 0
            if stats is not None:
                stats.truncations += 1
        if size > position:
            with path.open("rb") as handle:
                handle.seek(position)
                data = handle.read(size - position)
            position += len(data)
            *complete, pending = (pending + data).split(b"\n")
            for raw in complete:
                number += 1
                yield number, raw.decode("utf-8", "replace")
            last_data = time.monotonic()
            continue
        if idle_exit_s is not None and time.monotonic() - last_data >= idle_exit_s:
            return
        stop.wait(poll_s)


def follow_jsonl(
    path: Path,
    send: Callable[[list[TraceChunk]], object],
    *,
    chunk_chars: int,
    stop: threading.Event,
    idle_exit_s: float | None = None,
    poll_s: float = 0.2,
    on_bad_line: Callable[[str], object] = lambda _message: None,
) -> FollowStats:
    """Publish each line's chunks as the line appears. A bad line is reported and skipped: a long-running
    tail should not die on one line, and the caller exits non-zero when there were any."""
    stats = FollowStats()
    for number, line in follow_lines(path, stop=stop, idle_exit_s=idle_exit_s, poll_s=poll_s, stats=stats):
        if not line.strip():
            continue
        try:
            chunks = parse_line(path, number, line, chunk_chars)
        except BadLineError as exc:
            stats.bad_lines.append(str(exc))
            on_bad_line(str(exc))
            continue
        send(chunks)
        stats.lines += 1
        stats.chunks += len(chunks)
        stats.traces.update(c.trace_key for c in chunks)
    return stats


@dataclass(frozen=True)
class OtlpExport:
    """One Kafka record's worth: an ``ExportTraceServiceRequest`` as bytes, with its decoded summary."""

    value: bytes
    encoding: str
    spans: int
    chunks: int
    skipped: int

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(ENCODING_HEADER, self.encoding.encode()), ("content-type", OTLP_CONTENT_TYPES[self.encoding])]


def sniff_encoding(data: bytes) -> str:
    """OTLP/JSON starts with ``{`` (after whitespace); a protobuf export starts with field 1's tag, 0x0a."""
    return OTLP_JSON if data.lstrip()[:1] == b"{" else OTLP_PROTO


def read_otlp_exports(path: Path, encoding: str | None = None) -> list[OtlpExport]:
    """The exports in ``path``: one protobuf message, or OTLP/JSON as one document or one per line (what the
    Collector's file exporter writes). Each is decoded here first, so a file that is not OTLP fails before
    anything is published, with the reason."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc}") from exc
    if not data.strip():
        raise SystemExit(f"{path}: empty file, no OTLP export in it")
    encoding = encoding or sniff_encoding(data)
    if encoding == OTLP_PROTO:
        pieces = [(0, data)]
    else:
        pieces = [(n, line.strip()) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
        try:
            json.loads(data)
            pieces = [(0, data.strip())]  # one (possibly pretty-printed) document
        except json.JSONDecodeError:
            pass  # JSON lines: each line is checked on its own below
    exports: list[OtlpExport] = []
    for number, value in pieces:
        where = f"{path}:{number}" if number else str(path)
        try:
            mapping = decode_otlp(value, encoding)
        except OtlpDecodeError as exc:
            raise SystemExit(f"{where}: not an {encoding} trace export: {exc}") from exc
        if mapping.spans == 0:
            raise SystemExit(f"{where}: an {encoding} trace export with no spans in it")
        exports.append(OtlpExport(value, encoding, mapping.spans, len(mapping.chunks), len(mapping.skipped)))
    return exports
