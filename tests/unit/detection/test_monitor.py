from __future__ import annotations

import random

from detection_helpers import flat_calibration

from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.models import ChunkAssessment, Disposition, TraceState
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch.trace import Segment, TraceChunk, split_text
from cotwatch_training.synth import benign_trace, embed_in_trace

UNSAFE = load_taxonomy().categories["cyber"].exemplars[0].text  # an exemplar: the hashing embedder matches it


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=512)
        self.calls = 0

    def encode(self, texts):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().encode(texts)


def test_unsafe_paragraph_in_long_trace_is_flagged_with_exact_evidence(monitor: TraceMonitor) -> None:
    rng = random.Random(3)
    host = benign_trace(rng, min_chars=8000, max_chars=9000)
    text, start, end = embed_in_trace(host, UNSAFE, rng)
    (assessment,) = monitor.assess_texts([text])
    finding = assessment.findings["cyber"]
    assert finding.flagged and assessment.top_category == "cyber"
    best = finding.evidence[0]
    assert best.start <= start and best.end >= end
    assert UNSAFE[:40] in best.excerpt
    assert finding.threshold == flat_calibration().threshold("cyber")
    assert assessment.scorer_version == monitor.scorer_version
    (quiet,) = monitor.assess_texts([host])
    assert quiet.unsafe_score < assessment.unsafe_score


def test_streamed_chunks_keep_state_and_offsets(monitor: TraceMonitor) -> None:
    rng = random.Random(4)
    text, start, _end = embed_in_trace(benign_trace(rng, 6000, 7000), UNSAFE, rng)
    pieces = split_text(text, 1500)
    states: dict[str, TraceState] = {}
    offset = 0
    hit = False
    for seq, piece in enumerate(pieces):
        chunk = TraceChunk(trace_id="t1", seq=seq, model="m", text=piece)
        (result,) = monitor.assess_batch([chunk], states)
        states = {chunk.trace_key: result.state}
        for ev in result.assessment.findings["cyber"].evidence:
            assert ev.chunk_seq == seq
            if result.assessment.findings["cyber"].flagged and offset + ev.start <= start < offset + ev.end:
                hit = True
        offset += len(piece)
    assert hit
    state = states["default#t1"]
    assert state.last_seq == len(pieces) - 1
    assert state.peak["cyber"] >= 0.5
    assert len(state.model_dump_json()) < 4096


def test_one_encoder_call_per_batch() -> None:
    emb = CountingEmbedder()
    mon = build_monitor(embedder=emb, calibration=flat_calibration())
    emb.calls = 0
    chunks = [TraceChunk(trace_id=f"t{i}", model="m", text=f"Step {i}. Add the numbers. Done.") for i in range(5)]
    results = mon.assess_batch(chunks, {})
    assert emb.calls == 1 and len(results) == 5


def test_refusal_lowers_and_compliance_raises_severity(monitor: TraceMonitor) -> None:
    refused, complied = monitor.assess_texts(
        [
            f"{UNSAFE} But that would hurt people, so I must decline.",
            f"{UNSAFE} Sure, here's how: step 1 is the setup.",
        ]
    )
    assert refused.disposition == Disposition.REFUSED
    assert complied.disposition == Disposition.COMPLIED
    assert complied.findings["cyber"].severity >= refused.findings["cyber"].severity


def test_answer_segment_refusal_carries_into_state(monitor: TraceMonitor) -> None:
    r1 = TraceChunk(trace_id="t", seq=0, model="m", text=UNSAFE)
    a1 = TraceChunk(
        trace_id="t", seq=1, model="m", segment=Segment.ANSWER, text="I'm sorry, but I can't help with that."
    )
    results = monitor.assess_batch([r1, a1], {})
    assert results[1].assessment.disposition == Disposition.REFUSED
    assert results[1].state.refusal_seen


def test_assessment_json_roundtrip(monitor: TraceMonitor) -> None:
    (a,) = monitor.assess_texts([UNSAFE])
    assert ChunkAssessment.model_validate_json(a.model_dump_json()) == a
