"""The real Lambda handlers (``make_handler``) over in-memory adapters and the hashing embedder: the answer
to Lambda, the metrics they emit, and what happens when one port fails."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_lambda_powertools import Metrics

from cotwatch import observability as obs
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.handlers import rollup_counters, score_traces
from cotwatch.kafka_event import KafkaEventError, KafkaRecord, build_kafka_event, parse_kafka_event
from cotwatch.patterns import EmbeddingSummary
from cotwatch.rollup import RollupCounters
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk
from cotwatch_local.invoker import LocalLambdaContext

from .conftest import CYBER_LINE, Adapters
from .failing_adapters import (
    DownPublisher,
    FailingDeadLetterSink,
    ThrottledCounterStore,
    UnreadableTraceStateStore,
)

REPO = Path(__file__).resolve().parents[2]
BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."


def chunk_record(offset: int, text: str, trace_id: str, partition: int = 0, seq: int = 0) -> KafkaRecord:
    chunk = TraceChunk(trace_id=trace_id, seq=seq, model="m", text=text)
    return KafkaRecord(
        topic="traces",
        partition=partition,
        offset=offset,
        key=trace_id.encode(),
        value=chunk.model_dump_json().encode(),
    )


def bad_record(offset: int, partition: int = 0) -> KafkaRecord:
    return KafkaRecord(topic="traces", partition=partition, offset=offset, key=b"k", value=b"{not json")


def mixed_event() -> dict[str, Any]:
    """Two partitions: an unsafe chunk, benign chunks and one malformed record."""
    return build_kafka_event(
        [
            chunk_record(10, f"{BENIGN} {CYBER_LINE}", "t-unsafe"),
            chunk_record(11, BENIGN, "t-benign-a"),
            bad_record(12),
            chunk_record(7, BENIGN, "t-benign-b", partition=1),
        ]
    )


def use_case_over(monitor: TraceMonitor, adapters: Adapters, **replace: Any) -> ScoreTraces:
    ports = {
        "alerts": adapters.alerts,
        "publisher": adapters.publisher,
        "states": adapters.states,
        "counters": adapters.counters,
        "dead_letters": adapters.dead_letters,
    }
    return ScoreTraces(monitor, **{**ports, **replace})


def emitted_metrics(stdout: str) -> dict[str, float]:
    """Metric name -> value from the EMF documents powertools printed."""
    values: dict[str, float] = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" not in document:
            continue  # a log line
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == obs.NAMESPACE
            assert directive["Dimensions"] == [[obs.SERVICE_DIMENSION]]
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


def run(handler: score_traces.Handler, event: dict[str, Any]) -> dict[str, Any]:
    return handler(event, LocalLambdaContext(function_name="ScoreTracesFunction"))  # type: ignore[arg-type]


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    metrics = Metrics(namespace=obs.NAMESPACE, service=obs.SERVICE)
    # powertools keeps metrics in a set shared by every Metrics instance: handlers run earlier in the
    # session with metrics disabled leave theirs there, unflushed.
    metrics.clear_metrics()
    return metrics


def test_a_clean_batch_answers_with_no_failures_and_emits_every_scorer_metric(
    monitor: TraceMonitor, adapters: Adapters, metrics: Metrics, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the real handler over in-memory adapters
    handler = score_traces.make_handler(use_case_over(monitor, adapters), metrics=metrics)

    # When it handles a batch with an unsafe chunk, benign chunks and a malformed record
    response = run(handler, mixed_event())

    # Then nothing is reported failed, and the metrics describe the batch
    assert response == {"batchItemFailures": []}
    values = emitted_metrics(capsys.readouterr().out)
    windows = sum(a.windows for a in monitor.assess_texts([f"{BENIGN} {CYBER_LINE}", BENIGN, BENIGN]))
    assert values == {
        obs.RECORDS_RECEIVED: 4,
        obs.RECORDS_SCORED: 3,
        obs.RECORDS_DEAD_LETTERED: 1,
        obs.RECORDS_FAILED: 0,
        obs.RECORDS_DEDUPLICATED: 0,
        obs.WINDOWS_SCORED: windows,
        obs.ALERTS_RAISED: 1,
        obs.ALERTS_ESCALATED: 0,
        obs.SPANS_SKIPPED: 0,
    }
    assert windows >= 3


def test_the_sample_msk_event_is_handled_without_failures(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given the sample MSK event (with its malformed record)
    event = json.loads((REPO / "events" / "score_traces_msk.json").read_text(encoding="utf-8"))
    handler = score_traces.make_handler(use_case_over(monitor, adapters))

    # When the handler runs on it
    response = run(handler, event)

    # Then every record is committed: scored or dead-lettered, each one counted once
    assert response == {"batchItemFailures": []}
    records = parse_kafka_event(event).records
    assert adapters.counters.markers == {r.record_id for r in records}
    assert len(adapters.dead_letters.letters) >= 1


def test_a_malformed_envelope_fails_the_whole_invocation(monitor: TraceMonitor, adapters: Adapters) -> None:
    handler = score_traces.make_handler(use_case_over(monitor, adapters))
    with pytest.raises(KafkaEventError):
        run(handler, {"eventSource": "aws:kafka", "records": []})
    assert adapters.counters.markers == set()


# ------------------------------------------------------------------------------ failure injection


def test_publisher_down_fails_only_the_record_whose_alert_it_could_not_send(
    monitor: TraceMonitor, adapters: Adapters
) -> None:
    # Given SNS down for the unsafe trace's alert
    use_case = use_case_over(monitor, adapters, publisher=DownPublisher(down_for_traces={"t-unsafe"}))
    handler = score_traces.make_handler(use_case)

    # When the batch is handled
    response = run(handler, mixed_event())

    # Then only that record is reported, by its Kafka coordinates; the others are committed
    assert response == {"batchItemFailures": [{"itemIdentifier": {"partition": "traces-0", "offset": 10}}]}
    assert adapters.counters.markers == {"traces-0@11", "traces-0@12", "traces-1@7"}
    # And the alert is stored unnotified, so the redelivery publishes it
    [alert] = adapters.alerts.items.values()
    assert alert["notified"] is False


def test_the_redelivery_of_a_failed_chunk_finishes_it_without_replaying_its_trace(
    monitor: TraceMonitor, adapters: Adapters
) -> None:
    # Given chunk 0 of a trace failed (SNS down) while chunk 1 of the same trace went through
    first = chunk_record(20, f"{BENIGN} {CYBER_LINE}", "t-1", seq=0)
    second = chunk_record(21, f"{CYBER_LINE} {BENIGN}", "t-1", seq=1)
    event = build_kafka_event([first, second])
    down = DownPublisher(down_for_traces={"t-1"})
    response = run(score_traces.make_handler(use_case_over(monitor, adapters, publisher=down)), event)
    assert [f["itemIdentifier"]["offset"] for f in response["batchItemFailures"]] == [20, 21]
    # (both failed: they share the trace's alert) - now let chunk 1 succeed alone, as a later batch would
    down.down_for_traces.clear()
    run(score_traces.make_handler(use_case_over(monitor, adapters, publisher=down)), build_kafka_event([second]))
    state_after_second = adapters.states.states["default#t-1"]
    counts_after_second = dict(adapters.counters.counts)

    # When Kafka redelivers from the failed offset: chunk 0 again, then chunk 1 again
    response = run(score_traces.make_handler(use_case_over(monitor, adapters, publisher=down)), event)

    # Then both are committed, chunk 0's counters land once, chunk 1 is not applied a second time
    assert response == {"batchItemFailures": []}
    assert adapters.counters.markers == {"traces-0@20", "traces-0@21"}
    assert adapters.states.states["default#t-1"] == state_after_second
    chunks = sum(n for k, n in adapters.counters.counts.items() if k.metric == "chunks")
    assert chunks == sum(n for k, n in counts_after_second.items() if k.metric == "chunks") + 1
    [alert] = adapters.alerts.items.values()
    assert alert["notified"] is True


def test_counters_table_throttled_fails_only_that_record(monitor: TraceMonitor, adapters: Adapters) -> None:
    counters = ThrottledCounterStore(throttled_markers={"traces-1@7"})
    handler = score_traces.make_handler(use_case_over(monitor, adapters, counters=counters))

    response = run(handler, mixed_event())

    assert response == {"batchItemFailures": [{"itemIdentifier": {"partition": "traces-1", "offset": 7}}]}
    assert counters.markers == {"traces-0@10", "traces-0@11", "traces-0@12"}
    # The throttled chunk's state was not written either: state goes after counters
    assert "default#t-benign-b" not in adapters.states.states


def test_dead_letter_sink_failing_fails_only_the_malformed_record(monitor: TraceMonitor, adapters: Adapters) -> None:
    handler = score_traces.make_handler(use_case_over(monitor, adapters, dead_letters=FailingDeadLetterSink()))

    response = run(handler, mixed_event())

    assert response == {"batchItemFailures": [{"itemIdentifier": {"partition": "traces-0", "offset": 12}}]}
    assert adapters.counters.markers == {"traces-0@10", "traces-0@11", "traces-1@7"}


def test_a_failing_trace_state_read_fails_the_whole_batch(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given trace state that cannot be read: no chunk can be assessed against its history
    handler = score_traces.make_handler(use_case_over(monitor, adapters, states=UnreadableTraceStateStore()))

    # When the batch is handled, Then the invocation fails (Lambda retries the batch) and nothing is written
    with pytest.raises(Exception, match="ProvisionedThroughputExceededException"):
        run(handler, mixed_event())
    assert adapters.counters.markers == set()
    assert adapters.alerts.items == {}
    assert adapters.dead_letters.letters == {}


# ------------------------------------------------------------------------- metrics the template reads


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as their plain values."""


