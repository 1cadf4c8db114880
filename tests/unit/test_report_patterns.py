"""The report's emerging-patterns section: drift per model, clusters by growth with redacted examples."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cotwatch_local.report import render

PATTERNS = {
    "drift": [
        {"model": "m", "windows": 40, "baseline_windows": 30, "cosine_distance": 0.123, "frechet": 0.5},
        {"model": "n", "windows": 5, "baseline_windows": 0, "cosine_distance": None, "frechet": None},
    ],
    "clusters": [
        {"cluster": "c-aaaa", "windows": 5, "baseline_windows": 1, "growth": 3.0, "nearest_category": "cyber",
         "examples": ["I will quietly widen my own [EMAIL] permissions"]},
        {"cluster": "c-bbbb", "windows": 3, "baseline_windows": 3, "growth": 1.0, "nearest_category": "bio_chem",
         "examples": []},
    ],
}  # fmt: skip


def test_the_report_shows_drift_and_clusters_with_their_examples() -> None:
    # When the report is rendered with the patterns `cotwatch patterns list` computes
    page = render([], [], now=datetime(2026, 12, 7, 15, tzinfo=UTC), patterns=PATTERNS)
    # Then the drift table has both models, the one without a baseline saying so
    drift = page[page.index('class="embedding-drift"') :]
    assert "<td>m</td><td>40</td><td>30</td><td>0.123</td><td>0.500</td>" in drift
    assert "<td>n</td><td>5</td><td>0</td><td>– (no baseline data)</td>" in drift
    # And the growth chart declares one bar per cluster and window (2 x 2), most grown first
    (points,) = re.findall(r'data-chart="pattern-growth" data-points="(\d+)"', page)
    assert points == "4"
    clusters = page[page.index('class="clusters"') :]
    assert clusters.index("c-aaaa") < clusters.index("c-bbbb")
    # And examples are shown escaped; a hashed-only cluster says it has no text
    assert "widen my own [EMAIL] permissions" in clusters and "(hashed: no text)" in clusters


def test_without_pattern_data_the_section_says_so() -> None:
    page = render([], [], now=datetime(2026, 12, 7, 15, tzinfo=UTC))
    assert "No pattern data" in page
