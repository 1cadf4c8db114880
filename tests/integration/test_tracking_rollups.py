"""Tracking on the real moto server: the scorer's counters in DynamoDB, rolled up to Parquet on S3 and
compacted per day (idempotently), answer the documented Athena queries, run locally with DuckDB, exactly
as the counters and the alerts table do."""

from __future__ import annotations

import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from cotwatch.adapters.aws import DynamoAlertStore, DynamoCounterStore, DynamoTraceStateStore, S3DeadLetterSink
from cotwatch.adapters.memory import MemoryPublisher
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.scorer import ExemplarScorer
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.rollup import RollupCounters, S3RollupWriter
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk
from cotwatch.tracking import triage_increments
from cotwatch_local.browser import drawn_points, dump_dom, screenshot
from cotwatch_local.cloudformation import LocalNames
from cotwatch_local.report import inputs_from_stack, render
from cotwatch_local.tracking import connect, query_names, run_query
from unit.conftest import BIO_LINE, CYBER_LINE, tiny_calibration, tiny_taxonomy

pytestmark = pytest.mark.integration

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."
WEAK = f"{BENIGN} Maybe ransomware that encrypts files is relevant here."
STRONG = f"{CYBER_LINE}\n{CYBER_LINE}\n{CYBER_LINE}"
# Two weeks (Mondays), hours no other test writes; a week with a day boundary inside it.
WEEK_1 = datetime(2025, 6, 30, 10, tzinfo=UTC)
WEEK_2 = datetime(2025, 7, 7, 22, tzinfo=UTC)


def _workload(tenant: str, weeks: int) -> list[TraceChunk]:
    def chunk(text: str, trace: str, seq: int, model: str, at: datetime, who: str = tenant) -> TraceChunk:
        at += timedelta(weeks=weeks)
        return TraceChunk(trace_id=trace, seq=seq, model=model, tenant=who, text=text, created_at=at)

    hour = timedelta(hours=1)
    return [
        chunk(BENIGN, "b1", 0, "model-a", WEEK_1),
        chunk(BENIGN, "b1", 1, "model-a", WEEK_1 + hour),
        chunk(STRONG, "c1", 0, "model-a", WEEK_1),
        chunk(BIO_LINE, "x1", 0, "model-b", WEEK_1 + hour),
        chunk(BENIGN, "b2", 0, "model-b", WEEK_1 + hour),
        # tenant "strict" has a low cyber threshold: the weak mention alerts, the next chunk escalates it
        chunk(WEAK, "e1", 0, "model-a", WEEK_2, who="strict"),
        chunk(STRONG, "e1", 1, "model-a", WEEK_2 + 2 * hour, who="strict"),
        chunk(BIO_LINE, "x2", 0, "model-b", WEEK_2 + hour),
        chunk(BENIGN, "b3", 0, "model-b", WEEK_2 + 2 * hour),
    ]


def _records(chunks: list[TraceChunk], topic: str) -> list[KafkaRecord]:
    return [
        KafkaRecord(topic=topic, partition=0, offset=i, key=c.trace_id.encode(), value=c.model_dump_json().encode())
        for i, c in enumerate(chunks)
    ]


@pytest.fixture
def scored(local_aws_names: LocalNames, local_aws_env: dict[str, str]) -> dict[str, Any]:
    """The workload scored through the use case on the moto tables, plus two triage verdicts."""
    embedder = HashingEmbedder()
    monitor = TraceMonitor(embedder, ExemplarScorer(tiny_taxonomy(), embedder), tiny_calibration(), window_chars=100)
    counters = DynamoCounterStore(local_aws_names.name("CountersTable"))
    alerts = DynamoAlertStore(local_aws_names.name("AlertsTable"))
    use_case = ScoreTraces(
        monitor,
        alerts,
        MemoryPublisher(),
        DynamoTraceStateStore(local_aws_names.name("TraceStateTable")),
        counters,
        S3DeadLetterSink(local_aws_names.name("DataBucket")),
    )
    run = uuid.uuid4().hex[:8]
    # Each run in weeks of its own: the counters table outlives a test (and a reused moto server, a session).
    weeks = int(run, 16) % 2000
    chunks = [c.model_copy(update={"trace_id": f"{c.trace_id}-{run}"}) for c in _workload("acme", weeks)]
    records = _records(chunks, topic=f"traces-{run}")  # record ids are the counters' markers: unique per run
    for i in range(0, len(records), 3):  # three batches, so state carries across invocations
        use_case.process_batch(KafkaBatch(event_source="SelfManagedKafka", records=records[i : i + 3]))
    ours = [a for a in _scan(local_aws_names.name("AlertsTable")) if str(a.get("trace_id", "")).endswith(run)]
    # Triage: the first cyber alert confirmed, the first bio alert judged a false positive (the verdict hour).
    for category, verdict in (("cyber", "true_positive"), ("bio_chem", "false_positive")):
        alert = next(a for a in ours if a["category"] == category)
        counters.apply_once(f"triage#{alert['alert_id']}", triage_increments(alert, verdict, at=chunks[-1].created_at))
    hours = sorted({c.created_at.strftime("%Y-%m-%dT%H") for c in chunks})
    return {
        "counters": counters,
        "alerts": ours,
        "hours": hours,
        "prefix": f"rollups-{run}/",
        "run": run,
        "chunks": chunks,
    }


