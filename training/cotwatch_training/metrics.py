"""Detection metrics with numpy only, so ``cotwatch eval`` needs no extra packages."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

F64 = npt.NDArray[np.float64]


class Metrics(BaseModel):
    n_unsafe: int
    n_benign: int
    auroc: float | None
    auprc: float | None
    tpr_at_fpr_1pct: float | None
    tpr_at_fpr_0_1pct: float | None
    fpr_at_threshold: float | None
    tpr_at_threshold: float | None
    g_mean2: float | None
    ci95: tuple[float, float] | None


def auroc(pos: F64, neg: F64) -> float:
    """Probability a random unsafe text outscores a random benign one (ties count half)."""
    scores = np.concatenate([pos, neg])
    ordered = np.sort(scores)
    # Average (1-based) rank of each score over its ties.
    ranks = (np.searchsorted(ordered, scores, "left") + np.searchsorted(ordered, scores, "right") + 1) / 2.0
    rank_sum = ranks[: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def auprc(pos: F64, neg: F64) -> float:
    """Average precision with unsafe as the positive class."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="mergesort")
    labels = labels[order]
    hits = np.cumsum(labels)
    precision = hits / np.arange(1, len(labels) + 1)
    return float((precision * labels).sum() / max(len(pos), 1))


def tpr_at_fpr(pos: F64, neg: F64, target: float) -> float:
    """TPR at the lowest threshold whose benign pass rate stays at or below ``target`` (no interpolation)."""
    ordered = np.sort(neg)[::-1]
    allowed = math.floor(target * len(ordered))
    if allowed >= len(ordered):
        return 1.0
    cut = ordered[allowed]  # scores must beat the (allowed+1)-th highest benign score
    return float((pos > cut).mean())


def compute(
    pos_scores: list[float],
    neg_scores: list[float],
    pos_flagged: list[bool],
    neg_flagged: list[bool],
    *,
    bootstrap: int = 300,
    seed: int = 0,
) -> Metrics:
    pos = np.asarray(pos_scores, dtype=np.float64)
    neg = np.asarray(neg_scores, dtype=np.float64)
    tpr_t = float(np.mean(pos_flagged)) if pos_flagged else None
    fpr_t = float(np.mean(neg_flagged)) if neg_flagged else None
    g = tpr_t * (1.0 - fpr_t) if tpr_t is not None and fpr_t is not None else None
    if not len(pos) or not len(neg):
        return Metrics(
            n_unsafe=len(pos),
            n_benign=len(neg),
            auroc=None,
            auprc=None,
            tpr_at_fpr_1pct=None,
            tpr_at_fpr_0_1pct=None,
            fpr_at_threshold=fpr_t,
            tpr_at_threshold=tpr_t,
            g_mean2=g,
            ci95=None,
        )
    rng = np.random.default_rng(seed)
    boot = [auroc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(bootstrap)]
    return Metrics(
        n_unsafe=len(pos),
        n_benign=len(neg),
        auroc=round(auroc(pos, neg), 4),
        auprc=round(auprc(pos, neg), 4),
        tpr_at_fpr_1pct=round(tpr_at_fpr(pos, neg, 0.01), 4),
        tpr_at_fpr_0_1pct=round(tpr_at_fpr(pos, neg, 0.001), 4),
        fpr_at_threshold=None if fpr_t is None else round(fpr_t, 4),
        tpr_at_threshold=None if tpr_t is None else round(tpr_t, 4),
        g_mean2=None if g is None else round(g, 4),
        ci95=(round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)),
    )
