"""The trace monitor: windows every chunk of a batch, embeds all windows in one call, scores them per
category, and folds the result into per-trace state so signals spread across chunks still add up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cotwatch import stages
from cotwatch.detection.calibration import Calibration
from cotwatch.detection.disposition import judge_disposition
from cotwatch.detection.embedding import Embedder, Matrix
from cotwatch.detection.models import (
    CategoryFinding,
    ChunkAssessment,
    Disposition,
    Evidence,
    TraceState,
)
from cotwatch.detection.scorer import WindowScorer, WindowScores
from cotwatch.detection.windowing import WINDOW_CHARS, Window, cut_windows, tail_of
from cotwatch.redaction import find_sensitive, fingerprint, window_excerpt
from cotwatch.trace import Segment, TraceChunk

WATCH_LEVEL = 0.35  # calibrated score at which a window counts as a near hit and may become evidence
REPEAT_AFTER = 2  # near hits beyond this many, across the trace, raise the category's score
REPEAT_BONUS = 0.4  # in units of the category's calibration scale, per extra near hit
REPEAT_CAP = 5


@dataclass(frozen=True)
class ChunkResult:
    chunk: TraceChunk
    assessment: ChunkAssessment
    state: TraceState
    # For emerging patterns (cotwatch.patterns): the chunk's windows, their embeddings and calibrated scores
    # per category (rows: windows, columns: ``categories``); empty for a chunk without windows.
    windows: tuple[Window, ...] = ()
    embeddings: Matrix | None = None
    window_scores: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True)
class _Planned:
    chunk: TraceChunk
    windows: list[Window]
    first_row: int


class TraceMonitor:
    def __init__(
        self,
        embedder: Embedder,
        scorer: WindowScorer,
        calibration: Calibration,
        *,
        window_chars: int = WINDOW_CHARS,
        evidence_per_category: int = 3,
        hashed_tenants: frozenset[str] = frozenset(),
    ) -> None:
        """``hashed_tenants``: tenants whose evidence holds no text at all, only the window's offsets and the
        sha256 of its text (:func:`cotwatch.redaction.fingerprint`) in place of the excerpt."""
        self._hashed_tenants = hashed_tenants
        self._embedder = embedder
        self._scorer = scorer
        self._calibration = calibration
        self._window_chars = window_chars
        self._evidence_k = evidence_per_category

    @property
    def scorer_version(self) -> str:
        return self._scorer.version

    @property
    def hashed_tenants(self) -> frozenset[str]:
        """Tenants whose stored windows hold no text (their sha256 instead)."""
        return self._hashed_tenants

    @property
    def categories(self) -> list[str]:
        return self._scorer.categories

    def assess_batch(self, chunks: Sequence[TraceChunk], states: Mapping[str, TraceState]) -> list[ChunkResult]:
        """Assess chunks in the given order (per trace, ascending ``seq``), starting from ``states``."""
        running = dict(states)
        planned: list[_Planned] = []
        texts: list[str] = []
        tails: dict[str, tuple[int, Segment, str]] = {
            key: (s.last_seq, Segment.REASONING, s.tail) for key, s in states.items()
        }
        clock = stages.CLOCK
        with clock.stage(stages.WINDOW):
            for chunk in chunks:
                last_seq, segment, tail = tails.get(chunk.trace_key, (-1, chunk.segment, ""))
                carried = tail if last_seq == chunk.seq - 1 and segment == chunk.segment else ""
                windows = cut_windows(chunk.text, target_chars=self._window_chars, tail=carried)
                planned.append(_Planned(chunk, windows, len(texts)))
                texts.extend(w.text for w in windows)
                tails[chunk.trace_key] = (chunk.seq, chunk.segment, tail_of(chunk.text))
        with clock.stage(stages.EMBED):
            embeddings = self._encode_unique(texts) if texts else None
        with clock.stage(stages.HEADS_CUES):
            scores = self._scorer.score(embeddings, texts) if embeddings is not None else None
            results: list[ChunkResult] = []
            for plan in planned:
                key = plan.chunk.trace_key
                state = running.get(key) or TraceState(trace_key=key)
                assessment, state = self._assess_chunk(plan, scores, state)
                running[key] = state
                rows = slice(plan.first_row, plan.first_row + len(plan.windows))
                results.append(
                    ChunkResult(
                        plan.chunk,
                        assessment,
                        state,
                        windows=tuple(plan.windows),
                        embeddings=embeddings[rows] if embeddings is not None and plan.windows else None,
                        window_scores=self._calibrated_windows(plan, scores) if plan.windows else None,
                    )
                )
        return results

    def _calibrated_windows(self, plan: _Planned, scores: WindowScores | None) -> npt.NDArray[np.float64]:
        """Each window's calibrated score per category, before any trace-level repeat bonus."""
        n, tenant, cal = len(plan.windows), plan.chunk.tenant, self._calibration
        out = np.zeros((n, len(self._scorer.categories)), dtype=np.float64)
        if scores is not None:
            for c, category in enumerate(self._scorer.categories):
                for i, raw in enumerate(scores.raw[plan.first_row : plan.first_row + n, c]):
                    out[i, c] = cal.calibrated(category, float(raw), tenant)
        return out

    def _encode_unique(self, texts: Sequence[str]) -> Matrix:
        """One encoder call for the whole batch (the expensive step amortises best this way), each distinct
        window once (boilerplate, retried sends and repeated tool output recur), longest first, so batches of
        similar length pad little whatever the encoder does itself. Rows come back in ``texts`` order."""
        row_of: dict[str, int] = {}
        rows = [row_of.setdefault(text, len(row_of)) for text in texts]
        unique = list(row_of)
        order = sorted(range(len(unique)), key=lambda i: -len(unique[i]))
        encoded = self._embedder.encode([unique[i] for i in order])
        if encoded.shape[0] != len(unique):
            raise ValueError(f"encoder returned {encoded.shape[0]} vectors for {len(unique)} texts")
        by_unique = np.empty_like(encoded)
        by_unique[np.asarray(order)] = encoded
        out: Matrix = by_unique[np.asarray(rows)]
        return out

    def assess_texts(self, texts: Sequence[str], segment: Segment = Segment.REASONING) -> list[ChunkAssessment]:
        """Score stand-alone texts as one-chunk traces, through the same path as the Lambda handler."""
        chunks = [
            TraceChunk(trace_id=f"text-{i}", model="unknown", segment=segment, text=t, final=True)
            for i, t in enumerate(texts)
        ]
        return [r.assessment for r in self.assess_batch(chunks, {})]

    def _assess_chunk(
        self, plan: _Planned, scores: WindowScores | None, state: TraceState
    ) -> tuple[ChunkAssessment, TraceState]:
        chunk = plan.chunk
        n = len(plan.windows)
        disposition = judge_disposition(
            reasoning=chunk.text if chunk.segment != Segment.ANSWER else "",
            answer=chunk.text if chunk.segment == Segment.ANSWER else "",
        )
        if disposition == Disposition.UNCLEAR and state.refusal_seen:
            disposition = Disposition.REFUSED
        peak = dict(state.peak)
        near_hits = dict(state.near_hits)
        findings: dict[str, CategoryFinding] = {}
        for c, category in enumerate(self._scorer.categories):
            raw = (
                scores.raw[plan.first_row : plan.first_row + n, c]
                if scores is not None and n
                else np.zeros(0, dtype=np.float64)
            )
            findings[category] = self._finding(plan, scores, c, category, raw, near_hits, disposition)
            peak[category] = max(peak.get(category, 0.0), findings[category].score)
        new_state = TraceState(
            trace_key=state.trace_key,
            last_seq=max(state.last_seq, chunk.seq),
            tail=tail_of(chunk.text),
            peak=peak,
            near_hits=near_hits,
            refusal_seen=state.refusal_seen or disposition == Disposition.REFUSED,
        )
        assessment = ChunkAssessment(
            scorer_version=self._scorer.version,
            calibration_version=self._calibration.version,
            windows=n,
            disposition=disposition,
            findings=findings,
        )
        return assessment, new_state

    def _finding(
        self,
        plan: _Planned,
        scores: WindowScores | None,
        c: int,
        category: str,
        raw: np.ndarray,
        near_hits: dict[str, int],
        disposition: Disposition,
    ) -> CategoryFinding:
        cal = self._calibration
        tenant = plan.chunk.tenant
        threshold = cal.threshold(category, tenant)
        if raw.size == 0:
            return CategoryFinding(category=category, score=0.0, raw_score=0.0, threshold=threshold, severity=0)
        calibrated = np.array([cal.calibrated(category, float(r), tenant) for r in raw])
        new_near = int((calibrated >= WATCH_LEVEL).sum())
        total_near = near_hits.get(category, 0) + new_near
        near_hits[category] = total_near
        best = float(raw.max())
        if new_near:
            extra = min(max(total_near - REPEAT_AFTER, 0), REPEAT_CAP)
            best += extra * REPEAT_BONUS * cal.categories[category].scale
        score = cal.calibrated(category, best, tenant)
        severity = cal.severity(category, score)
        if severity and disposition == Disposition.REFUSED:
            severity = max(1, severity - 1)
        elif severity and disposition == Disposition.COMPLIED:
            severity = min(4, severity + 1)
        order = np.argsort(-raw)[: self._evidence_k]
        # Sensitive spans of the whole chunk: a window alone can lack the context that marks a secret.
        hashed = tenant in self._hashed_tenants
        wanted = not hashed and any(calibrated[i] >= WATCH_LEVEL for i in order)
        spans = find_sensitive(plan.chunk.text) if wanted else []
        evidence = tuple(
            Evidence(
                chunk_seq=plan.chunk.seq,
                segment=plan.chunk.segment,
                start=plan.windows[i].start,
                end=plan.windows[i].end,
                excerpt=fingerprint(plan.windows[i].text)
                if hashed
                else window_excerpt(
                    plan.chunk.text, spans, plan.windows[i].text, plan.windows[i].start, plan.windows[i].end
                ),
                score=round(float(calibrated[i]), 4),
                cue_ids=scores.cues[plan.first_row + int(i)][c] if scores else (),
                exemplar_ids=scores.exemplars[plan.first_row + int(i)][c] if scores else (),
            )
            for i in order
            if calibrated[i] >= WATCH_LEVEL
        )
        return CategoryFinding(
            category=category,
            score=round(score, 6),
            raw_score=round(best, 6),
            threshold=threshold,
            severity=severity,
            evidence=evidence,
        )
