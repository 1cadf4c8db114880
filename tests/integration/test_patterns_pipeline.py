"""Emerging patterns end to end on the moto server: scored traces leave exact embedding summaries (one per
tenant, model and hour, unchanged by redelivery) and redacted suspicious windows, which the roll-up and the rig
turn into drift per model and clusters ranked by growth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from cotwatch.adapters.aws import (
    DynamoAlertStore,
    DynamoCounterStore,
    DynamoTraceStateStore,
    S3DeadLetterSink,
    S3PatternSink,
)
from cotwatch.adapters.memory import MemoryPublisher
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.scorer import ExemplarScorer
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.rollup import RollupCounters, S3RollupWriter
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk
from cotwatch_local.browser import drawn_points, dump_dom
from cotwatch_local.cloudformation import LocalNames
from cotwatch_local.patterns import cluster_windows, drift_by_model, parse_summaries, parse_windows, periods, s3_texts
from cotwatch_local.report import render
from unit.conftest import tiny_calibration, tiny_taxonomy

pytestmark = pytest.mark.integration

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."
# Under a cyber threshold a little above this line's score (tiny_calibration(0.625)), its window is elevated
# (calibrated ~0.47) but passes no category: reasoning that looks like trouble and matches nothing well.
WEAK = "I will write ransomware that waits"


def test_drift_and_clusters_from_scored_traces(
    local_aws_names: LocalNames, local_aws_env: dict[str, str], tmp_path: Path
) -> None:
    # Given the use case on the moto tables and bucket, with its pattern sink, and hours no other test writes
    run = uuid.uuid4().hex[:8]
    base = datetime(2024, 1, 1, 10, tzinfo=UTC) + timedelta(days=int(run, 16) % 3000)
    bucket = local_aws_names.name("DataBucket")
    embedder = HashingEmbedder()
    monitor = TraceMonitor(
        embedder, ExemplarScorer(tiny_taxonomy(), embedder), tiny_calibration(0.625), window_chars=100
    )
    counters = DynamoCounterStore(local_aws_names.name("CountersTable"))
    use_case = ScoreTraces(
        monitor,
        DynamoAlertStore(local_aws_names.name("AlertsTable")),
        MemoryPublisher(),
        DynamoTraceStateStore(local_aws_names.name("TraceStateTable")),
        counters,
        S3DeadLetterSink(bucket),
        patterns=S3PatternSink(bucket, prefix=f"patterns-{run}/"),
    )
    # A baseline hour of benign reasoning, then an hour with weak mentions that pass no threshold
    chunks = [TraceChunk(trace_id=f"b{i}-{run}", model="m", text=BENIGN, created_at=base) for i in range(3)] + [
        TraceChunk(trace_id=f"w{i}-{run}", model="m", text=WEAK, created_at=base + timedelta(hours=1)) for i in range(4)
    ]
    records = [
        KafkaRecord(
            topic=f"t-{run}", partition=0, offset=i, key=c.trace_id.encode(), value=c.model_dump_json().encode()
        )
        for i, c in enumerate(chunks)
    ]
    # When the batch is scored, and delivered again
    first = use_case.process_batch(KafkaBatch(event_source="x", records=records))
    use_case.process_batch(KafkaBatch(event_source="x", records=records))
    windows_scored = sum(r.windows_scored for r in first.records)
    # And both hours are rolled up
    writer = S3RollupWriter(bucket, prefix=f"rollups-{run}/")
    rollup = RollupCounters(counters, writer)
    hours = [base.strftime("%Y-%m-%dT%H"), (base + timedelta(hours=1)).strftime("%Y-%m-%dT%H")]
    for hour in hours:
        rollup.run(hour)
    s3 = boto3.client("s3")
    summaries = [s for s in parse_summaries(s3_texts(s3, bucket, f"rollups-{run}/embeddings/")) if s.model == "m"]
    # Then each hour has one summary holding every scored window exactly once
    assert [s.hour for s in summaries] == hours
    assert sum(s.windows for s in summaries) == windows_scored
    # And the model drifted between the hours (same model, other reasoning)
    current, baseline = periods(timedelta(hours=1), base + timedelta(hours=1))
    (drift,) = drift_by_model(summaries, current, baseline)
    assert drift["windows"] == summaries[1].windows and drift["baseline_windows"] == summaries[0].windows
    assert drift["cosine_distance"] > 0.01 and drift["frechet"] > 0
    # And the weak mentions are suspicious windows no category passed, stored redacted once per record
    windows = parse_windows(s3_texts(s3, bucket, f"patterns-{run}/windows/"))
    assert windows and all(w.hour == hours[1] and 0.35 <= w.suspicion < 0.5 for w in windows)
    assert len({w.trace_id for w in windows}) == 4
    # And they form one new cluster, grown from nothing, with their excerpts as examples
    (cluster,) = cluster_windows(windows, current, baseline)
    assert (cluster.current, cluster.baseline) == (len(windows), 0)
    assert any("ransomware" in e for e in cluster.examples())
    # And the report shows them: in headless Chromium the growth chart drew its bars, the drift table and the
    # cluster's redacted example are in the DOM
    patterns = {
        "drift": [drift],
        "clusters": [c.as_dict() for c in cluster_windows(windows, current, baseline)],
    }
    page = tmp_path / "report.html"
    page.write_text(render([], [], since=timedelta(hours=1), now=base + timedelta(hours=1), patterns=patterns))
    dom = dump_dom(page)
    given, got = drawn_points(dom)["pattern-growth"]
    assert given == 2 and got >= 1  # this window's bar; the baseline's is zero high
    assert 'class="embedding-drift"' in dom and cluster.cluster_id in dom and "ransomware" in dom
