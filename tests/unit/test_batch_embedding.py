"""Batching across records: one encoder call per Lambda batch, each distinct window once, longest first, and
the same scores as scoring every record in a batch of its own (in-memory adapters, hashing embedder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cotwatch.adapters.memory import (
    MemoryAlertStore,
    MemoryCounterStore,
    MemoryDeadLetterSink,
    MemoryPublisher,
    MemoryTraceStateStore,
)
from cotwatch.detection.embedding import HashingEmbedder, Matrix
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.scorer import ExemplarScorer
from cotwatch.detection.windowing import cut_windows
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import Outcome, ScoreTraces
from cotwatch.stages import STAGES, StageClock
from cotwatch.trace import TraceChunk

from .conftest import BIO_LINE, CYBER_LINE, tiny_calibration, tiny_taxonomy

BOILERPLATE = "Tool output: the command finished with exit status zero and printed nothing of note."
BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."


class RecordingEmbedder(HashingEmbedder):
    """The hashing embedder, remembering every ``encode`` call's texts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> Matrix:
        self.calls.append(list(texts))
        return super().encode(texts)


def _monitor(embedder: HashingEmbedder) -> TraceMonitor:
    # The taxonomy's exemplars are embedded at construction: the recorder is cleared after that.
    return TraceMonitor(embedder, ExemplarScorer(tiny_taxonomy(), embedder), tiny_calibration(), window_chars=100)


def _use_case(monitor: TraceMonitor) -> tuple[ScoreTraces, MemoryAlertStore]:
    alerts = MemoryAlertStore()
    use_case = ScoreTraces(
        monitor, alerts, MemoryPublisher(), MemoryTraceStateStore(), MemoryCounterStore(), MemoryDeadLetterSink()
    )
    return use_case, alerts


def _chunks() -> list[TraceChunk]:
    """Three traces, several chunks each, sharing boilerplate windows across records and traces."""
    texts = {
        "t-a": [f"{BOILERPLATE} {BENIGN}", f"{BENIGN} {CYBER_LINE}", BOILERPLATE],
        "t-b": [BOILERPLATE, f"{BIO_LINE} {BENIGN} {BENIGN}", f"{BENIGN} {BOILERPLATE}"],
        "t-c": [f"{BENIGN} {BENIGN} {BENIGN} {CYBER_LINE} {BIO_LINE}"],
    }
    return [
        TraceChunk(trace_id=trace, seq=seq, model="m", text=text)
        for trace, pieces in texts.items()
        for seq, text in enumerate(pieces)
    ]


def _records(chunks: list[TraceChunk]) -> list[KafkaRecord]:
    return [
        KafkaRecord(topic="traces", partition=0, offset=i, key=c.trace_id.encode(), value=c.model_dump_json().encode())
        for i, c in enumerate(chunks)
    ]


def _batch(records: list[KafkaRecord]) -> KafkaBatch:
    return KafkaBatch(event_source="SelfManagedKafka", records=records)


def _findings(report_records: Any) -> list[dict[str, Any]]:
    return [
        {c: f.model_dump() for c, f in r.assessment.findings.items()} | {"windows": r.assessment.windows}
        for r in report_records
    ]


def test_a_batch_of_many_records_is_embedded_in_one_call() -> None:
    # Given a batch of seven chunks from three traces
    embedder = RecordingEmbedder()
    use_case, _ = _use_case(_monitor(embedder))
    embedder.calls.clear()
    # When it is processed
    report = use_case.process_batch(_batch(_records(_chunks())))
    # Then every record is scored and the encoder was called exactly once for all their windows
    assert [r.outcome for r in report.records] == [Outcome.SCORED] * 7
    assert len(embedder.calls) == 1
    assert report.windows_scored >= 7


def test_identical_windows_are_embedded_once_longest_first() -> None:
    # Given chunks whose windows repeat (the same tool output in several records and traces)
    embedder = RecordingEmbedder()
    monitor = _monitor(embedder)
    embedder.calls.clear()
    chunks = _chunks()
    # When the monitor assesses them in one batch
    results = monitor.assess_batch(chunks, {})
    # Then the encoder saw each distinct window text once, sorted by length (longest first)
    [sent] = embedder.calls
    assert len(sent) == len(set(sent))
    windows = sum(r.assessment.windows for r in results)
    assert len(sent) < windows  # the repeats were not re-embedded
    assert [len(t) for t in sent] == sorted((len(t) for t in sent), reverse=True)
    assert BOILERPLATE in sent


def test_batched_scores_equal_scoring_each_record_on_its_own() -> None:
    # Given the same records, scored once as one batch and once one record per batch (fresh stores each)
    chunks = _chunks()
    batched, batched_alerts = _use_case(_monitor(HashingEmbedder()))
    alone, alone_alerts = _use_case(_monitor(HashingEmbedder()))
    # When both run
    together = batched.process_batch(_batch(_records(chunks))).records
    singles = [alone.process_batch(_batch([record])).records[0] for record in _records(chunks)]
    # Then every record's findings (scores, severities, evidence) and state are identical, and so are the alerts
    assert _findings(together) == _findings(singles)
    assert [r.state for r in together] == [r.state for r in singles]
    assert batched_alerts.items.keys() == alone_alerts.items.keys() and batched_alerts.items


def test_windows_of_a_chunk_line_up_with_their_own_embeddings() -> None:
    # Given one chunk alone and the same chunk amid others in a batch
    monitor = _monitor(HashingEmbedder())
    chunk = TraceChunk(trace_id="solo", model="m", text=f"{BENIGN} {CYBER_LINE} {BOILERPLATE}")
    others = [c for c in _chunks() if c.trace_id != "t-a"]
    # When assessed both ways
    [(alone)] = monitor.assess_batch([chunk], {})
    amid = monitor.assess_batch([*others, chunk], {})[-1]
    # Then its assessment does not depend on its neighbours
    assert alone.assessment == amid.assessment
    assert alone.assessment.windows == len(cut_windows(chunk.text, target_chars=100))


def test_stage_clock_counts_nested_time_once() -> None:
    # Given a clock on scripted times: persist opens at 0, publish runs inside it from 1 to 4, persist ends at 10
    ticks = iter([0.0, 1.0, 4.0, 10.0])
    clock = StageClock(now=lambda: next(ticks))
    with clock.stage("persist"), clock.stage("publish"):
        pass
    # Then publish has its 3 s and persist only its own 7 s
    assert clock.totals() == {"persist": 7.0, "publish": 3.0}
    clock.reset()
    assert clock.totals() == {}
    assert set(STAGES) == {"decode", "window", "embed", "heads_cues", "persist", "publish"}
