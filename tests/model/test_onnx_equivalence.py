"""The ONNX exports against the torch encoder on the scorer's own windows of the dev data.

The exports come from `export_onnx` into the export cache (skipped when already current, so only the first
run pays for them); the figures are cosines per window between each backend's vector and torch's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cotwatch.detection.embedding import DEFAULT_MODEL, Matrix, build_embedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.windowing import cut_windows

pytestmark = [pytest.mark.model, pytest.mark.devdata]
DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "dev.jsonl"


@pytest.fixture(scope="module")
def windows() -> list[str]:
    if not DEV.exists():
        pytest.skip(f"{DEV} absent (outside the workspace)")
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines()[::5] if line.strip()]
    return [w.text for row in rows for w in cut_windows(row["text"])]


@pytest.fixture(scope="module")
def torch_vectors(windows: list[str]) -> Matrix:
    pytest.importorskip("sentence_transformers")
    return build_embedder("torch", DEFAULT_MODEL).encode(windows)


def onnx_vectors(backend: str, windows: list[str]) -> Matrix:
    pytest.importorskip("onnxruntime")
    from cotwatch_training.onnx_export import export_onnx

    export_onnx(DEFAULT_MODEL, quantize="int8" if backend == "onnx-int8" else None)
    return build_embedder(backend, DEFAULT_MODEL).encode(windows)


def test_fp32_onnx_matches_torch_on_every_window(windows: list[str], torch_vectors: Matrix) -> None:
    # Given the dev data's windows encoded by torch and by the fp32 export
    vectors = onnx_vectors("onnx", windows)
    # Then every window's vectors agree to within float rounding
    cosine = np.sum(vectors * torch_vectors, axis=1)
    assert len(windows) > 200
    assert cosine.min() >= 0.9999, (cosine.min(), windows[int(cosine.argmin())])


def test_int8_onnx_stays_close_to_torch(windows: list[str], torch_vectors: Matrix) -> None:
    # Given the same windows through the int8 export
    vectors = onnx_vectors("onnx-int8", windows)
    cosine = np.sum(vectors * torch_vectors, axis=1)
    # Then the vectors are close on average and no window is far off
    assert cosine.mean() >= 0.99, cosine.mean()
    assert cosine.min() >= 0.97, (cosine.min(), windows[int(cosine.argmin())])


def test_int8_scores_the_shipped_examples_like_torch(windows: list[str]) -> None:
    # Given the shipped monitor on torch and on int8 (same heads and calibration)
    onnx_vectors("onnx-int8", windows[:1])
    torch_monitor = build_monitor(embedding_backend="torch")
    int8_monitor = build_monitor(embedding_backend="onnx-int8")
    texts = windows[:: max(1, len(windows) // 120)]
    # When both score the same windows
    a = np.array([x.unsafe_score for x in torch_monitor.assess_texts(texts)])
    b = np.array([x.unsafe_score for x in int8_monitor.assess_texts(texts)])
    # Then the scores rank the windows alike and the scorer version names the backend
    assert np.corrcoef(a, b)[0, 1] >= 0.98
    assert int8_monitor.scorer_version.endswith(":onnx-int8")
