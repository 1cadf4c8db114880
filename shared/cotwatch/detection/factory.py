"""Assemble a :class:`TraceMonitor` from configuration: the one place that knows the default parts."""

from __future__ import annotations

from pathlib import Path

from cotwatch.detection.calibration import Calibration, load_calibration
from cotwatch.detection.embedding import DEFAULT_MODEL, Embedder, build_embedder
from cotwatch.detection.heads import HeadScorer, find_heads
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.scorer import ExemplarScorer, WindowScorer
from cotwatch.detection.taxonomy import load_taxonomy


def build_monitor(
    *,
    embedding_model: str = DEFAULT_MODEL,
    embedding_backend: str = "torch",
    embedding_onnx_path: str | Path | None = None,
    taxonomy_path: str | Path | None = None,
    calibration_path: str | Path | None = None,
    embedder: Embedder | None = None,
    calibration: Calibration | None = None,
    heads_path: str | Path | None = None,
    use_heads: bool = True,
    window_chars: int | None = None,
    hashed_tenants: frozenset[str] = frozenset(),
) -> TraceMonitor:
    """The production monitor; tests pass their own ``embedder`` or ``calibration``.

    The trained heads for the encoder are used when an artifact matches it (``heads_path`` or a built-in
    one); otherwise, e.g. with the unit tests' hashing embedder, scoring falls back to exemplar similarity.
    """
    embedder = embedder or build_embedder(embedding_backend, embedding_model, onnx_path=embedding_onnx_path)
    taxonomy = load_taxonomy(taxonomy_path)
    heads = find_heads(embedder.name, heads_path) if use_heads else None
    scorer: WindowScorer = HeadScorer(taxonomy, embedder, heads) if heads else ExemplarScorer(taxonomy, embedder)
    calibration = calibration or load_calibration(calibration_path)
    missing = set(scorer.categories) - set(calibration.categories)
    if missing:
        raise ValueError(f"calibration {calibration.version} lacks thresholds for {sorted(missing)}")
    if window_chars is not None:
        return TraceMonitor(embedder, scorer, calibration, window_chars=window_chars, hashed_tenants=hashed_tenants)
    return TraceMonitor(embedder, scorer, calibration, hashed_tenants=hashed_tenants)
