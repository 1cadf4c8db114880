"""Per-category thresholds fitted to a target false-positive rate, with per-tenant overrides.

A raw score r is mapped to a calibrated score ``sigmoid((r - threshold) / scale)`` so 0.5 sits on the
threshold in every category and scores are comparable across categories. Severity bands are cut points
on the calibrated score.
"""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

BUILTIN = "calibration.json"
DEFAULT_BANDS = (0.5, 0.65, 0.8, 0.92)


class CategoryCalibration(BaseModel):
    model_config = ConfigDict(frozen=True)

    threshold: float
    scale: float = Field(default=0.05, gt=0)
    bands: tuple[float, float, float, float] = DEFAULT_BANDS


class Calibration(BaseModel):
    """The content of ``calibration.json``: versioned so every alert can say what it was judged by."""

    model_config = ConfigDict(frozen=True)

    version: str
    scorer_version: str
    target_fpr: float
    categories: dict[str, CategoryCalibration]
    tenants: dict[str, dict[str, float]] = Field(default_factory=dict, description="tenant -> category -> threshold")

    def threshold(self, category: str, tenant: str = "default") -> float:
        override = self.tenants.get(tenant, {}).get(category)
        return override if override is not None else self.categories[category].threshold

    def calibrated(self, category: str, raw: float, tenant: str = "default") -> float:
        cal = self.categories[category]
        z = (raw - self.threshold(category, tenant)) / cal.scale
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def severity(self, category: str, score: float) -> int:
        """0 below the threshold, else 1..4 by band."""
        return sum(score >= cut for cut in self.categories[category].bands)


def load_calibration(path: str | Path | None = None) -> Calibration:
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = (importlib.resources.files("cotwatch") / "data" / BUILTIN).read_text(encoding="utf-8")
    return Calibration.model_validate_json(text)
