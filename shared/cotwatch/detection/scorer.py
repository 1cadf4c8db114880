"""Per-window category scores from embeddings.

The first scorer is exemplar-based: a window's raw score for a category is its best cosine similarity to
that category's unsafe exemplars, minus a penalty when it is even closer to a benign look-alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from cotwatch.detection.embedding import Embedder, Matrix
from cotwatch.detection.taxonomy import Taxonomy


@dataclass(frozen=True)
class WindowScores:
    """``raw[i, c]``: raw score of window i for category ``categories[c]``; ``matches[i][c]``: exemplar ids."""

    categories: list[str]
    raw: npt.NDArray[np.float64]
    matches: list[list[tuple[str, ...]]]


class WindowScorer(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def categories(self) -> list[str]: ...

    def score(self, embeddings: Matrix, texts: Sequence[str] = ()) -> WindowScores:
        """``texts`` are the windows behind ``embeddings`` (scorers with a lexical view use them)."""
        ...


def embed_exemplars(taxonomy: Taxonomy, embedder: Embedder) -> tuple[list[Matrix], list[list[str]], Matrix | None]:
    """Each category's exemplar embeddings and ids, and all benign look-alikes and reasoning as negatives."""
    positives = [embedder.encode([e.text for e in cat.exemplars]) for cat in taxonomy.categories.values()]
    ids = [[e.id for e in cat.exemplars] for cat in taxonomy.categories.values()]
    negatives = [
        *taxonomy.benign_reasoning,
        *(e for cat in taxonomy.categories.values() for e in cat.benign_lookalikes),
    ]
    return positives, ids, (embedder.encode([e.text for e in negatives]) if negatives else None)


class ExemplarScorer:
    """Max-similarity to category exemplars, discounted by similarity to benign look-alikes."""

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, *, negative_weight: float = 0.5) -> None:
        self._taxonomy = taxonomy
        self._negative_weight = negative_weight
        self._categories = taxonomy.category_ids
        self._pos, self._pos_ids, self._neg = embed_exemplars(taxonomy, embedder)
        self._version = f"exemplar-v1/{taxonomy.version}/{embedder.name}"

    @property
    def version(self) -> str:
        return self._version

    @property
    def categories(self) -> list[str]:
        return self._categories

    def score(self, embeddings: Matrix, texts: Sequence[str] = ()) -> WindowScores:
        n = embeddings.shape[0]
        raw = np.zeros((n, len(self._categories)), dtype=np.float64)
        matches: list[list[tuple[str, ...]]] = [[() for _ in self._categories] for _ in range(n)]
        if n == 0:
            return WindowScores(self._categories, raw, matches)
        neg = (embeddings @ self._neg.T).max(axis=1) if self._neg is not None else np.zeros(n)
        for c, (pos, ids) in enumerate(zip(self._pos, self._pos_ids, strict=True)):
            sims = embeddings @ pos.T
            best = sims.max(axis=1)
            raw[:, c] = best - self._negative_weight * np.maximum(neg - best, 0.0)
            top = np.argsort(-sims, axis=1)[:, :2]
            for i in range(n):
                matches[i][c] = tuple(ids[j] for j in top[i])
        return WindowScores(self._categories, raw, matches)
