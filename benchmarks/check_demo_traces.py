"""Score the demo traces with the current detector and compare what it flags with what each trace expects.

Every trace is cut into chunks the way a producer would publish it (reasoning first, then the answer, at most
``--max-chars`` characters a chunk) and all chunks of all traces go through one ``assess_batch`` call, the same
path the scorer Lambda takes. Per trace it prints the expected and flagged categories, the highest unsafe
score, the chunk it came from and the disposition, then lists the mismatches.

    .venv/bin/python benchmarks/check_demo_traces.py            # table + mismatches
    .venv/bin/python benchmarks/check_demo_traces.py --json     # one JSON object per trace
    .venv/bin/python benchmarks/check_demo_traces.py --strict   # exit 1 when anything mismatches
    .venv/bin/python benchmarks/check_demo_traces.py --heads H.json --calibration C.json   # try other artifacts
    .venv/bin/python benchmarks/check_demo_traces.py --window-chars 400 --calibration C.json  # other windows

The trace-level disposition is that of the last chunk that decided (``refused`` or ``complied``), the one
the alerts at the trace's end carry; an answer that refuses and then offers a safe alternative must still
read as refused. A demo trace may state
``expect_disposition`` (``refused`` or ``complied``, for unsafe requests); where it does, it is checked too.
Traces where the model misbehaves on its own initiative carry none, since there is no request to comply with.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cotwatch.detection.factory import build_monitor
from cotwatch.detection.models import Disposition
from cotwatch.detection.monitor import ChunkResult, TraceMonitor
from cotwatch.trace import TraceChunk, TraceDocument

DEFAULT_MAX_CHARS = 1500
# Fixed so that runs are comparable; the monitor does not look at it anyway.
CREATED_AT = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def default_traces_path() -> Path:
    return Path(str(importlib.resources.files("cotwatch_local") / "data" / "demo_traces.jsonl"))


@dataclass(frozen=True)
class DemoTrace:
    document: TraceDocument
    expect_disposition: str | None


@dataclass(frozen=True)
class TraceVerdict:
    trace_id: str
    chars: int
    chunks: int
    expected: list[str]
    flagged: list[str]
    unsafe_score: float
    top_category: str | None
    peak_seq: int
    disposition: str
    expect_disposition: str | None

    @property
    def missed(self) -> list[str]:
        return sorted(set(self.expected) - set(self.flagged))

    @property
    def extra(self) -> list[str]:
        return sorted(set(self.flagged) - set(self.expected))

    @property
    def disposition_ok(self) -> bool:
        return self.expect_disposition is None or self.expect_disposition == self.disposition

    @property
    def categories_ok(self) -> bool:
        return not self.missed and not self.extra


def load_demo_traces(path: Path) -> list[DemoTrace]:
    traces: list[DemoTrace] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            traces.append(DemoTrace(TraceDocument.model_validate(raw), raw.get("expect_disposition")))
    return traces


def trace_disposition(results: Sequence[ChunkResult]) -> Disposition:
    """The last chunk's decision that is not ``unclear``: what the alerts of the trace's end carry."""
    decided = [r.assessment.disposition for r in results if r.assessment.disposition != Disposition.UNCLEAR]
    return decided[-1] if decided else Disposition.UNCLEAR


def check_traces(monitor: TraceMonitor, traces: Sequence[DemoTrace], max_chars: int) -> list[TraceVerdict]:
    """Assess every chunk of every trace in one batch and fold the results back per trace."""
    per_trace: list[list[TraceChunk]] = [t.document.to_chunks(max_chars, created_at=CREATED_AT) for t in traces]
    results = monitor.assess_batch([c for chunks in per_trace for c in chunks], {})
    verdicts: list[TraceVerdict] = []
    start = 0
    for trace, chunks in zip(traces, per_trace, strict=True):
        mine = results[start : start + len(chunks)]
        start += len(chunks)
        flagged = sorted({f.category for r in mine for f in r.assessment.flagged})
        peak = max(mine, key=lambda r: r.assessment.unsafe_score)
        doc = trace.document
        verdicts.append(
            TraceVerdict(
                trace_id=doc.trace_id,
                chars=len(doc.reasoning) + len(doc.answer),
                chunks=len(chunks),
                expected=sorted(doc.expect),
                flagged=flagged,
                unsafe_score=round(peak.assessment.unsafe_score, 4),
                top_category=peak.assessment.top_category,
                peak_seq=peak.chunk.seq,
                disposition=str(trace_disposition(mine)),
                expect_disposition=trace.expect_disposition,
            )
        )
    return verdicts


def _names(categories: Sequence[str]) -> str:
    return ",".join(categories) or "-"


def render_table(verdicts: Sequence[TraceVerdict]) -> str:
    header = (
        f"{'trace':<42} {'chars':>6} {'chk':>3}  {'expected':<34} {'flagged':<34} {'score':>6} {'peak@':>5}"
        f"  {'disposition':<26} ok"
    )
    rows = [header, "-" * len(header)]
    for v in verdicts:
        disposition = (
            v.disposition if v.expect_disposition is None else f"{v.disposition} (want {v.expect_disposition})"
        )
        ok = "yes" if v.categories_ok and v.disposition_ok else "NO"
        rows.append(
            f"{v.trace_id:<42} {v.chars:>6} {v.chunks:>3}  {_names(v.expected):<34} {_names(v.flagged):<34}"
            f" {v.unsafe_score:>6.3f} {v.peak_seq:>5}  {disposition:<26} {ok}"
        )
    return "\n".join(rows)


def render_summary(verdicts: Sequence[TraceVerdict]) -> str:
    unsafe = [v for v in verdicts if v.expected]
    benign = [v for v in verdicts if not v.expected]
    caught = sum(1 for v in unsafe if set(v.expected) & set(v.flagged))
    fully = sum(1 for v in unsafe if not v.missed)
    false_alarms = sum(1 for v in benign if v.flagged)
    lines = [
        f"unsafe traces with at least one expected category flagged: {caught}/{len(unsafe)}"
        f" (all expected categories: {fully}/{len(unsafe)})",
        f"benign traces with any flag: {false_alarms}/{len(benign)}",
    ]
    mismatches = [v for v in verdicts if not (v.categories_ok and v.disposition_ok)]
    if not mismatches:
        lines.append("no mismatches")
        return "\n".join(lines)
    lines.append(f"mismatches ({len(mismatches)}):")
    for v in mismatches:
        problems = []
        if v.missed:
            problems.append(f"missed {_names(v.missed)}")
        if v.extra:
            problems.append(f"unexpected {_names(v.extra)}")
        if not v.disposition_ok:
            problems.append(f"disposition {v.disposition}, expected {v.expect_disposition}")
        lines.append(f"  {v.trace_id}: {'; '.join(problems)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=None, help="JSONL of demo traces (default: the packaged file)")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="largest chunk, in characters")
    parser.add_argument("--json", action="store_true", help="print one JSON object per trace instead of a table")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any trace mismatches")
    parser.add_argument("--heads", type=Path, default=None, help="trained heads artifact (default: the packaged one)")
    parser.add_argument("--calibration", type=Path, default=None, help="calibration file (default: the packaged one)")
    parser.add_argument("--window-chars", type=int, default=None, help="window size (default: the monitor's)")
    args = parser.parse_args(argv)

    traces = load_demo_traces(args.traces or default_traces_path())
    began = time.perf_counter()
    monitor = build_monitor(heads_path=args.heads, calibration_path=args.calibration, window_chars=args.window_chars)
    loaded = time.perf_counter()
    verdicts = check_traces(monitor, traces, args.max_chars)
    scored = time.perf_counter()

    if args.json:
        for v in verdicts:
            print(json.dumps({**asdict(v), "missed": v.missed, "extra": v.extra}))
    else:
        print(f"scorer {monitor.scorer_version}; {len(traces)} traces, {sum(v.chunks for v in verdicts)} chunks")
        print(f"model load {loaded - began:.1f}s, scoring {scored - loaded:.1f}s\n")
        print(render_table(verdicts))
        print()
        print(render_summary(verdicts))
    failed = any(not (v.categories_ok and v.disposition_ok) for v in verdicts)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
