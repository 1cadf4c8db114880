"""Untrusted record values to JSON: every failure has a named reason and nothing raises past the decoder."""

from __future__ import annotations

import pytest

from cotwatch.decoding import PayloadError, load_json


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "too_deep"),
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"text": "unterminated', "not_json"),
        (b"x" * 2_000_000, "too_large"),
    ],
)
def test_poison_values_raise_a_named_reason(data: bytes, reason: str) -> None:
    # Given a poison value; When it is decoded; Then a PayloadError names why (never RecursionError)
    with pytest.raises(PayloadError) as caught:
        load_json(data)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_valid_json_decodes_and_size_limit_is_configurable() -> None:
    # Given a small object; When decoded with the default and a tiny limit; Then it parses, then is too large
    assert load_json(b'{"trace_id": "t", "seq": 2}') == {"trace_id": "t", "seq": 2}
    with pytest.raises(PayloadError, match="too_large"):
        load_json(b'{"trace_id": "t"}', max_bytes=4)
