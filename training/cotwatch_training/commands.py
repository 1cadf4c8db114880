"""``cotwatch eval`` and ``cotwatch calibrate``: both score through :func:`build_monitor` and
``TraceMonitor.assess_texts``, the same path as the Lambda handler.

    python -m cotwatch_training.commands eval --data ../shared/data/dev.jsonl --json
    python -m cotwatch_training.commands eval --data ../shared/data/dev.jsonl --cv source --json
    python -m cotwatch_training.commands eval --cv source --pool ../shared/data
    python -m cotwatch_training.commands calibrate --data ../shared/data/dev.jsonl --target-fpr 0.01
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from cotwatch.detection.calibration import Calibration, load_calibration
from cotwatch.detection.embedding import BACKENDS, DEFAULT_MODEL, Embedder, Matrix, build_embedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.models import ChunkAssessment
from cotwatch.detection.monitor import TraceMonitor
from cotwatch_training.calibration_fit import fit_calibration, save_calibration
from cotwatch_training.metrics import Metrics, compute

RowT = TypeVar("RowT", bound=BaseModel)
CATEGORY_ORDER = ("bio_chem", "cyber", "self_improvement", "cot_misbehaviour", "other_harm")


class EvalRow(BaseModel):
    """One labelled row of an eval or calibration file; lenient where other datasets differ harmlessly."""

    model_config = ConfigDict(extra="ignore")

    text: str
    label: Literal["unsafe", "benign"]
    category: str = "benign"
    source: str = "unknown"

    @field_validator("label", mode="before")
    @classmethod
    def _label_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("category", "source", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:  # a benign row often has no category; its default applies
            return "benign" if info.field_name == "category" else "unknown"
        return value


class EvalDataError(ValueError):
    """A row of an eval or calibration file that cannot be read, with its file and line."""


class CachingEmbedder:
    """Remembers vectors by text, so re-scoring the same texts under another calibration is cheap."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._memo: dict[str, np.ndarray] = {}
        self.encoded = 0

    @property
    def name(self) -> str:
        return self._inner.name

    def encode(self, texts: Sequence[str]) -> Matrix:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            for t, v in zip(missing, self._inner.encode(missing), strict=True):
                self._memo[t] = v
            self.encoded += len(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts]).astype(np.float32)


def read_jsonl(path: str | Path, model: type[RowT]) -> list[RowT]:
    """One validated ``model`` per non-blank line; a bad row or an empty file raises with ``file:line``."""
    rows: list[RowT] = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(model.model_validate_json(line))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
                raise EvalDataError(f"{path}:{number}: {problems}") from exc
    if not rows:
        raise EvalDataError(f"{path}: no rows")
    return rows


def load_rows(path: str | Path) -> list[EvalRow]:
    return read_jsonl(path, EvalRow)


def assess(monitor: TraceMonitor, texts: Sequence[str], batch_size: int = 64) -> list[ChunkAssessment]:
    out: list[ChunkAssessment] = []
    for i in range(0, len(texts), batch_size):
        out.extend(monitor.assess_texts(texts[i : i + batch_size]))
    return out


def benign_raw(assessments: Sequence[ChunkAssessment], categories: Sequence[str]) -> dict[str, list[float]]:
    return {c: [a.findings[c].raw_score for a in assessments] for c in categories}


def calibrate_on(
    monitor_for: _MonitorFactory,
    texts: Sequence[str],
    *,
    target_fpr: float,
    version: str,
    base: Calibration,
    tenant: str | None = None,
    rounds: int = 2,
    shrink: float = 0.0,
) -> Calibration:
    """Fit thresholds on benign ``texts``; repeated because the repeat-hit bonus depends on thresholds."""
    calibration = base
    for _ in range(rounds):
        monitor = monitor_for(calibration)
        raw = benign_raw(assess(monitor, texts), monitor.categories)
        calibration = fit_calibration(
            raw,
            target_fpr=target_fpr,
            version=version,
            scorer_version=monitor.scorer_version,
            base=base,
            tenant=tenant,
            shrink=shrink,
        )
        if tenant is None:
            base = calibration
    return calibration


class _MonitorFactory:
    def __init__(self, args: argparse.Namespace, embedder: Embedder) -> None:
        self._args = args
        self._embedder = embedder

    def __call__(self, calibration: Calibration | None = None) -> TraceMonitor:
        a = self._args
        return build_monitor(
            embedding_model=a.embedding_model,
            embedding_backend=a.embedding_backend,
            taxonomy_path=a.taxonomy,
            calibration_path=a.calibration,
            embedder=self._embedder,
            calibration=calibration,
            heads_path=a.heads,
            use_heads=not a.no_heads,
            window_chars=a.window_chars,
        )


