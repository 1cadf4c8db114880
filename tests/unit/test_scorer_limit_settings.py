"""The scorer's limits are settings: validated, with today's constants as defaults, and wired into the use case."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cotwatch.config import ScorerSettings
from cotwatch.score_traces import Limits
from cotwatch.wiring import scorer_limits

REQUIRED = {
    "ALERTS_TABLE": "alerts",
    "COUNTERS_TABLE": "counters",
    "TRACE_STATE_TABLE": "state",
    "DATA_BUCKET": "bucket",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
    "TENANT_BINDINGS": "traces=*",
}


def _settings(monkeypatch: pytest.MonkeyPatch, **extra: str) -> ScorerSettings:
    for name, value in {**REQUIRED, **extra}.items():
        monkeypatch.setenv(name, value)
    for name in ("MAX_CHUNK_CHARS", "MAX_WINDOWS_PER_CHUNK", "BATCH_TIME_RESERVE_MS", "ALERT_TTL_DAYS"):
        if name not in extra:
            monkeypatch.delenv(name, raising=False)
    return ScorerSettings()


def test_defaults_are_the_use_cases_own_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no limit variables set
    settings = _settings(monkeypatch)
    # Then the wired limits equal the use case's defaults, and alerts are kept a year
    assert scorer_limits(settings) == Limits()
    assert settings.alert_ttl_days == 365


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given limits set in the environment
    settings = _settings(
        monkeypatch, MAX_CHUNK_CHARS="50000", MAX_WINDOWS_PER_CHUNK="300", BATCH_TIME_RESERVE_MS="2500"
    )
    # Then the use case gets them
    assert scorer_limits(settings) == Limits(max_chunk_chars=50_000, max_windows_per_chunk=300, time_reserve_ms=2_500)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_CHUNK_CHARS", "200001"),  # over the chunk schema's own limit: would never be reached
        ("MAX_CHUNK_CHARS", "10"),
        ("MAX_WINDOWS_PER_CHUNK", "0"),
        ("BATCH_TIME_RESERVE_MS", "-1"),
        ("BATCH_TIME_RESERVE_MS", "lots"),
        ("ALERT_TTL_DAYS", "0"),
    ],
)
def test_bad_limits_fail_the_cold_start_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    # When a limit is out of range or not a number
    with pytest.raises(ValidationError) as failure:
        _settings(monkeypatch, **{name: value})
    # Then the error names the variable
    errors: list[Any] = failure.value.errors()
    assert [e["loc"] for e in errors] == [(name,)]
