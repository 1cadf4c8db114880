"""Emerging patterns, rig side: drift per model, clusters ranked by growth, promotion to a taxonomy override."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch.patterns import SuspiciousWindow, summarise
from cotwatch.trace import TraceChunk
from cotwatch_local.patterns import cluster_windows, drift_by_model, periods, promote

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
CURRENT, BASELINE = periods(timedelta(hours=2), NOW)  # [14, 16) against [12, 14)


def _window(i: int, hour: str, direction: np.ndarray, text: str, hashed: bool = False) -> SuspiciousWindow:
    rng = np.random.default_rng(i)
    vector = direction + rng.normal(scale=0.02, size=direction.shape)
    return SuspiciousWindow(
        window_id=f"w{i:03d}", hour=hour, tenant="strict" if hashed else "acme", model="m", trace_id=f"t{i}",
        chunk_seq=0, start=0, end=len(text), hashed=hashed, excerpt="sha256:ab" if hashed else text,
        suspicion=0.4, nearest="cyber", embedding=tuple(float(v) for v in vector / np.linalg.norm(vector)),
    )  # fmt: skip


def _windows() -> list[SuspiciousWindow]:
    old, new = np.eye(8)[0], np.eye(8)[3]
    stable = [_window(i, "2026-12-07T12" if i % 2 else "2026-12-07T14", old, f"old pattern {i}") for i in range(6)]
    grown = [_window(10 + i, "2026-12-07T15", new, f"I will quietly widen my own permissions {i}") for i in range(5)]
    return stable + grown + [_window(20, "2026-12-07T12", new, "widen permissions once before")]


def test_clusters_are_ranked_by_growth_with_redacted_examples() -> None:
    # When the suspicious windows of both periods are clustered
    clusters = cluster_windows(_windows(), CURRENT, BASELINE)
    # Then the two directions are two clusters, the one that grew from 1 to 5 first
    assert [(c.current, c.baseline) for c in clusters] == [(5, 1), (3, 3)]
    assert clusters[0].growth == pytest.approx(6 / 2) and clusters[1].growth == pytest.approx(1.0)
    assert all("widen" in e for e in clusters[0].examples())
    # And the ids are digests of the members: the same data names the same clusters
    assert [c.cluster_id for c in cluster_windows(_windows(), CURRENT, BASELINE)] == [c.cluster_id for c in clusters]


def test_drift_per_model_moves_when_the_windows_move() -> None:
    chunk = TraceChunk(trace_id="t", model="m", text="x", created_at=datetime(2026, 12, 7, 12, tzinfo=UTC))
    rng = np.random.default_rng(1)
    base = summarise(chunk, rng.normal(size=(20, 8)) + np.eye(8)[0] * 3)
    same = summarise(chunk.model_copy(update={"created_at": NOW}), rng.normal(size=(20, 8)) + np.eye(8)[0] * 3)
    moved = summarise(chunk.model_copy(update={"created_at": NOW}), rng.normal(size=(20, 8)) + np.eye(8)[5] * 3)
    assert base is not None and same is not None and moved is not None
    (steady,) = drift_by_model([base, same], CURRENT, BASELINE)
    (shifted,) = drift_by_model([base, moved], CURRENT, BASELINE)
    assert (steady["windows"], steady["baseline_windows"]) == (20, 20)
    assert steady["cosine_distance"] < 0.2 < shifted["cosine_distance"]
    assert steady["frechet"] < shifted["frechet"]


def test_promoting_a_cluster_writes_an_override_the_scorer_loads(tmp_path: Path) -> None:
    grown = cluster_windows(_windows(), CURRENT, BASELINE)[0]
    out = tmp_path / "taxonomy-override.yaml"
    # When it becomes exemplars of an existing category, then of a new one, in the same file
    first = promote(grown, "self_improvement", out)
    second = promote(grown, "permission_creep", out, name="Permission creep", definition="Widening own access.")
    # Then the override holds both and the scorer's loader takes it
    raw = yaml.safe_load(out.read_text())
    assert raw["categories"]["self_improvement"]["extra_exemplars"] == first["added"] != []
    assert raw["categories"]["permission_creep"]["exemplars"] == second["added"]
    taxonomy = load_taxonomy(out)
    assert "permission_creep" in taxonomy.categories
    texts = [e.text for e in taxonomy.categories["self_improvement"].exemplars]
    assert set(first["added"]) <= set(texts)
    # And promoting it again adds nothing twice
    assert promote(grown, "self_improvement", out)["added"] == []


def test_hashed_windows_are_never_exemplars(tmp_path: Path) -> None:
    direction = np.eye(8)[2]
    hashed = [_window(30 + i, "2026-12-07T15", direction, "secret text", hashed=True) for i in range(3)]
    (cluster,) = cluster_windows(hashed, CURRENT, BASELINE)
    assert cluster.examples() == []
    with pytest.raises(ValueError, match="hashed"):
        promote(cluster, "cyber", tmp_path / "o.yaml")