def _embedder(args: argparse.Namespace) -> CachingEmbedder:
    if args.embedding_model == "hashing":
        from cotwatch.detection.embedding import HashingEmbedder

        return CachingEmbedder(HashingEmbedder())
    embedder = build_embedder(args.embedding_backend, args.embedding_model, onnx_path=args.embedding_onnx_path)
    return CachingEmbedder(embedder)


def summarise(rows: Sequence[EvalRow], assessments: Sequence[ChunkAssessment]) -> dict[str, object]:
    benign = [a for r, a in zip(rows, assessments, strict=True) if r.label == "benign"]
    neg = [a.unsafe_score for a in benign]
    neg_flag = [bool(a.flagged) for a in benign]

    def metrics_for(selected: list[ChunkAssessment]) -> Metrics:
        return compute([a.unsafe_score for a in selected], neg, [bool(a.flagged) for a in selected], neg_flag)

    unsafe = [(r, a) for r, a in zip(rows, assessments, strict=True) if r.label == "unsafe"]
    cats = [c for c in CATEGORY_ORDER if any(r.category == c for r, _ in unsafe)]
    cats += sorted({r.category for r, _ in unsafe} - set(cats))
    per_category = {c: metrics_for([a for r, a in unsafe if r.category == c]).model_dump() for c in cats}
    accuracy = float(np.mean([a.top_category == r.category for r, a in unsafe])) if unsafe else None
    return {
        "overall": metrics_for([a for _, a in unsafe]).model_dump(),
        "per_category": per_category,
        "category_accuracy": None if accuracy is None else round(accuracy, 4),
    }


def _read_rows(path: str, command: str) -> list[EvalRow] | None:
    """The rows of ``--data``, or None after printing why they cannot be read (the command exits 2)."""
    try:
        return load_rows(path)
    except (EvalDataError, OSError, UnicodeDecodeError) as exc:
        print(f"cotwatch {command}: {exc}", file=sys.stderr)
        return None


def run_eval(args: argparse.Namespace) -> int:
    if args.pool is not None:
        if args.cv != "source" or args.data is not None:
            print("cotwatch eval: --pool needs --cv source and no --data", file=sys.stderr)
            return 2
        from cotwatch_training import crossval  # imports this module: loaded only when asked for

        return crossval.run(args)
    if args.data is None:
        print("cotwatch eval: give --data FILE, or --cv source --pool DIR", file=sys.stderr)
        return 2
    rows = _read_rows(args.data, "eval")
    if rows is None:
        return 2
    texts = [r.text for r in rows]
    embedder = _embedder(args)
    factory = _MonitorFactory(args, embedder)
    monitor = factory()
    started = time.perf_counter()
    assessments = assess(monitor, texts, args.batch_size)
    elapsed = time.perf_counter() - started
    report: dict[str, object] = {
        "n": len(rows),
        "texts_per_s": round(len(rows) / elapsed, 2) if elapsed > 0 else None,
        "scorer_version": monitor.scorer_version,
        "calibration_version": assessments[0].calibration_version if assessments else None,
    }
    if args.cv == "source":
        assessments = _cross_validate(args, factory, rows, assessments)
        report["cv"] = "leave-one-source-out: thresholds fitted on benign rows of the other sources"
    report.update(summarise(rows, assessments))
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0


def _cross_validate(
    args: argparse.Namespace, factory: _MonitorFactory, rows: Sequence[EvalRow], first: Sequence[ChunkAssessment]
) -> list[ChunkAssessment]:
    """Pooled out-of-source scores: each source is scored under thresholds fitted without it."""
    base = load_calibration(args.calibration)
    out: list[ChunkAssessment | None] = [None] * len(rows)
    for source in sorted({r.source for r in rows}):
        fit_texts = [r.text for r in rows if r.source != source and r.label == "benign"]
        held = [i for i, r in enumerate(rows) if r.source == source]
        if not fit_texts:
            raise SystemExit(f"--cv source: no benign rows outside source {source!r} to calibrate on")
        cal = calibrate_on(
            factory,
            fit_texts,
            target_fpr=args.target_fpr,
            version=f"cv-without-{source}",
            base=base,
            shrink=args.shrink,
        )
        scored = assess(factory(cal), [rows[i].text for i in held], args.batch_size)
        for i, a in zip(held, scored, strict=True):
            out[i] = a
    assert all(a is not None for a in out)
    return [a for a in out if a is not None]


