"""EMBEDDING_BACKEND / EMBEDDING_ONNX_PATH: validated once with the other scorer settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cotwatch.config import ScorerSettings

REQUIRED = {
    "ALERTS_TABLE": "alerts",
    "COUNTERS_TABLE": "counters",
    "TRACE_STATE_TABLE": "state",
    "DATA_BUCKET": "bucket",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
    "TENANT_BINDINGS": "traces=*",
}


@pytest.fixture(autouse=True)
def scorer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("EMBEDDING_BACKEND", raising=False)
    monkeypatch.delenv("EMBEDDING_ONNX_PATH", raising=False)


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_each_backend_is_accepted(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("EMBEDDING_BACKEND", backend)
    assert ScorerSettings().embedding_backend == backend


def test_an_unknown_backend_fails_at_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a typo in the deployed configuration
    monkeypatch.setenv("EMBEDDING_BACKEND", "onnx_int8")
    # When the settings are read, then the error names the variable
    with pytest.raises(ValidationError, match="EMBEDDING_BACKEND"):
        ScorerSettings()


def test_an_empty_onnx_path_means_the_default_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the template's empty value, then no folder "" is configured; a set one is kept as given
    monkeypatch.setenv("EMBEDDING_ONNX_PATH", "")
    assert ScorerSettings().embedding_onnx_path is None
    monkeypatch.setenv("EMBEDDING_ONNX_PATH", "/opt/cotwatch/onnx/m/int8")
    assert ScorerSettings().embedding_onnx_path == "/opt/cotwatch/onnx/m/int8"
    assert ScorerSettings().embedding_backend == "torch"
