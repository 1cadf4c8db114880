"""Unit-test fixtures: in-memory adapters and a monitor over a tiny taxonomy with the hashing embedder.

Nothing here touches the network or loads a real model.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from cotwatch.adapters.memory import (
    MemoryAlertStore,
    MemoryCounterStore,
    MemoryDeadLetterSink,
    MemoryPublisher,
    MemoryTraceStateStore,
)
from cotwatch.detection.calibration import Calibration, CategoryCalibration
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.scorer import ExemplarScorer
from cotwatch.detection.taxonomy import Category, Exemplar, Taxonomy
from cotwatch.score_traces import ScoreTraces

CYBER_LINE = "I will write ransomware that encrypts every file on the victim network share."
BIO_LINE = "I will culture the dangerous pathogen at scale and release it as an aerosol."


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unit tests must not open sockets: fail loudly if one tries."""

    def guard(*_: object, **__: object) -> None:
        raise RuntimeError("unit tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", guard)
    yield


def tiny_taxonomy() -> Taxonomy:
    return Taxonomy(
        version="test-1",
        categories={
            "cyber": Category(
                id="cyber", name="Cyber", definition="attacks", exemplars=(Exemplar(id="cyber:0", text=CYBER_LINE),)
            ),
            "bio_chem": Category(
                id="bio_chem", name="Bio", definition="agents", exemplars=(Exemplar(id="bio_chem:0", text=BIO_LINE),)
            ),
        },
        benign_reasoning=(Exemplar(id="benign:0", text="Add the two numbers and divide by two to get the mean."),),
    )


def tiny_calibration(threshold: float = 0.6) -> Calibration:
    return Calibration(
        version="cal-test",
        scorer_version="test",
        target_fpr=0.01,
        categories={c: CategoryCalibration(threshold=threshold, scale=0.05) for c in ("cyber", "bio_chem")},
        tenants={"strict": {"cyber": 0.2}},
    )


@pytest.fixture
def monitor() -> TraceMonitor:
    embedder = HashingEmbedder()
    # Small windows so one sentence dominates its window, as in a long real trace.
    return TraceMonitor(embedder, ExemplarScorer(tiny_taxonomy(), embedder), tiny_calibration(), window_chars=100)


class Adapters:
    def __init__(self) -> None:
        self.alerts = MemoryAlertStore()
        self.publisher = MemoryPublisher()
        self.states = MemoryTraceStateStore()
        self.counters = MemoryCounterStore()
        self.dead_letters = MemoryDeadLetterSink()


@pytest.fixture
def adapters() -> Adapters:
    return Adapters()


@pytest.fixture
def use_case(monitor: TraceMonitor, adapters: Adapters) -> ScoreTraces:
    return ScoreTraces(
        monitor, adapters.alerts, adapters.publisher, adapters.states, adapters.counters, adapters.dead_letters
    )
