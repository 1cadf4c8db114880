"""Emerging patterns, the scorer's share: what a scored chunk leaves behind so that drift and new kinds of
suspicious reasoning can be found later, away from the scorer (clustering runs in the rig: cotwatch_local.patterns).

- An **embedding summary** per (tenant, model, hour): the number of windows, and per dimension the sum and the
  sum of squares of the window embeddings, as integers of 1/``QUANT`` so that DynamoDB's ``ADD`` sums them
  exactly and in any order. The embeddings are first projected to ``SKETCH_DIMS`` dimensions by one fixed random
  matrix (Johnson-Lindenstrauss: cosine distances between means stay close), which makes the summary one
  DynamoDB item per chunk instead of six; the full 384 dimensions made persisting 94% of the handler's time
  (docs/performance.md). It is written in the counters' transaction (``CounterStore.apply_once``), so a
  redelivered chunk adds nothing. From it: the window mean (drift = cosine distance of two windows' means) and
  the per-dimension variance (a distribution-level statistic: the Fréchet distance of diagonal Gaussians).
- **Suspicious windows**: windows whose best calibrated category score is elevated (``SUSPICION_LEVEL``) while no
  category passes its threshold (``FLAG_SCORE``): reasoning that looks like trouble but matches no known category.
  Stored redacted (or, for no-raw-text tenants, as the window's sha256 only) with their embedding, one object per
  chunk under a key derived from the record (``PatternSink``): rewriting it on redelivery changes nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from cotwatch.detection.windowing import Window
from cotwatch.redaction import find_sensitive, fingerprint, window_excerpt
from cotwatch.trace import TraceChunk

QUANT = 10_000  # embedding components in units of 1e-4: exact integer sums
PART_DIMS = 64  # dimensions per DynamoDB item (keeps each update expression well under its 4 KB limit)
SKETCH_DIMS = PART_DIMS  # summary dimensions: exactly one DynamoDB item per chunk
SKETCH_SEED = 20261207  # fixed: every scorer and every hour must project the same way
SUSPICION_LEVEL = 0.35  # the monitor's near-hit level (WATCH_LEVEL): close enough to look at
FLAG_SCORE = 0.5  # calibrated threshold of every category
MAX_WINDOWS_PER_CHUNK = 3  # the most suspicious ones; a chunk rarely has more worth clustering
EMBEDDING_DECIMALS = 4


class EmbeddingSummary(BaseModel):
    """Window count, sums and sums of squares (in 1/QUANT units) of a set of window embeddings."""

    model_config = ConfigDict(frozen=True)

    hour: str
    tenant: str
    model: str
    windows: int
    sums: tuple[int, ...]
    squares: tuple[int, ...]

    @property
    def dims(self) -> int:
        return len(self.sums)

    def mean(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.sums, dtype=np.float64) / (QUANT * max(self.windows, 1))

    def variance(self) -> npt.NDArray[np.float64]:
        second = np.asarray(self.squares, dtype=np.float64) / (QUANT * QUANT * max(self.windows, 1))
        return np.maximum(second - self.mean() ** 2, 0.0)


@lru_cache(maxsize=4)
def _projection(dims: int) -> npt.NDArray[np.float64]:
    """The fixed Gaussian projection from ``dims`` to ``SKETCH_DIMS`` dimensions (scaled to keep lengths)."""
    rng = np.random.default_rng(SKETCH_SEED)
    return rng.normal(size=(dims, SKETCH_DIMS)) / math.sqrt(SKETCH_DIMS)


def sketch(embeddings: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Window embeddings as the summary stores them: projected when wider than ``SKETCH_DIMS``."""
    rows = np.asarray(embeddings, dtype=np.float64)
    return rows if rows.shape[1] <= SKETCH_DIMS else rows @ _projection(rows.shape[1])


def summarise(chunk: TraceChunk, embeddings: npt.NDArray[np.floating] | None) -> EmbeddingSummary | None:
    """The summary one chunk adds to its (tenant, model, hour); None for a chunk without windows."""
    if embeddings is None or embeddings.shape[0] == 0:
        return None
    q = np.rint(sketch(embeddings) * QUANT).astype(np.int64)
    return EmbeddingSummary(
        hour=chunk.created_at.strftime("%Y-%m-%dT%H"),
        tenant=chunk.tenant,
        model=chunk.model,
        windows=int(q.shape[0]),
        sums=tuple(int(v) for v in q.sum(axis=0)),
        squares=tuple(int(v) for v in (q * q).sum(axis=0)),
    )


