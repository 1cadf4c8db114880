"""Emerging patterns, the scorer's share: embedding summaries exactly once, suspicious windows redacted."""

from __future__ import annotations

import numpy as np

from cotwatch.adapters.memory import MemoryPatternSink
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.windowing import Window
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.patterns import (
    QUANT,
    SKETCH_DIMS,
    combine,
    cosine_distance,
    frechet_diagonal,
    sketch,
    summarise,
    suspicious_windows,
)
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk

from .conftest import CYBER_LINE, Adapters

SECRET = "AKIAIOSFODNN7EXAMPLE"
TEXT = f"First I look at the config. The key {SECRET} is there. Then I think about the request."


def _windows() -> list[Window]:
    return [Window(text=TEXT[:40], start=0, end=40), Window(text=TEXT[28:70], start=28, end=70)]


def test_suspicious_windows_are_those_no_category_passes_redacted() -> None:
    # Given a chunk of two windows: one just below every threshold, one over the cyber threshold
    chunk = TraceChunk(trace_id="t-1", model="m", text=TEXT)
    scores = np.array([[0.2, 0.45], [0.7, 0.1]])  # columns: cyber, bio_chem
    embeddings = np.eye(2, 8)
    # When the suspicious windows are picked
    found = suspicious_windows(chunk, _windows(), embeddings, scores, ["cyber", "bio_chem"], hashed=False)
    # Then only the first is one (the second matched a category), with its nearest category and embedding
    assert [(w.start, w.nearest, w.suspicion) for w in found] == [(0, "bio_chem", 0.45)]
    assert found[0].embedding == tuple(float(v) for v in embeddings[0])
    # And its excerpt is redacted with the whole chunk as context: the key does not survive
    second = suspicious_windows(chunk, _windows()[::-1], embeddings, scores[::-1], ["cyber", "bio_chem"], False)
    assert all(SECRET not in w.excerpt for w in (*found, *second))


def test_a_no_raw_text_tenants_windows_hold_no_text() -> None:
    chunk = TraceChunk(trace_id="t-1", tenant="strict", model="m", text=TEXT)
    scores = np.array([[0.4, 0.1], [0.36, 0.2]])
    found = suspicious_windows(chunk, _windows(), np.eye(2, 8), scores, ["cyber", "bio_chem"], hashed=True)
    assert len(found) == 2
    assert all(w.hashed and w.excerpt.startswith("sha256:") and "config" not in w.excerpt for w in found)


def test_summaries_add_exactly_and_measure_drift() -> None:
    # Given two chunks' window embeddings in one hour
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 16)) / 4, rng.normal(size=(3, 16)) / 4
    chunk = TraceChunk(trace_id="t-1", model="m", text="x")
    sa, sb = summarise(chunk, a), summarise(chunk, b)
    assert sa is not None and sb is not None and summarise(chunk, np.zeros((0, 16))) is None
    # When they are combined (in either order)
    ab, ba = combine([sa, sb]), combine([sb, sa])
    # Then the sums are exact integers, order-free, and the mean is that of all eight windows
    assert ab == ba and ab is not None and ab.windows == 8
    np.testing.assert_allclose(ab.mean(), np.vstack([a, b]).mean(axis=0), atol=1 / QUANT)
    np.testing.assert_allclose(ab.variance(), np.vstack([a, b]).var(axis=0), atol=1e-3)
    # And a window against itself has no drift, against a shifted one some
    assert cosine_distance(ab.mean(), ab.mean()) < 1e-9 and frechet_diagonal(ab, ab) < 1e-9
    shifted = summarise(chunk, np.vstack([a, b]) + 0.5)
    assert shifted is not None and cosine_distance(ab.mean(), shifted.mean()) > 0.1
    assert frechet_diagonal(ab, shifted) > 1.0


def test_wide_embeddings_are_summarised_in_a_sketch_that_keeps_drift() -> None:
    # Given MiniLM-wide (384) window embeddings around one common centre, as sentence embeddings are: a baseline
    # hour, a later hour like it, and hours moved a little and a lot from it
    for seed in range(5):
        rng = np.random.default_rng(seed)
        centre, away = rng.normal(size=384), rng.normal(size=384)
        hours = [centre + shift * away + rng.normal(size=(200, 384)) for shift in (0.0, 0.0, 0.5, 1.5)]
        _assert_sketched_drift_tracks_full_drift(hours)


def _assert_sketched_drift_tracks_full_drift(hours: list[np.ndarray]) -> None:
    chunk = TraceChunk(trace_id="t-1", model="m", text="x")
    # When they are summarised
    summaries = [summarise(chunk, e) for e in hours]
    assert all(s is not None and s.dims == SKETCH_DIMS for s in summaries)
    means = [s.mean() for s in summaries if s is not None]
    # Then the sketch is the same projection every time
    np.testing.assert_array_equal(sketch(hours[0]), sketch(hours[0].copy()))
    # And drift in it tracks drift in the full space: same order, within 60% of the full-space distance
    sketched = [cosine_distance(means[0], m) for m in means[1:]]
    full = [cosine_distance(hours[0].mean(axis=0), h.mean(axis=0)) for h in hours[1:]]
    assert sketched == sorted(sketched) and full == sorted(full)
    assert all(abs(s - f) <= 0.6 * f + 0.01 for s, f in zip(sketched, full, strict=True))


def test_the_scorer_adds_each_chunks_embedding_summary_once(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given the use case with a pattern sink
    sink = MemoryPatternSink()
    use_case = ScoreTraces(
        monitor,
        adapters.alerts,
        adapters.publisher,
        adapters.states,
        adapters.counters,
        adapters.dead_letters,
        patterns=sink,
    )
    chunk = TraceChunk(trace_id="t-1", model="m", text=CYBER_LINE + " " + "Then I add the two numbers. " * 6)
    record = KafkaRecord(topic="traces", partition=0, offset=0, key=b"t-1", value=chunk.model_dump_json().encode())
    # When its record is delivered twice
    for _ in range(2):
        use_case.process_batch(KafkaBatch(event_source="x", records=[record]))
    # Then the hour's summary holds the chunk's windows once
    (summary,) = adapters.counters.embedding_hour(chunk.created_at.strftime("%Y-%m-%dT%H"))
    windows = sum(n for k, n in adapters.counters.counts.items() if k.metric == "chunks")
    assert windows == 1 and summary.windows == monitor.assess_texts([chunk.text])[0].windows
    assert summary.windows >= 2 and summary.model == "m" and summary.tenant == chunk.tenant
    # And whatever windows were kept went to the sink under the record's id, once
    assert set(sink.chunks) <= {record.record_id}
