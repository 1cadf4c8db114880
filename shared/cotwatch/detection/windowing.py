"""Cut chunk text into overlapping, sentence-aligned windows so a short unsafe passage inside a long
benign trace still dominates the window it sits in."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Small enough that one unsafe sentence in a trace with no paragraph breaks still dominates its window;
# 400 did better on paragraph-structured agent traces but diluted that case (docs/detection.md, "Window size").
WINDOW_CHARS = 240

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


@dataclass(frozen=True, slots=True)
class Window:
    """A span of a chunk's text; ``start`` < 0 means the window begins in the previous chunk's tail."""

    start: int
    end: int
    text: str


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (or lines) in ``text``, whitespace excluded."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in _SENTENCE_END.finditer(text):
        if match.start() > pos:
            spans.append((pos, match.start()))
        pos = match.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def cut_windows(
    text: str,
    *,
    target_chars: int = WINDOW_CHARS,
    overlap_sentences: int = 1,
    tail: str = "",
    respect_paragraphs: bool = True,
) -> list[Window]:
    """Group consecutive sentences into windows of about ``target_chars``, overlapping by whole sentences.

    ``tail`` is the end of the previous chunk of the same trace: windowing runs over ``tail + text`` so a
    sentence split by the chunk boundary is seen whole, and offsets stay relative to ``text``.
    With ``respect_paragraphs`` a window never spans a blank line: a reasoning trace changes subject at
    paragraph breaks, and a short unsafe paragraph should not be averaged with its benign neighbours.
    """
    if target_chars <= 0:
        raise ValueError("target_chars must be positive")
    full = tail + text
    spans = _split_long(sentence_spans(full), target_chars)
    para = _paragraph_ids(full, spans) if respect_paragraphs else [0] * len(spans)
    windows: list[Window] = []
    i = 0
    while i < len(spans):
        j = i
        while j + 1 < len(spans) and spans[j + 1][1] - spans[i][0] <= target_chars and para[j + 1] == para[i]:
            j += 1
        start, end = spans[i][0], spans[j][1]
        # A window lying entirely in the tail was already scored with the previous chunk.
        if end > len(tail):
            windows.append(Window(start - len(tail), end - len(tail), full[start:end]))
        if j + 1 >= len(spans):
            break
        i = j + 1 if para[j + 1] != para[j] else max(i + 1, j + 1 - overlap_sentences)
    return windows


def _paragraph_ids(text: str, spans: list[tuple[int, int]]) -> list[int]:
    ids: list[int] = []
    current = 0
    for k, (start, _) in enumerate(spans):
        if k and _PARAGRAPH_BREAK.search(text, spans[k - 1][1], start):
            current += 1
        ids.append(current)
    return ids


def _split_long(spans: list[tuple[int, int]], target_chars: int) -> list[tuple[int, int]]:
    """Break sentences longer than a window into window-sized pieces."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        while end - start > target_chars:
            out.append((start, start + target_chars))
            start += target_chars
        out.append((start, end))
    return out


def tail_of(text: str, max_chars: int = 300) -> str:
    """The end of a chunk, cut at a sentence start when possible, to carry into the next chunk."""
    if len(text) <= max_chars:
        return text
    cut = len(text) - max_chars
    for start, _ in sentence_spans(text):
        if start >= cut:
            return text[start:]
    return text[cut:]
