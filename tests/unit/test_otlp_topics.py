"""OTLP selected by topic (the ``OTLP_TOPICS`` setting) as well as by header, and its validation."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools import Metrics
from pydantic import ValidationError
from tests.unit.conftest import Adapters
from tests.unit.test_handlers import emitted_metrics, run
from tests.unit.test_score_traces_otlp import batch, otlp_export

from cotwatch import observability as obs
from cotwatch.config import ScorerSettings, parse_otlp_topics
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.handlers import score_traces
from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch.otlp import OTLP_JSON, OTLP_PROTO, select_encoding
from cotwatch.score_traces import Outcome, ScoreTraces
from cotwatch.trace import TraceChunk


def otlp_topic_scorer(monitor: TraceMonitor, adapters: Adapters) -> ScoreTraces:
    return ScoreTraces(
        monitor,
        adapters.alerts,
        adapters.publisher,
        adapters.states,
        adapters.counters,
        adapters.dead_letters,
        otlp_topics={"otlp_spans": OTLP_PROTO},
    )


SETTINGS_ENV = {
    "ALERTS_TABLE": "alerts",
    "COUNTERS_TABLE": "counters",
    "TRACE_STATE_TABLE": "state",
    "DATA_BUCKET": "bucket",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
    "TENANT_BINDINGS": "traces=*",
}


def test_otlp_topics_are_read_once_with_their_encodings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the setting with a bare topic and one with an encoding
    for name, value in {**SETTINGS_ENV, "OTLP_TOPICS": " otlp_spans , otel.json=otlp_json,"}.items():
        monkeypatch.setenv(name, value)
    # When the settings are read
    settings = ScorerSettings()
    # Then the bare one takes the Collector's default encoding
    assert settings.otlp_topics == {"otlp_spans": OTLP_PROTO, "otel.json": OTLP_JSON}


def test_no_otlp_topics_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**SETTINGS_ENV, "OTLP_TOPICS": ""}.items():
        monkeypatch.setenv(name, value)
    assert ScorerSettings().otlp_topics == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("otlp spans", "not a Kafka topic name"),
        ("otlp_spans=protobuf", "encoding 'protobuf' is not one of otlp_proto, otlp_json"),
        ("a=otlp_json,a=otlp_proto", "listed with two encodings"),
        ("x" * 250, "not a Kafka topic name"),
    ],
)
def test_a_bad_otlp_topics_setting_fails_at_cold_start_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    for name, setting in {**SETTINGS_ENV, "OTLP_TOPICS": value}.items():
        monkeypatch.setenv(name, setting)
    with pytest.raises(ValidationError, match=message):
        ScorerSettings()


def test_headers_win_over_the_topic_and_json_chunks_stay_chunks() -> None:
    topics = parse_otlp_topics("otlp_spans,otel-json=otlp_json")
    assert select_encoding([], "otlp_spans", topics) == OTLP_PROTO
    assert select_encoding([], "otel-json", topics) == OTLP_JSON
    assert select_encoding([("cotwatch-encoding", b"otlp_json")], "otlp_spans", topics) == OTLP_JSON
    assert select_encoding([("Content-Type", b"application/json; charset=utf-8")], "otlp_spans", topics) is None
    assert select_encoding([], "cotwatch-traces", topics) is None
    assert select_encoding([], "otlp_spans", None) is None


def test_a_headerless_export_on_an_otlp_topic_is_scored_as_otlp(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given a scorer told that otlp_spans carries OTLP protobuf, and a record there with no headers
    scorer = otlp_topic_scorer(monitor, adapters)
    record = KafkaRecord(topic="otlp_spans", partition=0, offset=3, value=otlp_export())
    # When the batch is processed
    report = scorer.process_batch(batch(record))
    # Then it was decoded as OTLP: the unsafe span alerted, the two others skipped, nothing dead-lettered
    assert [r.outcome for r in report.records] == [Outcome.SCORED, Outcome.SKIPPED]
    assert report.spans_skipped == 2 and len(adapters.alerts.items) == 1
    assert adapters.dead_letters.letters == {}


def test_the_same_record_on_an_ordinary_topic_is_a_bad_chunk(adapters: Adapters, use_case: ScoreTraces) -> None:
    record = KafkaRecord(topic="cotwatch-traces", partition=0, offset=4, value=otlp_export())
    report = use_case.process_batch(batch(record))
    assert [r.outcome for r in report.records] == [Outcome.DEAD_LETTERED]


def test_a_cotwatch_chunk_on_an_otlp_topic_stays_a_chunk(monitor: TraceMonitor, adapters: Adapters) -> None:
    chunk = TraceChunk(trace_id="t1", model="m", text="Add the numbers.", final=True)
    record = KafkaRecord(
        topic="otlp_spans",
        partition=0,
        offset=5,
        key=b"t1",
        value=json.dumps(chunk.model_dump(mode="json")).encode(),
        headers=[("content-type", b"application/json")],
    )
    scorer = otlp_topic_scorer(monitor, adapters)
    assert [r.outcome for r in scorer.process_batch(batch(record)).records] == [Outcome.SCORED]


def test_the_handler_emits_the_skipped_spans_of_the_batch(
    monitor: TraceMonitor, adapters: Adapters, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the real handler over an OTLP topic, and a headerless export with one unsafe and two other spans
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    metrics = Metrics(namespace=obs.NAMESPACE, service=obs.SERVICE)
    handler = score_traces.make_handler(otlp_topic_scorer(monitor, adapters), metrics=metrics)
    event = build_kafka_event([KafkaRecord(topic="otlp_spans", partition=0, offset=9, value=otlp_export())])
    # When it handles the batch
    response = run(handler, event)
    # Then nothing failed and SpansSkipped counts the two textless or non-GenAI spans
    assert response == {"batchItemFailures": []}
    values = emitted_metrics(capsys.readouterr().out)
    assert values[obs.SPANS_SKIPPED] == 2 and values[obs.ALERTS_RAISED] == 1
    assert values[obs.RECORDS_RECEIVED] == 1 and values[obs.RECORDS_DEAD_LETTERED] == 0
