"""Shared fixtures: every unit test uses the hashing embedder, never the real model."""

from __future__ import annotations

import pytest
from detection_helpers import flat_calibration

from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.monitor import TraceMonitor


@pytest.fixture(scope="session")
def embedder() -> HashingEmbedder:
    return HashingEmbedder(dim=512)


@pytest.fixture()
def monitor(embedder: HashingEmbedder) -> TraceMonitor:
    return build_monitor(embedder=embedder, calibration=flat_calibration())
