"""Per-window category scores from embeddings.

The first scorer is exemplar-based: a window's raw score for a category is its best cosine similarity to
that category's unsafe exemplars, minus a penalty when it is even closer to a benign look-alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from cotwatch.detection.cues import CueMatcher
from cotwatch.detection.embedding import Embedder, Matrix
from cotwatch.detection.exemplar_cache import embed_all, load_cached
from cotwatch.detection.taxonomy import Taxonomy


@dataclass(frozen=True)
class WindowScores:
    """``raw[i, c]``: raw score of window i for category ``categories[c]``; ``exemplars[i][c]``: the ids of
    its nearest exemplars; ``cues[i][c]``: the ids of the intent cues that counted (matched above the gate)."""

    categories: list[str]
    raw: npt.NDArray[np.float64]
    exemplars: list[list[tuple[str, ...]]]
    cues: list[list[tuple[str, ...]]]


class WindowScorer(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def categories(self) -> list[str]: ...

    def score(self, embeddings: Matrix, texts: Sequence[str] = ()) -> WindowScores:
        """``texts`` are the windows behind ``embeddings`` (scorers with a lexical view use them)."""
        ...


def embed_exemplars(taxonomy: Taxonomy, embedder: Embedder) -> tuple[list[Matrix], list[list[str]], Matrix | None]:
    """Each category's exemplar embeddings and ids, and all benign look-alikes and reasoning as negatives:
    from the shipped cache when it was made by this encoder from this taxonomy, else embedded now."""
    ids = [[e.id for e in cat.exemplars] for cat in taxonomy.categories.values()]
    positives, negatives = load_cached(taxonomy, embedder.name) or embed_all(taxonomy, embedder)
    return positives, ids, negatives


@dataclass(frozen=True)
class Nearest:
    """For n windows and k categories: best exemplar similarity per category, best look-alike similarity,
    and the two nearest exemplar ids per category (the evidence's "why")."""

    best: npt.NDArray[np.float64]  # (n, k)
    negative: npt.NDArray[np.float64]  # (n,)
    matches: list[list[tuple[str, ...]]]


class ExemplarIndexScorer(ABC):
    """Base of the scorers: embeds the taxonomy's exemplars once, owns ``version`` and ``categories``, and
    turns a batch into :class:`WindowScores`. Subclasses say how a window's raw scores are computed, and
    how much a matched intent cue adds (``CUE_GAIN``) once the raw score is above ``CUE_GATE``."""

    CUE_GAIN: float
    CUE_GATE: float

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, version: str) -> None:
        self._categories = taxonomy.category_ids
        self._pos, self._pos_ids, self._neg = embed_exemplars(taxonomy, embedder)
        self._cues = CueMatcher(taxonomy)
        self._version = version

    @property
    def version(self) -> str:
        return self._version

    @property
    def categories(self) -> list[str]:
        return self._categories

    def score(self, embeddings: Matrix, texts: Sequence[str] = ()) -> WindowScores:
        n = embeddings.shape[0]
        if n == 0:  # an empty batch has no embedding width, so no matrix products
            return WindowScores(self._categories, np.zeros((0, len(self._categories))), [], [])
        if texts and len(texts) != n:
            raise ValueError(f"{len(texts)} texts for {n} embeddings")
        nearest = self._nearest(embeddings)
        raw = self._raw(embeddings, texts, nearest)
        cues = self._cues.match(texts or [""] * n)
        counted = cues.hit & (raw > self.CUE_GATE)
        cue_ids = [[ids if counted[i, c] else () for c, ids in enumerate(row)] for i, row in enumerate(cues.ids)]
        return WindowScores(self._categories, raw + self.CUE_GAIN * counted, nearest.matches, cue_ids)

    @abstractmethod
    def _raw(self, embeddings: Matrix, texts: Sequence[str], nearest: Nearest) -> npt.NDArray[np.float64]:
        """(n, k) raw scores, higher = more like the category; 0 need not mean anything in particular."""

    def _nearest(self, embeddings: Matrix) -> Nearest:
        n = embeddings.shape[0]
        best = np.zeros((n, len(self._categories)), dtype=np.float64)
        matches: list[list[tuple[str, ...]]] = [[() for _ in self._categories] for _ in range(n)]
        for c, (pos, ids) in enumerate(zip(self._pos, self._pos_ids, strict=True)):
            sims = embeddings @ pos.T
            best[:, c] = sims.max(axis=1)
            top = np.argsort(-sims, axis=1)[:, :2]
            for i in range(n):
                matches[i][c] = tuple(ids[j] for j in top[i])
        negative = (embeddings @ self._neg.T).max(axis=1).astype(np.float64) if self._neg is not None else np.zeros(n)
        return Nearest(best, negative, matches)


class ExemplarScorer(ExemplarIndexScorer):
    """Max-similarity to category exemplars, discounted by similarity to benign look-alikes."""

    CUE_GAIN = 0.1  # in cosine-similarity units
    CUE_GATE = 0.3

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, *, negative_weight: float = 0.5) -> None:
        super().__init__(taxonomy, embedder, f"exemplar-v1/{taxonomy.version}/{embedder.name}")
        self._negative_weight = negative_weight

    def _raw(self, embeddings: Matrix, texts: Sequence[str], nearest: Nearest) -> npt.NDArray[np.float64]:
        best, neg = nearest.best, nearest.negative[:, None]
        out: npt.NDArray[np.float64] = best - self._negative_weight * np.maximum(neg - best, 0.0)
        return out