def _print_table(report: dict[str, object]) -> None:
    print(f"n={report['n']}  texts/s={report['texts_per_s']}  scorer={report['scorer_version']}")
    if "cv" in report:
        print(f"cv: {report['cv']}")
    head = f"{'':18} {'auroc':>7} {'95% CI':>15} {'auprc':>7} {'tpr@1%':>7} {'tpr@.1%':>8} {'fpr@t':>7} {'tpr@t':>7}"
    print(head)
    per = report["per_category"]
    assert isinstance(per, dict)
    for name, m in [("overall", report["overall"]), *per.items()]:
        assert isinstance(m, dict)
        ci = m["ci95"]
        ci_s = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "-"

        def f(v: object) -> str:
            return f"{v:.3f}" if isinstance(v, float) else "-"

        print(
            f"{name:18} {f(m['auroc']):>7} {ci_s:>15} {f(m['auprc']):>7} {f(m['tpr_at_fpr_1pct']):>7} "
            f"{f(m['tpr_at_fpr_0_1pct']):>8} {f(m['fpr_at_threshold']):>7} {f(m['tpr_at_threshold']):>7}"
        )
    print(f"category accuracy (top category == label, unsafe rows): {report['category_accuracy']}")


def run_calibrate(args: argparse.Namespace) -> int:
    read: list[EvalRow] = []
    for path in args.data:  # several files: e.g. the pool, ../shared/data/dev.jsonl ../shared/data/train/*.jsonl
        part = _read_rows(path, "calibrate")
        if part is None:
            return 2
        read += part
    rows = [r for r in read if r.label == "benign"]
    if not rows:
        print("no benign rows in --data", file=sys.stderr)
        return 2
    factory = _MonitorFactory(args, _embedder(args))
    base = load_calibration(args.calibration)
    version = args.version or f"cal-{datetime.now(UTC):%Y%m%d%H%M}-{Path(args.data[0]).stem}"
    cal = calibrate_on(
        factory,
        [r.text for r in rows],
        target_fpr=args.target_fpr,
        version=version,
        base=base,
        tenant=args.tenant,
        shrink=args.shrink,
    )
    out = args.out or args.calibration or Path(str(importlib.resources.files("cotwatch") / "data" / "calibration.json"))
    save_calibration(cal, out)
    print(
        f"wrote {out}: version {cal.version}, scorer {cal.scorer_version}, {len(rows)} benign texts "
        f"from {len(args.data)} file(s), target FPR {args.target_fpr}"
    )
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embedding-model",
        default=DEFAULT_MODEL,
        help="package:<module>, a model folder, or 'hashing' (the test fake)",
    )
    p.add_argument(
        "--embedding-backend", default="torch", choices=BACKENDS, help="onnx*: run `cotwatch export-onnx` first"
    )
    p.add_argument("--embedding-onnx-path", default=None, help="ONNX export folder (default: the export cache)")
    p.add_argument("--taxonomy", default=None, help="taxonomy override file (as TAXONOMY_PATH)")
    p.add_argument("--calibration", default=None, help="calibration file (default: the packaged one)")
    p.add_argument("--heads", default=None, help="trained heads artifact (default: the packaged one for the encoder)")
    p.add_argument("--no-heads", action="store_true", help="exemplar similarity only (the v0 scorer)")
    p.add_argument("--window-chars", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64, help="texts per assess_texts call")
    p.add_argument(
        "--shrink",
        type=float,
        default=0.0,
        help="calibration: 1 = per-category thresholds, 0 = one shared threshold (see calibration.py)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = subparsers.add_parser("eval", help="score a labelled JSONL and report detection metrics")
    ev.add_argument("--data", default=None, help="JSONL with text, label (unsafe|benign), category[, source]")
    ev.add_argument(
        "--pool",
        default=None,
        help="with --cv source: a folder of train/*.jsonl + dev.jsonl, cross-validated by source (crossval.py)",
    )
    ev.add_argument("--cache-dir", default=None, help="--pool score cache (default ~/.cache/cotwatch/crossval)")
    ev.add_argument("--bootstrap", type=int, default=200, help="--pool: bootstrap resamples for AUROC CIs")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument(
        "--cv",
        choices=["none", "source"],
        default="none",
        help="source: leave-one-source-out calibration (nothing fitted on the scored source)",
    )
    ev.add_argument("--target-fpr", type=float, default=0.01, help="target FPR for --cv calibration")
    _model_args(ev)
    ev.set_defaults(func=run_eval)

    cal = subparsers.add_parser("calibrate", help="fit per-category thresholds on the benign rows of a JSONL")
    cal.add_argument("--data", required=True, nargs="+", help="JSONL file(s); their benign rows are fitted on")
    cal.add_argument("--target-fpr", type=float, default=0.01)
    cal.add_argument("--out", default=None, help="output path (default: overwrite the calibration in use)")
    cal.add_argument("--tenant", default=None, help="write thresholds as this tenant's overrides only")
    cal.add_argument("--version", default=None, help="calibration version string (default: dated)")
    _model_args(cal)
    cal.set_defaults(func=run_calibrate)

    from cotwatch_training.onnx_export import register as register_export

    register_export(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cotwatch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