def _scan(table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = boto3.resource("dynamodb").Table(table).scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _cells(counters: DynamoCounterStore, hours: list[str]) -> list[dict[str, Any]]:
    return [row for hour in hours for row in counters.hour(hour)]


def _roll_up(local_aws_names: LocalNames, scored: dict[str, Any]) -> tuple[S3RollupWriter, RollupCounters]:
    writer = S3RollupWriter(local_aws_names.name("DataBucket"), prefix=scored["prefix"])
    rollup = RollupCounters(scored["counters"], writer)
    for hour in scored["hours"]:
        rollup.run(hour)
    for day in sorted({h[:10] for h in scored["hours"]}):
        rollup.compact(day)
    return writer, rollup


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_rollup_and_compaction_are_idempotent(local_aws_names: LocalNames, scored: dict[str, Any]) -> None:
    # Given the hours rolled up and the days compacted once
    bucket = local_aws_names.name("DataBucket")
    _roll_up(local_aws_names, scored)
    first = _objects(bucket, scored["prefix"])
    # When everything runs again
    _roll_up(local_aws_names, scored)
    # Then the same objects hold the same bytes: per hour a JSON Lines and a Parquet object, one per day
    assert _objects(bucket, scored["prefix"]) == first
    days = {h[:10] for h in scored["hours"]}
    assert sum(k.endswith(".parquet") and "/hourly/" in k for k in first) == len(scored["hours"])
    assert {k.split("dt=")[1][:10] for k in first if "/daily/" in k} == days
    # And the daily tables hold exactly the hourly rows
    con = connect(boto3.client("s3"), bucket, scored["prefix"])
    total = "SELECT metric, SUM(amount) FROM {} GROUP BY metric ORDER BY metric"
    assert run_query(con, total.format("counters_daily")) == run_query(con, total.format("counters_hourly"))


def _expected(cells: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The documented queries' answers computed in Python from the DynamoDB counter cells."""
    sums: Counter[tuple[str, str, str, str]] = Counter()
    for c in cells:
        day = date.fromisoformat(c["hour"][:10])
        week = (day - timedelta(days=day.weekday())).isoformat()
        sums[(c["model"], week, c["metric"], c["category"])] += c["count"]
    flag_rate = [
        {"model": m, "week": w, "category": cat, "flagged_traces": n, "traces": sums[(m, w, "traces", "-")]}
        for (m, w, metric, cat), n in sorted(sums.items())
        if metric == "flagged_traces"
    ]
    by: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    for (m, _, metric, cat), n in sums.items():
        if metric.startswith("alerts_severity_"):
            by["severity"][(m, cat, metric.removeprefix("alerts_severity_"))] += n
        elif metric in ("alerts_complied", "alerts_refused", "alerts_unclear"):
            by["disposition"][(m, cat, metric.removeprefix("alerts_"))] += n
        elif metric.startswith("triage_"):
            by["triage"][(cat, metric.removeprefix("triage_"))] += n
    return {
        "flag_rate": flag_rate,
        "severity": [{"k": k, "n": n} for k, n in sorted(by["severity"].items()) if n],
        "disposition": [{"k": k, "n": n} for k, n in sorted(by["disposition"].items()) if n],
        "triage": [{"k": k, "n": n} for k, n in sorted(by["triage"].items()) if n],
    }


def test_duckdb_queries_agree_with_the_counters_and_the_alerts(
    local_aws_names: LocalNames, scored: dict[str, Any]
) -> None:
    # Given the roll-ups on S3 and DuckDB over them under the Glue table names
    _roll_up(local_aws_names, scored)
    con = connect(boto3.client("s3"), local_aws_names.name("DataBucket"), scored["prefix"])
    expected = _expected(_cells(scored["counters"], scored["hours"]))
    assert all(expected.values())  # nothing below compares empty answers
    assert set(query_names()) == {
        "flag_rate_per_model_per_week",
        "severity_mix",
        "disposition_mix",
        "precision_by_category",
    }
    # When each documented query runs; Then it answers what the DynamoDB counters say
    flag_rate = run_query(con, "flag_rate_per_model_per_week")
    assert [
        {k: (r[k].date().isoformat() if k == "week" else r[k]) for k in r if k != "flag_rate"} for r in flag_rate
    ] == expected["flag_rate"]
    assert all(r["flag_rate"] == pytest.approx(r["flagged_traces"] / r["traces"]) for r in flag_rate)
    severity = run_query(con, "severity_mix")
    assert [{"k": (r["model"], r["category"], str(r["severity"])), "n": r["alerts"]} for r in severity] == (
        expected["severity"]
    )
    disposition = run_query(con, "disposition_mix")
    assert [{"k": (r["model"], r["category"], r["disposition"]), "n": r["alerts"]} for r in disposition] == (
        expected["disposition"]
    )
    precision = run_query(con, "precision_by_category")
    assert [(r["category"], r["true_positives"], r["false_positives"]) for r in precision] == [
        ("bio_chem", 0, 1),
        ("cyber", 1, 0),
    ]
    assert [r["triage_precision"] for r in precision] == [0.0, 1.0]
    # And the alerts table agrees: every alert is in the severity mix once, at its stored severity
    stored = Counter((str(a["model"]), str(a["category"]), str(a["severity"])) for a in scored["alerts"])
    counted = {row["k"]: row["n"] for row in expected["severity"]}
    assert counted == dict(stored)
    assert sum(stored.values()) == 4  # c1 cyber, x1 bio, e1 cyber (escalated), x2 bio
    # And by the disposition stored with each alert
    held = Counter((str(a["model"]), str(a["category"]), str(a["disposition"])) for a in scored["alerts"])
    by_disposition = {row["k"]: row["n"] for row in expected["disposition"]}
    assert by_disposition == dict(held)


def test_report_matches_dynamodb_and_every_chart_draws_its_points(
    local_aws_names: LocalNames, scored: dict[str, Any], tmp_path: Path
) -> None:
    # Given the roll-ups of the workload, and the report over its two weeks
    _roll_up(local_aws_names, scored)
    rows, alerts = inputs_from_stack(
        local_aws_names.name("DataBucket"), local_aws_names.name("AlertsTable"), prefix=scored["prefix"]
    )
    ours = [a for a in alerts if str(a.get("trace_id", "")).endswith(scored["run"])]
    now = max(c.created_at for c in scored["chunks"])
    page = tmp_path / "report.html"
    page.write_text(render(rows, ours, since=timedelta(weeks=2), now=now), encoding="utf-8")
    # Then the per-model summary says what DynamoDB says: traces from the counters, severity-4 alerts from the
    # alerts table, triage precision from the verdicts given
    cells = _cells(scored["counters"], scored["hours"])
    summary = re.search(r'<table class="summary">(.*?)</table>', page.read_text(encoding="utf-8"), re.S)
    assert summary is not None
    table = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", summary.group(1))[1:]]
    for model, traces, _chunks, tokens, _rate, sev4, triage_precision in table:
        assert int(traces) == sum(c["count"] for c in cells if c["model"] == model and c["metric"] == "traces")
        assert int(tokens) == sum(c["count"] for c in cells if c["model"] == model and c["metric"] == "tokens")
        assert int(sev4) == sum(1 for a in scored["alerts"] if a["model"] == model and int(a["severity"]) == 4)
        assert triage_precision == {"model-a": "100.0%", "model-b": "0.0%"}[model]
    assert sorted(row[0] for row in table) == ["model-a", "model-b"]
    # And in headless Chromium every chart drew exactly the points it was given (offline: plotly is inlined)
    drawn = drawn_points(dump_dom(page))
    assert set(drawn) == {"flag-rate", "severity", "disposition", "score-drift", "near-threshold", "triage-precision"}
    assert {name: given for name, (given, _) in drawn.items()} == {name: got for name, (_, got) in drawn.items()}
    assert all(given > 0 for name, (given, _) in drawn.items() if name != "near-threshold")
    # And a screenshot can be taken of it (docs/report.png is made the same way from the demo)
    shot = screenshot(page, tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
