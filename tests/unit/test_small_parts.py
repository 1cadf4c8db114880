"""Alert ids, redaction, settings validation and the roll-up use case."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cotwatch.alerts import alert_id
from cotwatch.config import RollupSettings, ScorerSettings
from cotwatch.patterns import EmbeddingSummary
from cotwatch.redaction import excerpt, redact
from cotwatch.rollup import RollupCounters, parse_hour, previous_hour


def test_alert_id_is_stable_and_separates_its_parts() -> None:
    assert alert_id("acme", "t-1", "cyber") == alert_id("acme", "t-1", "cyber")
    assert alert_id("acme", "t-1", "cyber") != alert_id("acme", "t-1", "bio_chem")
    assert alert_id("a", "bt", "c") != alert_id("ab", "t", "c")


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("write to jane.doe@example.org now", "[EMAIL]"),
        ("key AKIAABCDEFGHIJKLMNOP leaked", "[AWS_KEY]"),
        ("token sk-abcdefghijklmnop1234", "[TOKEN]"),
        ("card 4111 1111 1111 1111", "[NUMBER]"),
        ("host 10.0.12.7 is down", "[IP]"),
    ],
)
def test_redaction_hides_personal_data_and_secrets(text: str, tag: str) -> None:
    assert tag in redact(text)


def test_excerpt_is_one_redacted_line_shortened_in_the_middle() -> None:
    text = "start " + "word " * 200 + "mail bob@example.com end"
    out = excerpt(text, 0, len(text), max_chars=80)
    assert "\n" not in out and len(out) <= 80 and out.startswith("start") and out.endswith("end")
    assert "bob@" not in excerpt("contact bob@example.com", 0, 23)


def test_settings_fail_at_cold_start_naming_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALERTS_TABLE", "COUNTERS_TABLE", "TRACE_STATE_TABLE", "DATA_BUCKET", "ALERTS_TOPIC_ARN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="ALERTS_TABLE"):
        ScorerSettings()
    monkeypatch.setenv("COUNTERS_TABLE", "cw-counters")
    monkeypatch.setenv("DATA_BUCKET", "cw-data")
    assert RollupSettings().rollup_prefix == "rollups/"


def test_settings_reject_a_topic_that_is_not_an_sns_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "ALERTS_TABLE": "cw-alerts",
        "COUNTERS_TABLE": "cw-counters",
        "TRACE_STATE_TABLE": "cw-state",
        "DATA_BUCKET": "cw-data",
        "ALERTS_TOPIC_ARN": "cw-alerts-topic",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="ALERTS_TOPIC_ARN"):
        ScorerSettings()


def test_previous_hour_and_hour_parsing() -> None:
    assert previous_hour(datetime(2026, 11, 26, 0, 5, tzinfo=UTC)) == "2026-11-25T23"
    assert parse_hour("2026-11-26T15") == "2026-11-26T15"
    with pytest.raises(ValueError, match="does not match"):
        parse_hour("yesterday")


class _Counters:
    def hour(self, hour: str) -> list[dict[str, Any]]:
        return [
            {"hour": hour, "tenant": "b", "model": "m", "metric": "chunks", "category": "-", "count": 3},
            {"hour": hour, "tenant": "a", "model": "m", "metric": "chunks", "category": "-", "count": 5},
        ]

    def embedding_hour(self, hour: str) -> list[EmbeddingSummary]:
        return []


class _Writer:
    def __init__(self) -> None:
        self.written: dict[str, list[dict[str, Any]]] = {}

    def write(self, hour: str, rows: list[dict[str, Any]]) -> str:
        self.written[hour] = rows
        return f"memory://{hour}"

    def write_embeddings(self, hour: str, summaries: list[EmbeddingSummary]) -> str:
        return f"memory://embeddings/{hour}"


def test_rollup_writes_the_hour_sorted() -> None:
    writer = _Writer()
    location, rows = RollupCounters(_Counters(), writer).run("2026-11-26T15")
    assert (location, rows) == ("memory://2026-11-26T15", 2)
    assert [r["tenant"] for r in writer.written["2026-11-26T15"]] == ["a", "b"]
