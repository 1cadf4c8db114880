"""Assemble a :class:`TraceMonitor` from configuration: the one place that knows the default parts."""

from __future__ import annotations

from pathlib import Path

from cotwatch.detection.calibration import Calibration, load_calibration
from cotwatch.detection.embedding import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.scorer import ExemplarScorer
from cotwatch.detection.taxonomy import load_taxonomy


def build_monitor(
    *,
    embedding_model: str = DEFAULT_MODEL,
    embedding_backend: str = "torch",
    taxonomy_path: str | Path | None = None,
    calibration_path: str | Path | None = None,
    embedder: Embedder | None = None,
    calibration: Calibration | None = None,
) -> TraceMonitor:
    """The production monitor; tests pass their own ``embedder`` or ``calibration``."""
    embedder = embedder or SentenceTransformerEmbedder(embedding_model, backend=embedding_backend)
    taxonomy = load_taxonomy(taxonomy_path)
    scorer = ExemplarScorer(taxonomy, embedder)
    calibration = calibration or load_calibration(calibration_path)
    missing = set(scorer.categories) - set(calibration.categories)
    if missing:
        raise ValueError(f"calibration {calibration.version} lacks thresholds for {sorted(missing)}")
    return TraceMonitor(embedder, scorer, calibration)
