"""No-raw-text tenants: alerts and their messages hold offsets and digests of the windows, never their text."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from cotwatch.config import ScorerSettings
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.scorer import ExemplarScorer
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.redaction import fingerprint
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk

from .conftest import CYBER_LINE, Adapters, tiny_calibration, tiny_taxonomy

SECRET_SENTENCE = "the admin password is Tr0ub4dor&3x so log in"


def _monitor(hashed: frozenset[str]) -> TraceMonitor:
    embedder = HashingEmbedder()
    return TraceMonitor(
        embedder, ExemplarScorer(tiny_taxonomy(), embedder), tiny_calibration(), window_chars=100, hashed_tenants=hashed
    )


def _batch(tenant: str) -> KafkaBatch:
    text = f"{CYBER_LINE} {SECRET_SENTENCE}. {CYBER_LINE}"
    chunk = TraceChunk(trace_id="t-1", seq=0, model="m", text=text, tenant=tenant)
    record = KafkaRecord(topic="traces", partition=0, offset=1, key=b"t-1", value=chunk.model_dump_json().encode())
    return KafkaBatch(event_source="SelfManagedKafka", records=[record])


def _run(hashed: frozenset[str], tenant: str) -> tuple[Adapters, str]:
    adapters = Adapters()
    use_case = ScoreTraces(
        _monitor(hashed), adapters.alerts, adapters.publisher, adapters.states, adapters.counters, adapters.dead_letters
    )
    use_case.process_batch(_batch(tenant))
    return adapters, f"{CYBER_LINE} {SECRET_SENTENCE}. {CYBER_LINE}"


def test_a_hashed_tenant_gets_digests_and_offsets_only() -> None:
    # Given a monitor for which tenant "default" is a no-raw-text tenant
    # When an unsafe trace of that tenant is scored
    adapters, text = _run(frozenset({"default"}), "default")
    # Then it alerts, and each evidence item is the sha256 of exactly the window its offsets name
    ((alert, _),) = adapters.publisher.published
    assert alert.evidence
    for item in alert.evidence:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", item.excerpt)
        assert item.excerpt == fingerprint(text[item.start : item.end])
    # And no word of the trace is in the stored or published alert
    stored = str(vars(adapters.alerts)) + alert.model_dump_json()
    for word in ("ransomware", "victim", "Tr0ub4dor", "password"):
        assert word not in stored


def test_other_tenants_keep_redacted_excerpts() -> None:
    # Given the same monitor and a tenant that is not listed
    # When its unsafe trace is scored
    adapters, _ = _run(frozenset({"strict-privacy"}), "default")
    # Then excerpts are text (redacted), not digests
    ((alert, _),) = adapters.publisher.published
    assert any("ransomware" in item.excerpt for item in alert.evidence)
    assert all(not item.excerpt.startswith("sha256:") for item in alert.evidence)
    assert all("Tr0ub4dor" not in item.excerpt for item in alert.evidence)


def test_the_setting_lists_tenants_and_rejects_names_that_are_not_tenants(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the scorer's required settings
    for name, value in {
        "ALERTS_TABLE": "alerts",
        "COUNTERS_TABLE": "counters",
        "TRACE_STATE_TABLE": "state",
        "DATA_BUCKET": "bucket",
        "ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
        "TENANT_BINDINGS": "traces=*",
    }.items():
        monkeypatch.setenv(name, value)
    # When NO_RAW_TEXT_TENANTS lists tenants, is empty, or names a path
    monkeypatch.setenv("NO_RAW_TEXT_TENANTS", "acme, beta-2")
    listed = ScorerSettings().no_raw_text_tenants
    monkeypatch.setenv("NO_RAW_TEXT_TENANTS", "")
    empty = ScorerSettings().no_raw_text_tenants
    monkeypatch.setenv("NO_RAW_TEXT_TENANTS", "acme,../etc")
    # Then the names are parsed, empty means none, and a non-tenant fails the cold start with the name
    assert listed == frozenset({"acme", "beta-2"}) and empty == frozenset()
    with pytest.raises(ValidationError, match=r"\.\./etc"):
        ScorerSettings()
