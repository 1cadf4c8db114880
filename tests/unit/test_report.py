"""The report's numbers from counter rows, without a browser: window, tenant filter, summary, spans."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from cotwatch_local.report import parse_span, render

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []

    def add(hour: str, tenant: str, metric: str, amount: int, category: str = "-") -> None:
        rows.append(
            {"hour": hour, "tenant": tenant, "model": "m", "metric": metric, "category": category, "amount": amount}
        )

    for tenant, traces in (("acme", 10), ("other", 30)):
        add("2026-12-07T14", tenant, "traces", traces)
        add("2026-12-07T14", tenant, "flagged_traces_any", 2)
        add("2026-12-07T14", tenant, "flagged_traces", 2, "cyber")
        add("2026-12-07T14", tenant, "alerts_severity_4", 1, "cyber")
        add("2026-12-07T14", tenant, "score_bucket_00", traces, "cyber")
    add("2026-11-01T10", "acme", "traces", 500)  # outside a 7-day window
    return rows


def _summary(page: str) -> list[list[str]]:
    table = re.search(r'<table class="summary">(.*?)</table>', page, re.S)
    assert table is not None
    return [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", table.group(1))[1:]]


def test_summary_counts_the_window_and_the_tenant_only() -> None:
    # Given counters of two tenants and one old hour; When the report is for acme over 7 days
    page = render(_rows(), [], since=timedelta(days=7), tenant="acme", now=NOW)
    # Then only acme's cells in the window count: 10 traces, 2 flagged (20%), one severity-4 alert
    assert _summary(page) == [["m", "10", "0", "0", "20.0%", "1", "–"]]
    # And for all tenants the counts add up
    assert _summary(render(_rows(), [], now=NOW))[0][1] == "40"


def test_every_chart_declares_its_points_and_plotly_is_inlined_once() -> None:
    page = render(_rows(), [], now=NOW)
    charts = dict(re.findall(r'data-chart="([a-z-]+)" data-points="(\d+)"', page))
    assert set(charts) == {"flag-rate", "severity", "disposition", "score-drift", "near-threshold", "triage-precision"}
    assert charts["flag-rate"] == "1" and charts["severity"] == "1"
    assert page.count("plotly.js v") == 1 and "cdn.plot.ly" not in page.split("<script")[1][:200]


@pytest.mark.parametrize(
    ("text", "span"), [("7d", timedelta(days=7)), ("36h", timedelta(hours=36)), ("2w", timedelta(weeks=2))]
)
def test_spans_parse(text: str, span: timedelta) -> None:
    assert parse_span(text) == span


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "-1d", "7m"])
def test_bad_spans_are_refused_with_the_format(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 7d"):
        parse_span(text)
