"""Properties of the scorer use case over any batch hypothesis can build (in-memory adapters, hashing embedder):
replaying a batch changes nothing, trace state never moves backwards, an alert's severity only rises."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk

from .conftest import BIO_LINE, CYBER_LINE, tiny_taxonomy

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."
HINT = "Files on the network share could be encrypted."
SENTENCES = [BENIGN, HINT, CYBER_LINE, BIO_LINE]
TRACES = ["t-1", "t-2", "t-3"]

EMBEDDER = HashingEmbedder()
# Graded bands so that more unsafe text reaches a higher severity; built once, examples reuse it.
MONITOR = TraceMonitor(
    EMBEDDER,
    ExemplarScorer(tiny_taxonomy(), EMBEDDER),
    Calibration(
        version="cal-prop",
        scorer_version="test",
        target_fpr=0.01,
        categories={
            c: CategoryCalibration(threshold=0.5, scale=0.05, bands=(0.5, 0.6, 0.75, 0.9))
            for c in ("cyber", "bio_chem")
        },
    ),
    window_chars=100,
)

chunk_texts = st.lists(st.sampled_from(SENTENCES), min_size=1, max_size=4).map(" ".join)


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[KafkaRecord]]:
    """Batches as Kafka would deliver a few traces: chunks in offset order per partition, then redeliveries
    of any earlier records (in any order) mixed into later batches, plus the odd malformed record."""
    records: list[KafkaRecord] = []
    next_seq = dict.fromkeys(TRACES, 0)
    for offset in range(draw(st.integers(min_value=1, max_value=8))):
        if draw(st.integers(0, 9)) == 0:
            records.append(KafkaRecord(topic="traces", partition=0, offset=offset, key=b"k", value=b"{not json"))
            continue
        trace_id = draw(st.sampled_from(TRACES))
        chunk = TraceChunk(trace_id=trace_id, seq=next_seq[trace_id], model="m", text=draw(chunk_texts))
        next_seq[trace_id] += 1
        value = chunk.model_dump_json().encode()
        records.append(KafkaRecord(topic="traces", partition=0, offset=offset, key=trace_id.encode(), value=value))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(records) - 1)), max_size=3)))
    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True) if records[a:b]]
    replayed: list[list[KafkaRecord]] = []
    for i, batch in enumerate(batches):
        earlier = [r for b in batches[:i] for r in b]
        redelivered = draw(st.lists(st.sampled_from(earlier), max_size=3)) if earlier else []
        replayed.append(sorted({r.offset: r for r in [*redelivered, *batch]}.values(), key=lambda r: r.offset))
    return replayed


class Stores:
    def __init__(self) -> None:
        self.alerts = MemoryAlertStore()
        self.publisher = MemoryPublisher()
        self.states = MemoryTraceStateStore()
        self.counters = MemoryCounterStore()
        self.dead_letters = MemoryDeadLetterSink()
        self.use_case = ScoreTraces(MONITOR, self.alerts, self.publisher, self.states, self.counters, self.dead_letters)

    def process(self, records: list[KafkaRecord]) -> None:
        report = self.use_case.process_batch(KafkaBatch(event_source="SelfManagedKafka", records=records))
        assert report.failed == []

    def snapshot(self) -> dict[str, Any]:
        return {
            "alerts": {k: dict(v) for k, v in self.alerts.items.items()},
            "published": len(self.publisher.published),
            "states": dict(self.states.states),
            "counts": dict(self.counters.counts),
            "markers": set(self.counters.markers),
            "dead_letters": {
                k: v.model_dump(exclude={"dead_lettered_at"}) for k, v in self.dead_letters.letters.items()
            },
        }


PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(deliveries())
def test_replaying_a_batch_changes_nothing(batches: list[list[KafkaRecord]]) -> None:
    # Given any sequence of batches, processed once
    stores = Stores()
    for batch in batches:
        stores.process(batch)
    before = stores.snapshot()

    # When every batch is delivered again, in order
    for batch in batches:
        stores.process(batch)

    # Then no alert, notification, count, state or dead letter differs
    assert stores.snapshot() == before


@PROPERTY_SETTINGS
@given(deliveries())
def test_trace_state_never_moves_backwards(batches: list[list[KafkaRecord]]) -> None:
    stores = Stores()
    seen: dict[str, int] = {}
    for batch in batches:
        stores.process(batch)
        for key, state in stores.states.states.items():
            # After every batch, each trace is at least as far as it was
            assert state.last_seq >= seen.get(key, -1)
            seen[key] = state.last_seq


@PROPERTY_SETTINGS
@given(deliveries())
def test_an_alerts_severity_only_rises(batches: list[list[KafkaRecord]]) -> None:
    stores = Stores()
    highest: dict[str, int] = {}
    for batch in batches:
        stores.process(batch)
        for alert_id, item in stores.alerts.items.items():
            assert item["severity"] >= highest.get(alert_id, 0)
            highest[alert_id] = item["severity"]
    # And what subscribers heard of each alert never went down either
    heard: dict[str, int] = {}
    for alert, _event in stores.publisher.published:
        assert alert.severity >= heard.get(alert.alert_id, 0)
        heard[alert.alert_id] = alert.severity
