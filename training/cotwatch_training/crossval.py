"""Group-by-source cross-validation of the shipped monitor over the training pool (issue 11).

    cotwatch eval --cv source --pool ../shared/data [--json] [--target-fpr 0.01]

The pool is a folder holding ``train/*.jsonl`` and ``dev.jsonl``; every row names its ``source``. Each row is
scored once through :func:`build_monitor` + ``assess_texts`` (the handler's path: windows, max over windows;
the row's score is its highest calibrated category score). Then, for every source, a threshold is fitted at the
target FPR on the benign rows of the OTHER sources only, and the held-out source is judged at it. The shipped
scorer never trained on the pool, so its scores are out-of-fold by construction; only the threshold is refitted.
Scores are cached by text hash under ``~/.cache/cotwatch/crossval/`` (keyed by the scorer's code and data), so
a re-run only re-does the metrics.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, field_validator

from cotwatch.detection.calibration import load_calibration
from cotwatch.detection.monitor import TraceMonitor
from cotwatch_training.commands import CATEGORY_ORDER, EvalDataError, _embedder, _MonitorFactory, read_jsonl
from cotwatch_training.metrics import compute, tpr_at_fpr

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
POOLED_FPRS = (0.01, 0.02, 0.05, 0.10)
_Z95 = 1.959963984540054


class PoolError(ValueError):
    """The pool folder is missing, empty, or cannot be cross-validated (the message says which)."""


class PoolRow(BaseModel):
    """One pool row: unlike an eval row, the source is required, since folds are cut by it."""

    model_config = ConfigDict(extra="ignore")

    text: str
    label: Literal["unsafe", "benign"]
    category: str = "benign"
    source: str

    @field_validator("label", mode="before")
    @classmethod
    def _label_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("category", mode="before")
    @classmethod
    def _null_category(cls, value: Any) -> Any:
        return "benign" if value is None else value

    @field_validator("source")
    @classmethod
    def _named_source(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("source must be a non-empty string")
        return value


def pool_files(folder: str | Path) -> list[Path]:
    """``train/*.jsonl`` (sorted) then ``dev.jsonl``; a clear error if the folder does not hold them."""
    root = Path(folder)
    if not root.is_dir():
        raise PoolError(f"pool folder {root} does not exist (expected {root}/train/*.jsonl and {root}/dev.jsonl)")
    train = sorted((root / "train").glob("*.jsonl"))
    dev = root / "dev.jsonl"
    if not train:
        raise PoolError(f"pool folder {root} has no train/*.jsonl files")
    if not dev.is_file():
        raise PoolError(f"pool folder {root} has no dev.jsonl")
    return [*train, dev]


def load_pool(folder: str | Path) -> list[PoolRow]:
    return [row for path in pool_files(folder) for row in read_jsonl(path, PoolRow)]


# ---------------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scored:
    """What the protocol needs of each row: its score, and whether the shipped thresholds flag it."""

    score: float
    shipped_flag: bool


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ScoreCache:
    """Append-only JSONL of ``{"h": sha256(text), "s": score, "f": shipped flag}`` per scorer fingerprint.

    Appending after every batch keeps the work of an interrupted run; a torn last line is ignored."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{fingerprint}.jsonl"
        self._memo: dict[str, Scored] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._memo[entry["h"]] = Scored(float(entry["s"]), bool(entry["f"]))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue

    def get(self, key: str) -> Scored | None:
        return self._memo.get(key)

    def put_many(self, items: Iterable[tuple[str, Scored]]) -> None:
        lines = []
        for key, scored in items:
            self._memo[key] = scored
            lines.append(json.dumps({"h": key, "s": scored.score, "f": scored.shipped_flag}) + "\n")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.writelines(lines)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cotwatch" / "crossval"


def scorer_fingerprint(args: argparse.Namespace, monitor: TraceMonitor, embedder_name: str) -> str:
    """Everything a row's score depends on: the detection code, packaged data, overrides and options."""
    digest = hashlib.sha256()
    package = resources.files("cotwatch")
    for folder in ("detection", "data"):
        for item in sorted(package.joinpath(folder).iterdir(), key=lambda p: p.name):
            if item.is_file() and item.name.endswith((".py", ".json", ".yaml")):
                digest.update(item.name.encode() + b"\0" + item.read_bytes())
    for override in (args.taxonomy, args.calibration, args.heads):
        if override:
            digest.update(Path(override).read_bytes())
    options = [monitor.scorer_version, embedder_name, args.embedding_backend, args.window_chars, args.no_heads]
    digest.update(json.dumps(options).encode())
    return digest.hexdigest()[:24]


def score_rows(
    monitor: TraceMonitor, texts: Sequence[str], cache: ScoreCache, batch_size: int = 64, progress: bool = False
) -> list[Scored]:
    keys = [text_key(t) for t in texts]
    first: dict[str, int] = {}  # one scoring per distinct text
    for i, k in enumerate(keys):
        if cache.get(k) is None:
            first.setdefault(k, i)
    todo = list(first.values())
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        found = monitor.assess_texts([texts[i] for i in batch])
        cache.put_many((keys[i], Scored(a.unsafe_score, bool(a.flagged))) for i, a in zip(batch, found, strict=True))
        if progress:
            print(f"scored {min(start + batch_size, len(todo))}/{len(todo)} new texts", file=sys.stderr, flush=True)
    out = [cache.get(k) for k in keys]
    assert all(s is not None for s in out)
    return [s for s in out if s is not None]


# ---------------------------------------------------------------------------------------------------- protocol


def fit_threshold(benign: F64, target_fpr: float) -> float:
    """The lowest cut that flags at most ``target_fpr`` of ``benign`` (flag = score > cut), as ``tpr_at_fpr``."""
    if not len(benign):
        raise PoolError("no benign rows to fit a threshold on")
    ordered = np.sort(benign)[::-1]
    allowed = math.floor(target_fpr * len(ordered))
    return -math.inf if allowed >= len(ordered) else float(ordered[allowed])


def fold_thresholds(scores: F64, unsafe: Bools, sources: Sequence[str], target_fpr: float) -> dict[str, float]:
    """Per held-out source, the threshold fitted on the benign rows of every other source."""
    src = np.asarray(sources)
    out: dict[str, float] = {}
    for held in sorted(set(sources)):
        fit = scores[(src != held) & ~unsafe]
        if not len(fit):
            raise PoolError(f"no benign rows outside source {held!r} to fit its threshold on")
        out[held] = fit_threshold(fit, target_fpr)
    return out


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for k of n (numpy-only, like metrics.py, so eval needs no scipy)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


class Pooled(BaseModel):
    n_unsafe: int
    n_benign: int
    auroc: float | None
    ci95: tuple[float, float] | None
    tpr_at_fpr: dict[str, float | None]
    tpr_at_fold_threshold: float | None
    fpr_at_fold_threshold: float | None
    tpr_at_shipped: float | None
    fpr_at_shipped: float | None


class CategoryReport(BaseModel):
    category: str
    n: int
    auroc: float | None
    ci95: tuple[float, float] | None
    tpr_at_fpr_1pct: float | None
    tpr_at_fold_threshold: float


class SourceReport(BaseModel):
    source: str
    n_unsafe: int
    n_benign: int
    threshold: float
    auroc: float | None = None  # this source's unsafe rows vs every benign row of the pool
    auroc_ci95: tuple[float, float] | None = None
    tpr_at_threshold: float | None = None
    fpr_at_threshold: float | None = None  # this source's benign rows at its fold threshold
    fpr_ci95: tuple[float, float] | None = None
    fpr_at_shipped: float | None = None


class Extreme(BaseModel):
    mean: float | None
    worst: float | None
    worst_source: str | None


class CrossSourceReport(BaseModel):
    protocol: str
    scorer_version: str | None = None
    target_fpr: float
    n: int
    sources: int
    pooled: Pooled
    per_category: list[CategoryReport]
    per_source: list[SourceReport]
    unsafe_source_auroc: Extreme
    benign_source_fpr: Extreme
    benign_source_fpr_shipped: Extreme


def _rate(flags: Bools) -> float | None:
    return round(float(flags.mean()), 4) if len(flags) else None


def _extreme(values: dict[str, float | None], worst_is_low: bool) -> Extreme:
    known = {k: v for k, v in values.items() if v is not None}
    if not known:
        return Extreme(mean=None, worst=None, worst_source=None)
    pick = min if worst_is_low else max
    name = pick(known, key=lambda k: known[k])
    return Extreme(mean=round(float(np.mean(list(known.values()))), 4), worst=known[name], worst_source=name)


def cross_validate(
    rows: Sequence[PoolRow], scored: Sequence[Scored], *, target_fpr: float = 0.01, bootstrap: int = 200
) -> CrossSourceReport:
    if len(rows) != len(scored):
        raise ValueError("one score per row")
    scores = np.array([s.score for s in scored], dtype=np.float64)
    shipped = np.array([s.shipped_flag for s in scored], dtype=np.bool_)
    unsafe = np.array([r.label == "unsafe" for r in rows], dtype=np.bool_)
    sources = [r.source for r in rows]
    src = np.asarray(sources)
    thresholds = fold_thresholds(scores, unsafe, sources, target_fpr)
    row_thr = np.array([thresholds[s] for s in sources], dtype=np.float64)
    fold_flag = scores > row_thr
    pos, neg = scores[unsafe], scores[~unsafe]

    overall = compute(list(pos), list(neg), [], [], bootstrap=bootstrap)
    pooled = Pooled(
        n_unsafe=len(pos),
        n_benign=len(neg),
        auroc=overall.auroc,
        ci95=overall.ci95,
        tpr_at_fpr={
            f"{f:g}": (round(tpr_at_fpr(pos, neg, f), 4) if len(pos) and len(neg) else None) for f in POOLED_FPRS
        },
        tpr_at_fold_threshold=_rate(fold_flag[unsafe]),
        fpr_at_fold_threshold=_rate(fold_flag[~unsafe]),
        tpr_at_shipped=_rate(shipped[unsafe]),
        fpr_at_shipped=_rate(shipped[~unsafe]),
    )

    cats = np.asarray([r.category for r in rows])
    present = {r.category for r in rows if r.label == "unsafe"}
    ordered = [c for c in CATEGORY_ORDER if c in present] + sorted(present - set(CATEGORY_ORDER))
    per_category = []
    for c in ordered:
        sel = unsafe & (cats == c)
        m = compute(list(scores[sel]), list(neg), [], [], bootstrap=bootstrap)
        per_category.append(
            CategoryReport(
                category=c,
                n=int(sel.sum()),
                auroc=m.auroc,
                ci95=m.ci95,
                tpr_at_fpr_1pct=m.tpr_at_fpr_1pct,
                tpr_at_fold_threshold=round(float(fold_flag[sel].mean()), 4),
            )
        )

    per_source = []
    for name in sorted(thresholds):
        here = src == name
        u, b = here & unsafe, here & ~unsafe
        report = SourceReport(
            source=name, n_unsafe=int(u.sum()), n_benign=int(b.sum()), threshold=round(thresholds[name], 6)
        )
        if u.any():
            m = compute(list(scores[u]), list(neg), [], [], bootstrap=bootstrap)
            report.auroc, report.auroc_ci95 = m.auroc, m.ci95
            report.tpr_at_threshold = _rate(fold_flag[u])
        if b.any():
            report.fpr_at_threshold = _rate(fold_flag[b])
            report.fpr_ci95 = wilson(int(fold_flag[b].sum()), int(b.sum()))
            report.fpr_at_shipped = _rate(shipped[b])
        per_source.append(report)

    return CrossSourceReport(
        protocol=(
            "leave-one-source-out: each source judged at a threshold fitted at the target FPR on the benign rows "
            "of the other sources; row score = max calibrated category score over its windows"
        ),
        target_fpr=target_fpr,
        n=len(rows),
        sources=len(thresholds),
        pooled=pooled,
        per_category=per_category,
        per_source=per_source,
        unsafe_source_auroc=_extreme({s.source: s.auroc for s in per_source}, worst_is_low=True),
        benign_source_fpr=_extreme({s.source: s.fpr_at_threshold for s in per_source}, worst_is_low=False),
        benign_source_fpr_shipped=_extreme({s.source: s.fpr_at_shipped for s in per_source}, worst_is_low=False),
    )


# ---------------------------------------------------------------------------------------------------- output


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.3f}-{ci[1]:.3f}]"


def _worst(e: Extreme) -> str:
    return f"{_f(e.mean)} / {_f(e.worst)} ({e.worst_source or '-'})"


def markdown(report: CrossSourceReport) -> str:
    p = report.pooled
    tprs = "/".join(_f(v) for v in p.tpr_at_fpr.values())
    lines = [
        f"Cross-source protocol: {report.n} rows, {report.sources} sources, target FPR {report.target_fpr:g}, "
        f"scorer {report.scorer_version}",
        "",
        "| pooled AUROC [95% CI] | TPR at 1/2/5/10% FPR | TPR / FPR at fold thr | TPR / FPR at shipped thr "
        "| unsafe-src AUROC mean / worst | benign-src FPR mean / worst (fold thr) | (shipped thr) |",
        "|---|---|---|---|---|---|---|",
        f"| {_f(p.auroc)}{_ci(p.ci95)} | {tprs} | {_f(p.tpr_at_fold_threshold)} / {_f(p.fpr_at_fold_threshold)} "
        f"| {_f(p.tpr_at_shipped)} / {_f(p.fpr_at_shipped)} | {_worst(report.unsafe_source_auroc)} "
        f"| {_worst(report.benign_source_fpr)} | {_worst(report.benign_source_fpr_shipped)} |",
        "",
        "| category | n | AUROC [95% CI] | TPR@1%FPR (pooled benign) | TPR@fold thr |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {c.category} | {c.n} | {_f(c.auroc)}{_ci(c.ci95)} | {_f(c.tpr_at_fpr_1pct)} | {_f(c.tpr_at_fold_threshold)} |"
        for c in report.per_category
    ]
    lines += [
        "",
        "| source | unsafe | benign | AUROC (unsafe vs all benign) [95% CI] | TPR@fold thr "
        "| FPR@fold thr [95% Wilson] | FPR@shipped thr |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.source} | {s.n_unsafe} | {s.n_benign} | {_f(s.auroc)}{_ci(s.auroc_ci95)} | {_f(s.tpr_at_threshold)} "
        f"| {_f(s.fpr_at_threshold)}{_ci(s.fpr_ci95)} | {_f(s.fpr_at_shipped)} |"
        for s in report.per_source
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``cotwatch eval --cv source --pool DIR``: exit 2 with the reason when the pool cannot be read."""
    try:
        rows = load_pool(args.pool)
    except (PoolError, EvalDataError, OSError, UnicodeDecodeError) as exc:
        print(f"cotwatch eval: {exc}", file=sys.stderr)
        return 2
    load_calibration(args.calibration)  # fail before scoring if the calibration is unreadable
    embedder = _embedder(args)
    monitor = _MonitorFactory(args, embedder)()
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cache = ScoreCache(cache_dir, scorer_fingerprint(args, monitor, embedder.name))
    scored = score_rows(monitor, [r.text for r in rows], cache, args.batch_size, progress=not args.json)
    try:
        report = cross_validate(rows, scored, target_fpr=args.target_fpr, bootstrap=args.bootstrap)
    except PoolError as exc:
        print(f"cotwatch eval: {exc}", file=sys.stderr)
        return 2
    report.scorer_version = monitor.scorer_version
    print(report.model_dump_json() if args.json else markdown(report))
    return 0


__all__ = ["CrossSourceReport", "PoolError", "PoolRow", "cross_validate", "fold_thresholds", "load_pool", "run"]
