"""Redact credentials and personal data from text before it is persisted, published or logged.

Credentials are found by detect-secrets' plugins (the detectors behind Yelp's pre-commit scanner: AWS,
GitHub, GitLab, Slack, Stripe, Twilio, OpenAI, JWTs, private keys, basic-auth URLs, keyword assignments such
as ``password: ...``, high-entropy strings). Personal data: phone numbers through phonenumbers (Google's
libphonenumber), card numbers, IBANs and US social security numbers validated with python-stdnum (Luhn,
ISO 13616 checksums), e-mail addresses and IP addresses by pattern (IPs validated with ``ipaddress``).

Presidio is not used: its analyzer depends on spaCy (126 MB installed, too big for the layer) and downloads
a spaCy model at start-up, which a Lambda without internet cannot do (docs/security.md).

Only the plugins' matching code runs: detect-secrets' settings, baselines and network verification are
never touched, so redaction is pure, offline and deterministic.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import phonenumbers
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import KeywordDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from stdnum import iban, luhn
from stdnum.us import ssn

# A span to replace: (start, end, tag).
_Span = tuple[int, int, str]

# Vendor plugins: each yields the secret values it finds in a string.
_VENDOR_PLUGINS: tuple[tuple[BasePlugin, str], ...] = (
    (AWSKeyDetector(), "[AWS_KEY]"),
    (JwtTokenDetector(), "[JWT]"),
    (ArtifactoryDetector(), "[TOKEN]"),
    (AzureStorageKeyDetector(), "[TOKEN]"),
    (BasicAuthDetector(), "[PASSWORD]"),
    (DiscordBotTokenDetector(), "[TOKEN]"),
    (GitHubTokenDetector(), "[TOKEN]"),
    (GitLabTokenDetector(), "[TOKEN]"),
    (MailchimpDetector(), "[TOKEN]"),
    (NpmDetector(), "[TOKEN]"),
    (OpenAIDetector(), "[TOKEN]"),
    (PypiTokenDetector(), "[TOKEN]"),
    (SendGridDetector(), "[TOKEN]"),
    (SlackDetector(), "[TOKEN]"),
    (SquareOAuthDetector(), "[TOKEN]"),
    (StripeDetector(), "[TOKEN]"),
    (TelegramBotTokenDetector(), "[TOKEN]"),
    (TwilioKeyDetector(), "[TOKEN]"),
)
_KEYWORD = KeywordDetector()
_BASE64_ENTROPY = Base64HighEntropyString()
_HEX_ENTROPY = HexHighEntropyString()

# PrivateKeyDetector flags only the BEGIN line; the whole armoured block (or what is left of it) must go.
_PEM_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_PUTTY_KEY = re.compile(r"PuTTY-User-Key-File-\d:.*?(?:Private-MAC: *\S+|\Z)", re.DOTALL)
# Keyword assignments in prose and config styles (``password: x``, ``api_key=x``, ``"secret": "x"``).
_KEYWORD_ASSIGNMENT = re.compile(
    r"(?i)\b(?:pass(?:word|wd|phrase)?|pwd|secret(?:[_-]?key)?|api[_-]?key|access[_-]?key|auth[_-]?token|"
    r"access[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|token|credentials?)"
    r"[\"']?\s*(?:[:=]|=>|\bis\b)\s*[\"']?([^\s\"',;]{4,})"
)
# Vendor-prefixed tokens detect-secrets has no plugin for (sk-..., pk_live_..., xoxe-...).
_PREFIXED_TOKEN = re.compile(r"\b(?:sk|pk|rk|ghp|gho|ghu|ghs|xox[a-z])[-_][A-Za-z0-9_-]{16,}\b")
_BEARER = re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)")
# Candidates the entropy plugins score: long runs of base64/hex characters with letters and digits.
_ENTROPY_CANDIDATE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/=_-])")
# Starts only where a local part can start: without the lookbehind every position of a long run with no "@"
# rescans the run (quadratic: 10 s for a 64 KiB poison value of one repeated letter).
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN_CANDIDATE = re.compile(r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)")
# Phone numbers in national form are read as numbers of these regions; "+" numbers from anywhere.
PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN")


def _occurrences(text: str, value: str, tag: str) -> Iterator[_Span]:
    start = text.find(value)
    while value and start != -1:
        yield (start, start + len(value), tag)
        start = text.find(value, start + len(value))


def _plugin_spans(text: str) -> Iterator[_Span]:
    for plugin, tag in _VENDOR_PLUGINS:
        for value in set(plugin.analyze_string(text)):
            yield from _occurrences(text, value, tag)
    for value in set(_KEYWORD.analyze_string(text)):
        yield from _occurrences(text, value, "[PASSWORD]")


def _regex_spans(pattern: re.Pattern[str], text: str, tag: str, group: int = 0) -> Iterator[_Span]:
    for m in pattern.finditer(text):
        yield (m.start(group), m.end(group), tag)


def _validated_spans(pattern: re.Pattern[str], text: str, tag: str, valid: Callable[[str], bool]) -> Iterator[_Span]:
    for m in pattern.finditer(text):
        if valid(m.group(0)):
            yield (m.start(), m.end(), tag)


def _iban_spans(text: str) -> Iterator[_Span]:
    # The candidate may run on into the next word ("GB82WEST1234... I will"): drop space-separated
    # trailing groups until the checksum holds.
    for m in _IBAN_CANDIDATE.finditer(text):
        candidate = m.group(0)
        while candidate:
            if iban.is_valid(candidate):
                yield (m.start(), m.start() + len(candidate), "[IBAN]")
                break
            candidate = candidate.rpartition(" ")[0]


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _is_ssn(candidate: str) -> bool:
    return bool(ssn.is_valid(re.sub(r"\D", "", candidate)))


def _entropy_spans(text: str) -> Iterator[_Span]:
    # The plugins' own scan wants quoted strings (source code); trace text is prose, so every long token with
    # both letters and digits is scored with the plugins' entropy and limits (4.5 bits base64, 3.0 hex).
    for m in _ENTROPY_CANDIDATE.finditer(text):
        token = m.group(0)
        if not (re.search(r"\d", token) and re.search(r"[A-Za-z]", token)):
            continue
        is_hex = re.fullmatch(r"[0-9a-fA-F]+", token) is not None
        plugin = _HEX_ENTROPY if is_hex else _BASE64_ENTROPY
        if plugin.calculate_shannon_entropy(token) > plugin.entropy_limit:
            yield (m.start(), m.end(), "[SECRET]")


def _phone_spans(text: str) -> Iterator[_Span]:
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            yield (match.start, match.end, "[PHONE]")


def _merge(text: str, spans: Iterable[_Span]) -> str:
    """Replace the spans, earliest first; an overlapping span is folded into the one it overlaps."""
    out: list[str] = []
    pos = 0
    for start, end, tag in sorted(spans, key=lambda s: (s[0], -s[1])):
        if end <= pos:
            continue
        if start < pos:  # overlaps the previous replacement: extend it
            pos = end
            continue
        out.append(text[pos:start])
        out.append(tag)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def find_sensitive(text: str) -> list[_Span]:
    """Every (start, end, tag) span of ``text`` that redaction replaces (spans may overlap)."""
    spans: list[_Span] = []
    spans += _regex_spans(_PEM_BLOCK, text, "[PRIVATE_KEY]")
    spans += _regex_spans(_PUTTY_KEY, text, "[PRIVATE_KEY]")
    spans += _plugin_spans(text)
    spans += _regex_spans(_KEYWORD_ASSIGNMENT, text, "[PASSWORD]", group=1)
    spans += _regex_spans(_BEARER, text, "[TOKEN]", group=1)
    spans += _regex_spans(_PREFIXED_TOKEN, text, "[TOKEN]")
    spans += _regex_spans(_EMAIL, text, "[EMAIL]")
    spans += _iban_spans(text)
    spans += _validated_spans(_CARD_CANDIDATE, text, "[NUMBER]", _is_card)
    spans += _validated_spans(_SSN_CANDIDATE, text, "[SSN]", _is_ssn)
    spans += _validated_spans(_IPV4, text, "[IP]", _is_ip)
    spans += _validated_spans(_IPV6, text, "[IP]", _is_ip)
    spans += _phone_spans(text)
    spans += _entropy_spans(text)
    return spans


def redact(text: str) -> str:
    """``text`` with credentials and personal data replaced by tags such as ``[AWS_KEY]`` or ``[EMAIL]``."""
    return _merge(text, find_sensitive(text))


def fingerprint(text: str) -> str:
    """A stable digest of raw text, for tenants whose alerts and dead letters may hold no text at all."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def excerpt(text: str, start: int, end: int, max_chars: int = 320) -> str:
    """A redacted, single-line excerpt of ``text[start:end]``, shortened in the middle if too long.

    Redaction runs before shortening, so a secret cut in half by the ellipsis is still caught whole.
    """
    snippet = " ".join(redact(text[max(start, 0) : end]).split())
    if len(snippet) > max_chars:
        half = (max_chars - 3) // 2
        snippet = f"{snippet[:half]} … {snippet[-half:]}"
    return snippet


