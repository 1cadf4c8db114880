"""ONNX backends against torch: encode throughput on the same windows in the same run, and embedding agreement.

    nice -n 10 .venv/bin/python benchmarks/onnx_backend.py --data ../shared/data/dev.jsonl --json

Windows are the scorer's own (``cut_windows`` of every dev text). Each round encodes all of them with each
backend in turn (torch, onnx, onnx-int8), so load from other processes falls on every backend alike; the
figure per backend is its median over rounds, and the ratios are what count on a shared machine. Cold start
(import, load, first encode) and peak RSS come from a fresh interpreter per backend. Needs the
exports (`cotwatch export-onnx`, `cotwatch export-onnx --quantize int8`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cotwatch.detection.embedding import DEFAULT_MODEL, Embedder, build_embedder
from cotwatch.detection.windowing import cut_windows

BACKENDS = ("torch", "onnx", "onnx-int8")


def load_windows(data: Path, limit: int) -> list[str]:
    windows: list[str] = []
    for line in data.read_text(encoding="utf-8").splitlines():
        if line.strip():
            windows.extend(w.text for w in cut_windows(json.loads(line)["text"]))
    return windows[:limit]


def throughput(embedder: Embedder, windows: list[str]) -> float:
    start = time.perf_counter()
    embedder.encode(windows)
    return len(windows) / (time.perf_counter() - start)


# A fresh interpreter per backend: imports, model load and the first encode, as a Lambda cold start pays them.
_COLD = """
import json, resource, sys, time
start = time.perf_counter()
from cotwatch.detection.embedding import build_embedder
build_embedder(sys.argv[1]).encode(["the first window of a trace"])
print(json.dumps({"cold_start_s": round(time.perf_counter() - start, 3), "torch_imported": "torch" in sys.modules,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def cold_start(backend: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _COLD, backend], capture_output=True, text=True, check=True)
    figures: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dev.jsonl"))
    parser.add_argument("--windows", type=int, default=512, help="windows per round (the first N)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--threads", type=int, default=None, help="compute threads per backend (default: each one's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    windows = load_windows(args.data, args.windows)
    result: dict[str, object] = {
        "windows": len(windows),
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "threads": args.threads or "default",
    }
    result["cold_start"] = {b: cold_start(b) for b in BACKENDS}
    for batch_size in args.batch_sizes:
        embedders = {b: build_embedder(b, DEFAULT_MODEL, batch_size=batch_size, threads=args.threads) for b in BACKENDS}
        vectors = {b: e.encode(windows) for b, e in embedders.items()}  # also the warm-up
        rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for _ in range(args.rounds):
            for b, e in embedders.items():
                rates[b].append(throughput(e, windows))
        median = {b: statistics.median(r) for b, r in rates.items()}
        figures: dict[str, float] = {f"{b}_windows_per_s": round(v, 2) for b, v in median.items()}
        for b in ("onnx", "onnx-int8"):
            cosine = np.sum(vectors[b] * vectors["torch"], axis=1)
            key = b.replace("-", "_")
            figures[f"{key}_vs_torch_ratio"] = round(median[b] / median["torch"], 3)
            figures[f"{key}_cosine_min"] = round(float(cosine.min()), 6)
            figures[f"{key}_cosine_mean"] = round(float(cosine.mean()), 6)
        result[f"batch_{batch_size}"] = figures
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
