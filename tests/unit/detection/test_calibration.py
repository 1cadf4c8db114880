from __future__ import annotations

import numpy as np
import pytest

from cotwatch.detection.calibration import Calibration, CategoryCalibration, load_calibration
from cotwatch_training.calibration_fit import fit_calibration, fit_thresholds, save_calibration, threshold_at_fpr


def test_threshold_at_fpr_passes_at_most_target() -> None:
    scores = list(np.linspace(0, 1, 1000))
    t = threshold_at_fpr(scores, 0.01)
    assert np.mean(np.asarray(scores) >= t) <= 0.01
    with pytest.raises(ValueError):
        threshold_at_fpr([], 0.01)


def test_fit_thresholds_bounds_union_fpr() -> None:
    rng = np.random.default_rng(0)
    raw = {c: rng.normal(size=2000).tolist() for c in ("a", "b", "c", "d")}
    thresholds, union = fit_thresholds(raw, 0.01)
    flagged = np.zeros(2000, dtype=bool)
    for c, t in thresholds.items():
        flagged |= np.asarray(raw[c]) >= t
    assert flagged.mean() == pytest.approx(union)
    assert 0.005 <= union <= 0.01  # not the K-times-target a naive per-category fit gives


def test_fit_calibration_maps_threshold_to_half_and_bands_to_severity(tmp_path: object) -> None:
    rng = np.random.default_rng(1)
    raw = {"x": rng.normal(size=500).tolist(), "y": rng.normal(loc=2, size=500).tolist()}
    cal = fit_calibration(raw, target_fpr=0.02, version="t1", scorer_version="s", shrink=1.0)
    for c in ("x", "y"):
        t = cal.threshold(c)
        assert cal.calibrated(c, t) == pytest.approx(0.5)
        assert cal.severity(c, cal.calibrated(c, t - 0.01)) == 0
        assert cal.severity(c, cal.calibrated(c, t + 1e-6)) == 1
        assert cal.severity(c, cal.calibrated(c, t + 100)) == 4
        # The benign 90th percentile sits near a calibrated 0.1.
        q90 = float(np.quantile(raw[c], 0.9))
        assert cal.calibrated(c, q90) == pytest.approx(0.1, abs=0.01)


def test_tenant_override_changes_only_that_tenant(tmp_path: object) -> None:
    base = Calibration(
        version="v1",
        scorer_version="s",
        target_fpr=0.01,
        categories={"x": CategoryCalibration(threshold=1.0), "y": CategoryCalibration(threshold=2.0)},
    )
    raw = {"x": [0.0, 0.1, 0.2] * 100, "y": [0.0] * 300}
    cal = fit_calibration(raw, target_fpr=0.01, version="v2", scorer_version="s", base=base, tenant="acme")
    assert cal.threshold("x") == 1.0
    assert cal.threshold("x", "acme") != 1.0
    assert cal.threshold("y", "other") == 2.0
    assert cal.version == "v2"


def test_roundtrip_and_packaged_calibration_loads(tmp_path: pytest.TempPathFactory) -> None:
    packaged = load_calibration()
    assert packaged.target_fpr > 0 and packaged.categories
    path = tmp_path / "cal.json"  # type: ignore[operator]
    save_calibration(packaged, path)
    assert load_calibration(path) == packaged


def test_shared_threshold_by_default_and_union_fpr_held() -> None:
    rng = np.random.default_rng(2)
    raw = {"x": rng.normal(size=1000).tolist(), "y": rng.normal(loc=1, size=1000).tolist()}
    for shrink in (0.0, 0.5, 1.0):
        cal = fit_calibration(raw, target_fpr=0.01, version="t", scorer_version="s", shrink=shrink)
        flagged = (np.asarray(raw["x"]) >= cal.threshold("x")) | (np.asarray(raw["y"]) >= cal.threshold("y"))
        assert flagged.mean() <= 0.01
    shared = fit_calibration(raw, target_fpr=0.01, version="t", scorer_version="s")
    assert shared.threshold("x") == shared.threshold("y")
    with pytest.raises(ValueError):
        fit_calibration(raw, target_fpr=0.01, version="t", scorer_version="s", shrink=2.0)


@pytest.mark.parametrize("target", [0.1, 0.2])
def test_loose_targets_keep_scores_graded(target: float) -> None:
    # Given benign scores and a target so loose that the threshold is the 90th percentile or below
    rng = np.random.default_rng(4)
    raw = {"x": rng.normal(size=1000).tolist(), "y": rng.normal(size=1000).tolist()}
    cal = fit_calibration(raw, target_fpr=target, version="t", scorer_version="s")
    # Then the scale does not collapse: scores below and above the threshold stay distinct
    t = cal.threshold("x")
    below, above = cal.calibrated("x", t - 0.5), cal.calibrated("x", t + 0.5)
    assert 0.02 < below < 0.5 < above < 0.98
