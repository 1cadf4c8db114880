"""``cotwatch bench --json`` in a tiny configuration on the session's moto server: every figure is there and is
a positive, finite number (or null with its reason). The values are the benchmark's business, not a test's."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

REQUIRED = (
    "pipeline_windows_per_s",
    "pipeline_tokens_per_s",
    "pipeline_chunks_per_s",
    "raw_encode_windows_per_s",
    "pipeline_vs_raw_ratio",
    "cold_start_s",
    "cold_start_init_s",
    "peak_rss_mb",
    "rss_first_record_mb",
    "usd_per_million_chunks",
)
STAGES = ("decode", "window", "tokenize", "embed", "heads_cues", "persist", "publish", "other")


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_bench_prints_every_figure_as_one_json_object(moto_endpoint: str) -> None:
    # Given a two-trace workload, one round, a two-size sweep and no broker (latency skipped)
    command = [
        sys.executable, "-m", "cotwatch_local.cli", "bench", "--json", "--traces", "2", "--batch-size", "5",
        "--rounds", "1", "--sweep", "1,4", "--sweep-chunks", "4", "--no-latency", "--endpoint-url", moto_endpoint,
    ]  # fmt: skip
    # When the benchmark runs
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False
    )
    # Then stdout is exactly one JSON object holding every figure
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = done.stdout.strip().splitlines()
    result = json.loads(line)
    for key in REQUIRED:
        assert _positive(result[key]), (key, result[key])
    assert set(result["stages_s"]) == set(STAGES)
    assert all(math.isfinite(v) and v >= 0 for v in result["stages_s"].values())
    assert result["stages_s"]["embed"] > 0
    # The ONNX ratio is a measured number, or null with the reason it could not be measured
    if result["onnx_vs_torch_ratio"] is None:
        assert result["onnx_unavailable_reason"]
    else:
        assert _positive(result["onnx_vs_torch_ratio"])
    assert set(result["onnx_vs_torch_by_variant"]) == {"onnx", "onnx-int8"}
    assert result["onnx_variant"] in ("onnx", "onnx-int8")
    # The raw baseline is the scorer's own backend, and the RSS process holds only what that backend needs
    assert result["embedding_backend"] in ("torch", "onnx", "onnx-int8")
    modules = result["rss_process_modules"]
    assert modules["onnxruntime" if result["embedding_backend"] != "torch" else "torch"] is True
    if result["embedding_backend"] != "torch":
        assert modules["torch"] is False and modules["sentence_transformers"] is False
    # The extra pass on the touched-rollback moto server and the counters-transaction probe
    compare = result["moto_touched_rollback"]
    assert _positive(compare["pipeline_vs_raw_ratio"]) and compare["stages_s"]["persist"] > 0
    probe = result["counters_transaction_probe"]
    assert _positive(probe["with_embedding_summary_ms"]) and _positive(probe["without_embedding_summary_ms"])
    assert 0 <= result["persist_moto_expression_s_est"] <= result["stages_s"]["persist"]
    assert _positive(result["pipeline_vs_raw_ratio_without_moto_expression_est"])
    # Latency was skipped: null, never a made-up figure
    assert result["latency_p50_s"] is None and result["latency_p95_s"] is None
    assert [row["batch_size"] for row in result["by_batch_size"]] == [1, 4]
    assert all(_positive(row["windows_per_s"]) for row in result["by_batch_size"])
    # The handler really wrote to moto: counters for every chunk, and the workload's figures add up
    assert result["written"]["counter_items"] > 0
    workload = result["workload"]
    assert workload["chunks"] >= workload["traces"] == 2 and workload["windows"] >= workload["chunks"]
