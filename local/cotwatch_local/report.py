"""``cotwatch report``: one self-contained HTML file from the roll-ups (and the alerts, for evidence).

Charts are plotly figures; the plotly.js bundle is inlined once (``include_plotlyjs=True`` on the first), so
the file opens with no network. Each chart sits in a ``<div data-chart=NAME data-points=N>``: N is the number
of data points given to it, which the browser test counts back from the drawn SVG.

Numbers come from the counter cells of ``counters_hourly`` (DuckDB over the Parquet roll-ups):
flag rate = ``flagged_traces`` / ``traces`` (per category) or ``flagged_traces_any`` / ``traces`` (per model),
alerts by severity and disposition from ``alerts_*``, triage precision = true / (true + false positives) from
``triage_*`` (or, where no verdict counters exist, from ``verdict`` fields on the alert items), score drift from
the ``score_bucket_*`` histograms of the window against the window before it.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import plotly.graph_objects as go

from cotwatch.adapters.aws import DynamoCounterStore
from cotwatch.rollup import RollupCounters, S3RollupWriter
from cotwatch.tracking import SCORE_BUCKETS, TRIAGE_VERDICTS, bucket_bounds
from cotwatch_local.tracking import connect_objects, folder_objects, run_query, s3_objects

NEAR_LOW = 0.4  # "close to threshold": calibrated scores in [0.4, 0.5)
SEVERITY_COLOURS = {1: "#9ecae1", 2: "#fdae6b", 3: "#f16913", 4: "#a50f15"}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def holds(self, hour: str) -> bool:
        moment = datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        return self.start <= moment < self.end


def parse_span(text: str) -> timedelta:
    """``7d``, ``36h`` or ``2w``."""
    units = {"h": "hours", "d": "days", "w": "weeks"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) == 0:
        raise ValueError(f"a span is a positive number and h, d or w (e.g. 7d), not {text!r}")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


@dataclass
class Slice:
    """The counter cells of one window, summed by (model, metric, category) and by (period, ...)."""

    cells: Counter[tuple[str, str, str]]
    by_period: Counter[tuple[str, str, str, str]]

    def total(self, metric: str, model: str | None = None, category: str | None = None) -> int:
        return sum(
            n
            for (m, x, c), n in self.cells.items()
            if x == metric and (model is None or m == model) and (category is None or c == category)
        )

    @property
    def models(self) -> list[str]:
        return sorted({m for m, x, _ in self.cells if x == "traces"})

    @property
    def categories(self) -> list[str]:
        return sorted({c for _, x, c in self.cells if x.startswith("score_bucket_")})


def slice_rows(rows: Sequence[dict[str, Any]], window: Window, tenant: str | None, period_chars: int) -> Slice:
    cells: Counter[tuple[str, str, str]] = Counter()
    by_period: Counter[tuple[str, str, str, str]] = Counter()
    for r in rows:
        if (tenant is not None and r["tenant"] != tenant) or not window.holds(str(r["hour"])):
            continue
        cells[(r["model"], r["metric"], r["category"])] += int(r["amount"])
        by_period[(str(r["hour"])[:period_chars], r["model"], r["metric"], r["category"])] += int(r["amount"])
    return Slice(cells, by_period)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _layout(fig: go.Figure, title: str, x: str, y: str, **extra: Any) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        legend_title_text=extra.pop("legend", None),
        template="plotly_white",
        height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 60},
        showlegend=True,
        **extra,
    )
    return fig


def _points(fig: go.Figure) -> int:
    return sum(len(t.x) for t in fig.data if t.x is not None)


def flag_rate_figure(current: Slice, period_chars: int) -> go.Figure:
    fig = go.Figure()
    periods = sorted({p for p, _, x, _ in current.by_period if x == "traces"})
    for model in current.models:
        for category in current.categories:
            xs, ys = [], []
            for period in periods:
                traces = current.by_period[(period, model, "traces", "-")]
                if traces:
                    xs.append(period if period_chars == 10 else f"{period}:00")
                    ys.append(100 * current.by_period[(period, model, "flagged_traces", category)] / traces)
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{model} · {category}"))
    unit = "day" if period_chars == 10 else "hour (UTC)"
    # Periods as categories: one hour of data must not become a millisecond-wide time axis.
    return _layout(
        fig,
        "Flag rate per category per model",
        unit,
        "traces flagged (%)",
        legend="model · category",
        yaxis_rangemode="tozero",
        xaxis_type="category",
    )


def severity_figure(current: Slice) -> go.Figure:
    fig = go.Figure()
    for severity in (1, 2, 3, 4):
        xs, ys = [], []
        for category in current.categories:
            n = current.total(f"alerts_severity_{severity}", category=category)
            if n:
                xs.append(category)
                ys.append(n)
        if xs:
            fig.add_trace(go.Bar(x=xs, y=ys, name=f"severity {severity}", marker_color=SEVERITY_COLOURS[severity]))
    return _layout(
        fig,
        "Alerts by severity",
        "category",
        "alerts",
        legend="severity",
        barmode="stack",
        xaxis_categoryorder="category ascending",
    )


def disposition_figure(current: Slice) -> go.Figure:
    fig = go.Figure()
    for disposition in ("complied", "unclear", "refused"):
        xs, ys = [], []
        for category in current.categories:
            n = current.total(f"alerts_{disposition}", category=category)
            if n:
                xs.append(category)
                ys.append(n)
        if xs:
            fig.add_trace(go.Bar(x=xs, y=ys, name=disposition))
    return _layout(
        fig, "Alerts by disposition of the reasoning", "category", "alerts", legend="disposition", barmode="group"
    )


def histogram(s: Slice, category: str | None = None) -> list[int]:
    return [s.total(f"score_bucket_{b:02d}", category=category) for b in range(SCORE_BUCKETS)]


def drift(current: list[int], baseline: list[int]) -> float | None:
    """Total variation distance between two score histograms (0: same shape, 1: disjoint)."""
    a, b = sum(current), sum(baseline)
    if not a or not b:
        return None
    return 0.5 * sum(abs(x / a - y / b) for x, y in zip(current, baseline, strict=True))


def drift_figure(current: Slice, baseline: Slice) -> go.Figure:
    fig = go.Figure()
    for name, s in (("baseline window", baseline), ("this window", current)):
        counts = histogram(s)
        total = sum(counts)
        xs = [sum(bucket_bounds(f"score_bucket_{b:02d}")) / 2 for b in range(SCORE_BUCKETS) if counts[b]]
        ys = [100 * counts[b] / total for b in range(SCORE_BUCKETS) if counts[b]]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name))
    fig.add_vline(x=0.5, line_dash="dash", annotation_text="threshold")
    return _layout(
        fig,
        "Calibrated score distribution (chunk × category), this window against the baseline",
        "calibrated score (bucket midpoint; 0.5 = threshold)",
        "share of scores (%, log scale)",
        legend="window",
        yaxis_type="log",
        xaxis_range=[0, 1],
    )


def near_threshold(current: Slice) -> dict[str, tuple[int, int]]:
    """Per category: chunks scored in [0.4, 0.5) and chunks scored."""
    near = {b for b in range(SCORE_BUCKETS) if NEAR_LOW <= bucket_bounds(f"score_bucket_{b:02d}")[0] < 0.5}
    return {c: (sum(histogram(current, c)[b] for b in near), sum(histogram(current, c))) for c in current.categories}


def near_figure(current: Slice) -> go.Figure:
    near = near_threshold(current)
    xs = [c for c in near if near[c][1]]
    ys = [100 * near[c][0] / near[c][1] for c in xs]
    fig = go.Figure(go.Bar(x=xs, y=ys, name="0.40 ≤ score < 0.50", marker_color="#6a51a3"))
    return _layout(
        fig, "Categories close to their threshold", "category", "chunks scored just below threshold (%)", legend="band"
    )


def triage(current: Slice, alerts: Sequence[dict[str, Any]]) -> tuple[dict[str, Counter[str]], str]:
    """Verdicts per category, and where they came from."""
    by: dict[str, Counter[str]] = defaultdict(Counter)
    for category in current.categories:
        for verdict in TRIAGE_VERDICTS:
            n = current.total(f"triage_{verdict}", category=category)
            if n:
                by[category][verdict] += n
    if by:
        return dict(by), "triage verdict counters"
    for alert in alerts:
        if alert.get("verdict"):
            by[str(alert["category"])][str(alert["verdict"])] += 1
    return dict(by), "verdict fields of the alert items" if by else "none yet"


def precision(counts: Counter[str]) -> float | None:
    return _ratio(counts["true_positive"], counts["true_positive"] + counts["false_positive"])


def precision_figure(verdicts: dict[str, Counter[str]]) -> go.Figure:
    xs = [c for c in sorted(verdicts) if precision(verdicts[c]) is not None]
    ys = [100 * (precision(verdicts[c]) or 0.0) for c in xs]
    fig = go.Figure(go.Bar(x=xs, y=ys, name="true / (true + false positives)", marker_color="#238b45"))
    return _layout(
        fig, "Triage precision per category", "category", "precision (%)", legend="measure", yaxis_range=[0, 100]
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def model_summary(current: Slice, verdicts_by_model: dict[str, Counter[str]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for model in current.models:
        traces = current.total("traces", model=model)
        rows.append(
            [
                model,
                traces,
                current.total("chunks", model=model),
                current.total("tokens", model=model),
                _pct(_ratio(current.total("flagged_traces_any", model=model), traces)),
                current.total("alerts_severity_4", model=model),
                _pct(precision(verdicts_by_model.get(model, Counter()))),
            ]
        )
    return rows


def top_evidence(alerts: Sequence[dict[str, Any]], limit: int = 10) -> list[list[object]]:
    ranked = sorted(alerts, key=lambda a: (-int(a["severity"]), -float(a["score"]), str(a["alert_id"])))[:limit]
    rows: list[list[object]] = []
    for a in ranked:
        evidence = a.get("evidence") or []
        excerpt = str(evidence[0].get("excerpt", "")) if evidence else ""
        rows.append(
            [a["model"], a["category"], int(a["severity"]), f"{float(a['score']):.3f}", a["disposition"], excerpt[:240]]
        )
    return rows


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0; } .meta { color: #666; margin-top: 4px; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 14px; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .chart { margin: 12px 0 28px; } .note { color: #555; font-size: 14px; }
"""


