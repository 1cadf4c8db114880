"""Helpers shared by the detection unit tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from cotwatch.detection.calibration import Calibration, CategoryCalibration
from cotwatch.detection.taxonomy import load_taxonomy


def flat_calibration(threshold: float = 0.35, scale: float = 0.05) -> Calibration:
    cats = load_taxonomy().category_ids
    return Calibration(
        version="test",
        scorer_version="test",
        target_fpr=0.01,
        categories={c: CategoryCalibration(threshold=threshold, scale=scale) for c in cats},
    )
