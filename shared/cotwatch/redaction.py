"""Redact obvious personal data and secrets from text before it is persisted or published."""

from __future__ import annotations

import re

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[AWS_KEY]"),
    (re.compile(r"\b(?:sk|pk|ghp|gho|xox[bpas])[-_][A-Za-z0-9_-]{16,}\b"), "[TOKEN]"),
    (re.compile(r"\b(?:\d[ -]?){13,16}\b"), "[NUMBER]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "[IP]"),
    (re.compile(r"\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3,4}\b"), "[PHONE]"),
)


def redact(text: str) -> str:
    """Replace e-mail addresses, credentials, card-like numbers, IPs and phone numbers with tags."""
    for pattern, tag in _PATTERNS:
        text = pattern.sub(tag, text)
    return text


def excerpt(text: str, start: int, end: int, max_chars: int = 320) -> str:
    """A redacted, single-line excerpt of ``text[start:end]``, shortened in the middle if too long."""
    snippet = " ".join(text[max(start, 0) : end].split())
    if len(snippet) > max_chars:
        half = (max_chars - 3) // 2
        snippet = f"{snippet[:half]} … {snippet[-half:]}"
    return redact(snippet)