def render(
    rows: Sequence[dict[str, Any]],
    alerts: Sequence[dict[str, Any]],
    *,
    since: timedelta = timedelta(days=7),
    tenant: str | None = None,
    now: datetime | None = None,
    source: str = "",
    patterns: dict[str, Any] | None = None,
) -> str:
    """The report's HTML. ``rows``: ``counters_hourly`` rows; ``alerts``: alert items (for evidence)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    window, baseline_window = Window(end - since, end), Window(end - 2 * since, end - since)
    period_chars = 13 if since <= timedelta(days=2) else 10
    current = slice_rows(rows, window, tenant, period_chars)
    baseline = slice_rows(rows, baseline_window, tenant, period_chars)
    in_window = [
        a
        for a in alerts
        if {"tenant", "model", "category", "severity", "created_at"} <= set(a)  # not the cooldown windows' rows
        and (tenant is None or a["tenant"] == tenant)
        and window.holds(str(a["created_at"])[:13].replace(" ", "T"))
    ]
    verdicts, verdict_source = triage(current, in_window)
    verdicts_by_model: dict[str, Counter[str]] = defaultdict(Counter)
    for (model, metric, _), n in current.cells.items():
        if metric.startswith("triage_"):
            verdicts_by_model[model][metric.removeprefix("triage_")] += n
    if verdict_source.startswith("verdict fields"):
        for a in in_window:
            if a.get("verdict"):
                verdicts_by_model[str(a["model"])][str(a["verdict"])] += 1

    figures: list[tuple[str, go.Figure, str]] = [
        ("flag-rate", flag_rate_figure(current, period_chars), ""),
        ("severity", severity_figure(current), ""),
        ("disposition", disposition_figure(current), ""),
        ("score-drift", drift_figure(current, baseline), ""),
        ("near-threshold", near_figure(current), ""),
        ("triage-precision", precision_figure(verdicts), f"Verdicts from: {verdict_source}."),
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>cotwatch preparedness report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>cotwatch preparedness report</h1>",
        f"<p class='meta'>Window {window.start:%Y-%m-%d %H:00} – {window.end:%Y-%m-%d %H:00} UTC"
        f" (baseline: the {_span(since)} before it) · tenant {html.escape(tenant or 'all')}"
        f" · generated {now:%Y-%m-%d %H:%M} UTC{' · ' + html.escape(source) if source else ''}</p>",
        "<h2>Per-model summary</h2>",
        _table(
            ["model", "traces scored", "chunks", "tokens", "flag rate", "severity-4 alerts", "triage precision"],
            model_summary(current, verdicts_by_model),
            "summary",
        ),
        "<p class='note'>Flag rate: traces whose reasoning crossed any category's threshold, over traces scored."
        " Triage precision: true positives over true + false positives among triaged alerts.</p>",
    ]
    first = True
    for name, fig, note in figures:
        div = fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})
        first = False
        parts.append(f'<div class="chart" data-chart="{name}" data-points="{_points(fig)}">{div}</div>')
        if note:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
        if name == "score-drift":
            drift_rows = [[c, _fmt(drift(histogram(current, c), histogram(baseline, c)))] for c in current.categories]
            parts.append(_table(["category", "drift (total variation, 0–1)"], drift_rows, "drift"))
    near = near_threshold(current)
    parts.append("<h2>Categories close to their threshold</h2>")
    parts.append(
        _table(
            ["category", "chunks 0.40–0.50", "chunks scored", "share"],
            [[c, a, b, _pct(_ratio(a, b))] for c, (a, b) in near.items()],
            "near",
        )
    )
    parts.append("<h2>Top redacted evidence</h2>")
    parts.append(
        _table(
            ["model", "category", "severity", "score", "disposition", "excerpt (redacted)"],
            top_evidence(in_window),
            "evidence",
        )
    )
    parts.extend(patterns_section(patterns))
    parts.append("</body></html>")
    return "\n".join(parts)


def growth_figure(clusters: Sequence[dict[str, Any]]) -> go.Figure:
    xs = [str(c["cluster"]) for c in clusters]
    fig = go.Figure(
        [
            go.Bar(x=xs, y=[int(c["baseline_windows"]) for c in clusters], name="baseline window"),
            go.Bar(x=xs, y=[int(c["windows"]) for c in clusters], name="this window"),
        ]
    )
    return _layout(
        fig, "Clusters of suspicious windows no category passes", "cluster (most grown first)", "windows",
        legend="window", barmode="group",
    )  # fmt: skip


def patterns_section(patterns: dict[str, Any] | None) -> list[str]:
    """Embedding drift per model and the clusters of suspicious windows (``cotwatch patterns list``'s answer)."""
    parts = ["<h2>Emerging patterns</h2>"]
    if not patterns:
        return [*parts, "<p class='note'>No pattern data (suspicious windows, embedding summaries) found.</p>"]
    drift_rows = [
        [r["model"], r["windows"], r["baseline_windows"], _fmt(r["cosine_distance"]), _fmt(r["frechet"])]
        for r in patterns.get("drift", [])
    ]
    parts.append(
        _table(
            ["model", "windows", "baseline windows", "drift (cosine distance of means)", "Fréchet (diagonal)"],
            drift_rows,
            "embedding-drift",
        )
    )
    clusters = list(patterns.get("clusters", []))[:10]
    if clusters:
        fig = growth_figure(clusters)
        div = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        parts.append(f'<div class="chart" data-chart="pattern-growth" data-points="{_points(fig)}">{div}</div>')
    rows = [
        [c["cluster"], c["windows"], c["baseline_windows"], f"{float(c['growth']):.2f}", c["nearest_category"],
         " | ".join(str(e)[:160] for e in c["examples"]) or "(hashed: no text)"]
        for c in clusters
    ]  # fmt: skip
    parts.append(
        _table(
            ["cluster", "windows", "baseline", "growth", "nearest category", "examples (redacted)"], rows, "clusters"
        )
    )
    parts.append(
        "<p class='note'>Promote one: <code>cotwatch patterns promote CLUSTER --category NAME"
        " --out taxonomy-override.yaml</code></p>"
    )
    return parts


def _fmt(value: float | None) -> str:
    return "– (no baseline data)" if value is None or math.isnan(value) else f"{value:.3f}"


def _span(span: timedelta) -> str:
    hours = int(span.total_seconds() // 3600)
    if hours % 24:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{hours // 24} day{'s' if hours != 24 else ''}"


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as int or float, recursively, so alert items serialise as JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def scan_alerts(table_name: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(table_name)
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items += [_plain(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def counter_hours(table_name: str) -> list[str]:
    """Every hour the counters table has cells for (the demo rolls each of them up)."""
    client = boto3.client("dynamodb")
    hours: set[str] = set()
    for page in client.get_paginator("scan").paginate(TableName=table_name, ProjectionExpression="pk"):
        hours |= {i["pk"]["S"].removeprefix("hour#") for i in page.get("Items", []) if i["pk"]["S"].startswith("hour#")}
    return sorted(hours)


def roll_up_everything(counters_table: str, bucket: str, prefix: str = "rollups/") -> list[str]:
    """Roll up every hour with counters and compact every such day (idempotent: objects are rewritten)."""
    rollup = RollupCounters(DynamoCounterStore(counters_table), S3RollupWriter(bucket, prefix=prefix))
    hours = counter_hours(counters_table)
    for hour in hours:
        rollup.run(hour)
    for day in sorted({h[:10] for h in hours}):
        rollup.compact(day)
    return hours


def snapshot(bucket: str, alerts_table: str, folder: Path, prefix: str = "rollups/") -> int:
    """Copy the Parquet roll-ups and the alert items to ``folder``, for a report after the stack is down."""
    if folder.exists():
        shutil.rmtree(folder)
    count = 0
    for key, body in s3_objects(boto3.client("s3"), bucket, prefix):
        path = folder / "rollups" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        count += 1
    # Emerging patterns: the suspicious windows and the embedding summaries (JSON, not Parquet).
    s3 = boto3.client("s3")
    for extra in ("patterns/windows/", f"{prefix}embeddings/"):
        for obj in (
            o
            for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=extra)
            for o in p.get("Contents", [])
        ):
            path = (
                folder / "rollups" / obj["Key"].removeprefix(prefix)
                if extra != "patterns/windows/"
                else folder / obj["Key"]
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alerts.json").write_text(json.dumps(scan_alerts(alerts_table), indent=1), encoding="utf-8")
    return count


def inputs_from_stack(
    bucket: str, alerts_table: str, prefix: str = "rollups/"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    con = connect_objects(s3_objects(boto3.client("s3"), bucket, prefix))
    return run_query(con, "SELECT * FROM counters_hourly"), scan_alerts(alerts_table)


def inputs_from_snapshot(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not (folder / "alerts.json").is_file():
        raise ValueError(f"no roll-up snapshot in {folder}: run `cotwatch demo` (or bring the stack up) first")
    con = connect_objects(folder_objects(folder / "rollups"))
    alerts: list[dict[str, Any]] = json.loads((folder / "alerts.json").read_text(encoding="utf-8"))
    return run_query(con, "SELECT * FROM counters_hourly"), alerts