def _redact_tree(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_tree(v) for v in value]
    return value


def redacting_json(log: Mapping[str, Any]) -> str:
    """Powertools' JSON serializer with every string (message, extras, traceback) redacted first."""
    plain = json.loads(json.dumps(log, default=str))
    return json.dumps(_redact_tree(plain), separators=(",", ":"), ensure_ascii=False)


def install_log_redaction(logger: Logger) -> Logger:
    """Make ``logger`` redact every line it writes. Set on the registered formatter, so it also holds when
    the service's logger was configured earlier by another ``Logger(service=...)`` (powertools reuses it);
    ``cotwatch.*`` standard-library loggers propagate to the same handler and are redacted too."""
    formatter = logger.registered_formatter
    if isinstance(formatter, LambdaPowertoolsFormatter):
        formatter.json_serializer = redacting_json
    else:  # a custom formatter: redact the formatted line
        logger.registered_handler.setFormatter(_RedactingFormatter(formatter))
    return logger


class _RedactingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record))


# Dead letters keep at most this much of a record's key, value or header (redacted): a poison record can be
# megabytes, and the reason, coordinates, size and digest identify it without the rest.
DEAD_LETTER_BYTES_LIMIT = 64 * 1024


def redact_b64(value: str | None, limit: int = DEAD_LETTER_BYTES_LIMIT) -> str | None:
    """Base64 bytes with the text in them redacted (and cut to ``limit`` bytes). Bytes that are not UTF-8
    pass through unchanged (surrogateescape), so a record that was invalid UTF-8 stays recognisable."""
    if value is None:
        return None
    raw = base64.b64decode(value)[:limit]
    text = raw.decode("utf-8", "surrogateescape")
    return base64.b64encode(redact(text).encode("utf-8", "surrogateescape")).decode()