def _untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _untagged)


def metrics_the_template_reads() -> set[str]:
    """Names of the custom (namespace cotwatch) metrics that template.yaml's alarms and dashboard select."""
    template = yaml.load((REPO / "template.yaml").read_text(encoding="utf-8"), Loader=_CloudFormationLoader)
    names: set[str] = set()
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm" and properties.get("Namespace") == obs.NAMESPACE:
            names.add(properties["MetricName"])
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            body = json.loads(re.sub(r"\$\{[^}]+\}", "x", properties["DashboardBody"]))
            for widget in body["widgets"]:
                for line in widget["properties"].get("metrics", []):
                    if line[0] == obs.NAMESPACE:
                        names.add(line[1])
    return names


def test_every_metric_the_dashboard_and_alarms_read_is_emitted_by_a_handler(
    monitor: TraceMonitor, adapters: Adapters, metrics: Metrics, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the metrics the template alarms on and draws
    wanted = metrics_the_template_reads()
    assert {obs.WINDOWS_SCORED, obs.RECORDS_DEAD_LETTERED, obs.ALERTS_RAISED, obs.ROLLUP_ROWS_WRITTEN} <= wanted

    # When both handlers run once
    run(score_traces.make_handler(use_case_over(monitor, adapters), metrics=metrics), mixed_event())
    writer = MemoryRollupWriter()
    rollup = RollupCounters(counters=HourOfCounters(), writer=writer)
    rollup_handler = rollup_counters.make_handler(rollup, metrics=metrics)
    rollup_handler({"hour": "2026-11-26T15"}, LocalLambdaContext(function_name="RollupFunction"))  # type: ignore[arg-type]

    # Then each of them was emitted
    emitted = set(emitted_metrics(capsys.readouterr().out))
    assert wanted - emitted == set()
    assert [row["count"] for row in writer.written["2026-11-26T15"]] == [3]


class HourOfCounters:
    def hour(self, hour: str) -> list[dict[str, Any]]:
        return [{"hour": hour, "tenant": "acme", "model": "m", "metric": "chunks", "category": "-", "count": 3}]

    def embedding_hour(self, hour: str) -> list[EmbeddingSummary]:
        return []


class MemoryRollupWriter:
    def __init__(self) -> None:
        self.written: dict[str, list[dict[str, Any]]] = {}

    def write(self, hour: str, rows: list[dict[str, Any]]) -> str:
        self.written[hour] = rows
        return f"memory://rollups/{hour}"

    def write_embeddings(self, hour: str, summaries: list[EmbeddingSummary]) -> str:
        return f"memory://embeddings/{hour}"
