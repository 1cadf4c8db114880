"""The tracking issue's done-when on real parts (a Kafka broker, the moto server, the real model): after a demo
run, the report built from its roll-ups shows the demo's data, and its numbers are DynamoDB's.

The stack is a LocalStack of its own (own name, own traces topic) on the session's broker and moto server, so
everything in its tables and bucket is this one demo run.
"""

from __future__ import annotations

import io
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from cotwatch_local.browser import drawn_points, dump_dom
from cotwatch_local.demo import run_demo
from cotwatch_local.report import inputs_from_snapshot, inputs_from_stack, render
from cotwatch_local.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.model, pytest.mark.timeout(1200)]


@pytest.fixture
def stack(
    tmp_path: Path, kafka_bootstrap: str, moto_endpoint: str, local_aws_env: dict[str, str], session_suffix: str
) -> LocalStack:
    run = uuid.uuid4().hex[:6]
    return LocalStack(
        state_root=tmp_path / "state",
        stack_name=f"rp-{session_suffix}-{run}",
        parameter_overrides={"TracesTopicName": f"cotwatch-traces-rp-{run}"},
        environ={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "AWS_ENDPOINT_URL": moto_endpoint},
    )


def hourly_counters(table: str) -> list[dict[str, Any]]:
    """Every hourly counter cell of the table, paginated (independent of the demo's own read-back)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = boto3.resource("dynamodb").Table(table).scan(**kwargs)
        items += [i for i in page.get("Items", []) if str(i["pk"]).startswith("hour#")]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def summary_table(page: str) -> list[list[str]]:
    found = re.search(r'<table class="summary">(.*?)</table>', page, re.S)
    assert found is not None, "the report has no per-model summary"
    return [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", found.group(1))[1:]]


def test_the_report_after_a_demo_shows_its_data_and_dynamodbs_numbers(stack: LocalStack, tmp_path: Path) -> None:
    info = stack.up()
    # Given a demo run on a stack of its own
    demo = run_demo(stack=stack, out=io.StringIO())
    assert demo.drained and demo.alerts and demo.mismatches == []

    # When the report is built from the running stack's roll-ups, and from the snapshot the demo leaves behind
    live_rows, live_alerts = inputs_from_stack(info.names.name("DataBucket"), info.names.name("AlertsTable"))
    snap_rows, snap_alerts = inputs_from_snapshot(stack.state_root / "tracking")
    alerts = [a for a in live_alerts if str(a.get("trace_id", "")).endswith(demo.run_id)]
    page = tmp_path / "report.html"
    page.write_text(render(live_rows, alerts), encoding="utf-8")

    # Then both sources hold the same counter cells
    def cells(rows: list[dict[str, Any]]) -> Counter[tuple[str, ...]]:
        return Counter({(str(r["model"]), str(r["metric"]), str(r["category"])): int(r["amount"]) for r in rows})

    assert cells(live_rows) == cells(snap_rows) and len(snap_alerts) >= len(alerts)
    # And the per-model summary is what DynamoDB's counters and alerts tables say, model by model
    counters = hourly_counters(info.names.name("CountersTable"))

    def counted(model: str, metric: str) -> int:
        return sum(int(c["count"]) for c in counters if c["model"] == model and c["metric"] == metric)

    table = summary_table(page.read_text(encoding="utf-8"))
    models = {str(a["model"]) for a in demo.alerts}
    assert {row[0] for row in table} == models
    for model, traces, chunks, tokens, _rate, sev4, _precision in table:
        assert (int(traces), int(chunks), int(tokens)) == (
            counted(model, "traces"),
            counted(model, "chunks"),
            counted(model, "tokens"),
        )
        assert int(sev4) == sum(1 for a in alerts if a["model"] == model and int(a["severity"]) == 4)
    # And the demo's whole run is in it: every trace it sent, every alert it raised
    assert sum(int(row[1]) for row in table) == demo.traces == demo.counters["traces"]
    assert {str(a["alert_id"]) for a in alerts} == {str(a["alert_id"]) for a in demo.alerts}
    # And in headless Chromium every chart drew exactly the points it was given, the flag-rate chart some
    drawn = drawn_points(dump_dom(page))
    assert {name: given for name, (given, _) in drawn.items()} == {name: got for name, (_, got) in drawn.items()}
    assert drawn["flag-rate"][0] > 0 and drawn["severity"][0] > 0