def digest_b64(value: str | None) -> str | None:
    """The fingerprint of base64 bytes as they arrived (before redaction)."""
    return None if value is None else "sha256:" + hashlib.sha256(base64.b64decode(value)).hexdigest()


def redact_dead_letter_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A dead letter's fields with its texts redacted, plus the raw value's size and digest. Applied when a
    letter is built from a record; a letter read back (it has ``value_sha256``) is left as it was stored."""
    if "value_sha256" in data:
        return data
    value = data.get("value_b64")
    out = dict(data)
    out["value_sha256"] = digest_b64(value)
    out["value_bytes"] = None if value is None else len(base64.b64decode(value))
    out["value_b64"] = redact_b64(value)
    out["key_b64"] = redact_b64(data.get("key_b64"))
    if isinstance(data.get("detail"), str):
        out["detail"] = redact(data["detail"][:DEAD_LETTER_BYTES_LIMIT])
    out["headers"] = [(name, redact_b64(v) or "") for name, v in data.get("headers", [])]
    return out


def window_excerpt(
    chunk_text: str,
    spans: list[_Span],
    window_text: str,
    start: int,
    end: int,
    max_chars: int = 320,
) -> str:
    """The excerpt of one scoring window, redacted with the spans found in the whole chunk text (``spans`` of
    :func:`find_sensitive`), so a secret the window cuts away from its context (``password: x`` split after
    the colon, a token split in half) is still caught. ``start`` < 0: the window begins in the previous
    chunk's tail (``window_text[:-start]``), which is redacted on its own."""
    head = redact(window_text[: max(0, -start)])
    lo = max(start, 0)
    body = chunk_text[lo:end]
    clipped = [(max(s, lo) - lo, min(e, end) - lo, tag) for s, e, tag in spans if s < end and e > lo]
    snippet = " ".join(f"{head} {_merge(body, clipped + find_sensitive(body))}".split())
    if len(snippet) > max_chars:
        half = (max_chars - 3) // 2
        snippet = f"{snippet[:half]} … {snippet[-half:]}"
    return snippet
