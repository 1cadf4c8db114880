"""Redaction over a corpus of fake secrets and personal data: every value is gone, benign text is untouched."""

from __future__ import annotations

import pytest
from tests.unit.redaction_corpus import BENIGN, PERSONAL, SECRETS

from cotwatch.redaction import excerpt, find_sensitive, fingerprint, redact

SENSITIVE = SECRETS + PERSONAL


def _fragments(value: str) -> list[str]:
    # A multi-line value (a PEM block) leaks if any of its body lines survives.
    lines = [line for line in value.splitlines() if line and not line.startswith("-----")]
    return [value, *lines]


@pytest.mark.parametrize(("name", "value", "sentence"), SENSITIVE, ids=[s[0] for s in SENSITIVE])
def test_every_sensitive_value_is_redacted(name: str, value: str, sentence: str) -> None:
    # Given a sentence carrying a secret or personal datum
    # When it is redacted
    out = redact(sentence)
    # Then no part of the value survives and a tag marks where it was
    for fragment in _fragments(value):
        assert fragment not in out, (name, out)
    assert "[" in out and "]" in out


@pytest.mark.parametrize("sentence", BENIGN)
def test_benign_text_is_left_alone(sentence: str) -> None:
    # Given reasoning text with numbers, versions and long words but nothing sensitive
    # When it is redacted
    # Then it comes back unchanged
    assert redact(sentence) == sentence
    assert find_sensitive(sentence) == []


def test_tags_name_the_kind_of_value() -> None:
    # Given one value of each family
    text = "key AKIAQX4J7T2M9RZ5WB3K, mail jane.doe@example.org, card 4111 1111 1111 1111, call +44 20 7946 0958"
    # When redacted
    out = redact(text)
    # Then each is replaced by its own tag and the prose around them stays
    assert out == "key [AWS_KEY], mail [EMAIL], card [NUMBER], call [PHONE]"


def test_a_luhn_invalid_number_is_not_a_card() -> None:
    # Given a 16-digit number that fails the Luhn check (an order id, not a card)
    # When redacted
    # Then it is kept: card detection validates, it does not guess from length
    assert redact("order 1234 5678 9012 3456") == "order 1234 5678 9012 3456"


def test_excerpt_redacts_before_shortening() -> None:
    # Given a long window with a private key in its middle
    body = (
        "x " * 200
        + "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA\n-----END PRIVATE KEY-----"
        + " y" * 200
    )
    # When an excerpt is cut from it
    out = excerpt(body, 0, len(body), max_chars=80)
    # Then the key body never appears, whether or not the ellipsis fell on it
    assert "MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA" not in excerpt(body, 0, len(body), max_chars=10_000)
    assert len(out) <= 80 and "\n" not in out


def test_fingerprint_is_stable_and_reveals_nothing() -> None:
    # Given the same text twice and a different text
    # When fingerprinted
    a, b, c = fingerprint("my password is hunter2"), fingerprint("my password is hunter2"), fingerprint("other")
    # Then equal texts give equal digests, different ones differ, and the text is not in the digest
    assert a == b != c
    assert a.startswith("sha256:") and "hunter2" not in a and len(a) == len("sha256:") + 64