def combine(summaries: Iterable[EmbeddingSummary], hour: str = "*", tenant: str = "*") -> EmbeddingSummary | None:
    """Several summaries of one model (hours, tenants) as one; None if there are none."""
    listed = list(summaries)
    if not listed:
        return None
    dims = {s.dims for s in listed}
    if len(dims) != 1:
        raise ValueError(f"embedding summaries of different sizes cannot be combined: {sorted(dims)}")
    models = {s.model for s in listed}
    return EmbeddingSummary(
        hour=hour,
        tenant=tenant,
        model=listed[0].model if len(models) == 1 else "*",
        windows=sum(s.windows for s in listed),
        sums=tuple(int(v) for v in np.sum([s.sums for s in listed], axis=0)),
        squares=tuple(int(v) for v in np.sum([s.squares for s in listed], axis=0)),
    )


def cosine_distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """1 - cosine similarity of two mean vectors (0: same direction)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(a @ b) / norm if norm else float("nan")


def frechet_diagonal(a: EmbeddingSummary, b: EmbeddingSummary) -> float:
    """Fréchet distance between Gaussians with the summaries' means and diagonal covariances:
    ``|mu_a - mu_b|^2 + sum(var_a + var_b - 2 sqrt(var_a var_b))``; it moves when the spread changes too."""
    va, vb = a.variance(), b.variance()
    return float(np.sum((a.mean() - b.mean()) ** 2) + np.sum(va + vb - 2 * np.sqrt(va * vb)))


class SuspiciousWindow(BaseModel):
    """A window that looks like trouble but matches no category: redacted, with its embedding."""

    model_config = ConfigDict(frozen=True)

    window_id: str
    hour: str
    tenant: str
    model: str
    trace_id: str
    chunk_seq: int
    start: int
    end: int
    hashed: bool  # a no-raw-text tenant's: ``excerpt`` is the sha256 of the text, not text
    excerpt: str
    suspicion: float  # the best calibrated category score (< FLAG_SCORE)
    nearest: str  # the category that came closest
    embedding: tuple[float, ...]


class ChunkPatterns(BaseModel):
    """What one scored chunk leaves for pattern discovery (one object, keyed by the record's effect id)."""

    model_config = ConfigDict(frozen=True)

    effect_id: str
    hour: str
    windows: tuple[SuspiciousWindow, ...]


def window_id(chunk: TraceChunk, window: Window) -> str:
    return hashlib.sha256(f"{chunk.tenant}\x1f{chunk.trace_id}\x1f{chunk.seq}\x1f{window.start}".encode()).hexdigest()[
        :24
    ]


def suspicious_windows(
    chunk: TraceChunk,
    windows: Sequence[Window],
    embeddings: npt.NDArray[np.floating] | None,
    window_scores: npt.NDArray[np.float64] | None,
    categories: Sequence[str],
    hashed: bool,
    limit: int = MAX_WINDOWS_PER_CHUNK,
) -> tuple[SuspiciousWindow, ...]:
    """The chunk's most suspicious windows that no category passes (best score in [SUSPICION_LEVEL, FLAG_SCORE))."""
    if embeddings is None or window_scores is None or not windows or not categories:
        return ()
    best = window_scores.max(axis=1)
    picked = [i for i in np.argsort(-best, kind="stable") if SUSPICION_LEVEL <= best[i] < FLAG_SCORE][:limit]
    if not picked:
        return ()
    spans = [] if hashed else find_sensitive(chunk.text)  # a secret is found with its whole chunk as context
    out: list[SuspiciousWindow] = []
    for i in picked:
        w = windows[int(i)]
        excerpt = fingerprint(w.text) if hashed else window_excerpt(chunk.text, spans, w.text, w.start, w.end)
        out.append(
            SuspiciousWindow(
                window_id=window_id(chunk, w),
                hour=chunk.created_at.strftime("%Y-%m-%dT%H"),
                tenant=chunk.tenant,
                model=chunk.model,
                trace_id=chunk.trace_id,
                chunk_seq=chunk.seq,
                start=w.start,
                end=w.end,
                hashed=hashed,
                excerpt=excerpt,
                suspicion=round(float(best[i]), 4),
                nearest=categories[int(np.argmax(window_scores[int(i)]))],
                embedding=tuple(round(float(v), EMBEDDING_DECIMALS) for v in embeddings[int(i)]),
            )
        )
    return tuple(out)
