"""Fail closed: a scorer that cannot load its calibration or taxonomy fails its cold start, loudly."""

from __future__ import annotations

import pytest

from cotwatch.detection.calibration import Calibration, CategoryCalibration
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.factory import build_monitor


def test_a_missing_calibration_file_fails_the_cold_start() -> None:
    # Given a calibration path that does not exist; When the monitor is built; Then it raises
    with pytest.raises((FileNotFoundError, OSError, ValueError)):
        build_monitor(embedder=HashingEmbedder(), use_heads=False, calibration_path="/nonexistent/calibration.json")


def test_a_calibration_without_every_category_fails_the_cold_start() -> None:
    # Given a calibration that lacks thresholds for most taxonomy categories
    partial = Calibration(
        version="partial",
        scorer_version="x",
        target_fpr=0.01,
        categories={"cyber": CategoryCalibration(threshold=0.5, scale=0.05)},
    )
    # When the monitor is built; Then it refuses to score with categories it has no threshold for
    with pytest.raises(ValueError, match="lacks thresholds"):
        build_monitor(embedder=HashingEmbedder(), use_heads=False, calibration=partial)


def test_a_missing_taxonomy_fails_the_cold_start() -> None:
    with pytest.raises((FileNotFoundError, OSError, ValueError)):
        build_monitor(embedder=HashingEmbedder(), use_heads=False, taxonomy_path="/nonexistent/taxonomy.yaml")
