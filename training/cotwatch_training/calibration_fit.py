"""Fitting calibrations (training time): per-category thresholds held at a target false-positive rate.

The runtime only loads a calibration (``cotwatch.detection.calibration``); fitting and saving one happen in
``cotwatch calibrate`` and the training scripts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cotwatch.detection.calibration import DEFAULT_BANDS, Calibration, CategoryCalibration


def threshold_at_fpr(benign_scores: Sequence[float], target_fpr: float) -> float:
    """The smallest threshold at which at most ``target_fpr`` of benign scores lie at or above it."""
    if not benign_scores:
        raise ValueError("need benign scores to fit a threshold")
    ordered = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    allowed = math.floor(target_fpr * len(ordered))
    # Scores strictly above the (allowed+1)-th highest benign score pass; nudge just above it.
    return float(ordered[min(allowed, len(ordered) - 1)] + 1e-6)


def save_calibration(calibration: Calibration, path: str | Path) -> None:
    Path(path).write_text(json.dumps(calibration.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")


def fit_thresholds(
    benign_raw: Mapping[str, Sequence[float]], target_fpr: float, *, steps: int = 30
) -> tuple[dict[str, float], float]:
    """Per-category thresholds so that the share of benign texts flagged by ANY category is <= target.

    Fitting each category at ``target_fpr`` alone would let the union reach K times the target, so the
    per-category rate is searched between target/K and target. Returns (thresholds, benign union FPR).
    """
    cats = list(benign_raw)
    matrix = np.array([list(benign_raw[c]) for c in cats], dtype=np.float64)  # (K, n)
    if matrix.size == 0:
        raise ValueError("need benign scores to fit thresholds")

    def at(rate: float) -> tuple[dict[str, float], float]:
        ts = {c: threshold_at_fpr(matrix[i].tolist(), rate) for i, c in enumerate(cats)}
        flagged = np.zeros(matrix.shape[1], dtype=bool)
        for i, c in enumerate(cats):
            flagged |= matrix[i] >= ts[c]
        return ts, float(flagged.mean())

    lo, hi = target_fpr / max(len(cats), 1), target_fpr
    best = at(lo)
    for _ in range(steps):
        mid = (lo + hi) / 2
        cand = at(mid)
        if cand[1] <= target_fpr:
            best, lo = cand, mid
        else:
            hi = mid
    return best


def fit_calibration(
    benign_raw: Mapping[str, Sequence[float]],
    *,
    target_fpr: float,
    version: str,
    scorer_version: str,
    base: Calibration | None = None,
    tenant: str | None = None,
    shrink: float = 0.0,
) -> Calibration:
    """A calibration whose thresholds hold the benign union FPR at ``target_fpr``.

    ``shrink`` blends each category's own threshold with one shared threshold (fitted on the per-text
    maximum over categories): 1 = fully per-category, 0 = shared. Per-category thresholds fitted on a
    few benign sources move a lot when the benign text changes (leave-one-source-out on dev: shared 0.90
    AUROC / 2.4% FPR at threshold, per-category 0.87 / 14%), so the default is the shared threshold; a
    common offset then restores the union FPR target after blending.
    Scale: the benign 90th percentile maps to a calibrated 0.1 (blended the same way), so scores below
    the threshold still rank texts and the severity bands widen with the spread of the scores. Targets
    looser than 5% use a lower percentile (1 − 2 × target, at least the median), since at 10% the threshold *is* the 90th
    percentile and the scale would collapse, saturating every score to 0 or 1.
    With ``tenant``, only that tenant's overrides change and everything else is kept from ``base``.
    """
    if not 0.0 <= shrink <= 1.0:
        raise ValueError("shrink must lie in [0, 1]")
    cats = list(benign_raw)
    matrix = np.array([list(benign_raw[c]) for c in cats], dtype=np.float64)
    own, _ = fit_thresholds(benign_raw, target_fpr)
    top = matrix.max(axis=0)
    shared = threshold_at_fpr(top.tolist(), target_fpr)
    blended = np.array([shared + shrink * (own[c] - shared) for c in cats])

    def union(offset: float) -> float:
        return float((matrix >= (blended + offset)[:, None]).any(axis=0).mean())

    lo, hi = 0.0, float(np.ptp(matrix) + 1.0)
    if union(0.0) > target_fpr:
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if union(mid) <= target_fpr else (mid, hi)
        blended = blended + hi
    thresholds = {c: float(t) for c, t in zip(cats, blended, strict=True)}
    if tenant is not None:
        if base is None:
            raise ValueError("a tenant override needs a base calibration")
        tenants = {k: dict(v) for k, v in base.tenants.items()}
        tenants[tenant] = {c: _ceil6(t) for c, t in thresholds.items()}
        return base.model_copy(update={"tenants": tenants, "version": version})
    reference = min(0.9, max(0.5, 1.0 - 2.0 * target_fpr))
    shared_scale = max((shared - float(np.quantile(top, reference))) / math.log(9.0), 1e-3)
    categories: dict[str, CategoryCalibration] = {}
    for i, c in enumerate(cats):
        own_scale = max((own[c] - float(np.quantile(matrix[i], reference))) / math.log(9.0), 1e-3)
        scale = shared_scale + shrink * (own_scale - shared_scale)
        bands = base.categories[c].bands if base and c in base.categories else DEFAULT_BANDS
        categories[c] = CategoryCalibration(threshold=_ceil6(thresholds[c]), scale=round(scale, 6), bands=bands)
    return Calibration(
        version=version,
        scorer_version=scorer_version,
        target_fpr=target_fpr,
        categories=categories,
        tenants=dict(base.tenants) if base else {},
    )


def _ceil6(value: float) -> float:
    """Round up to 6 decimals: rounding down could let the benign score the threshold was set above pass."""
    return math.ceil(value * 1e6) / 1e6
