"""The shipped exemplar-embedding cache: used only for the encoder and taxonomy it was made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cotwatch.detection.embedding import DEFAULT_MODEL, HashingEmbedder
from cotwatch.detection.exemplar_cache import builtin_caches, cache_key, embed_all, load_cached, write_cache
from cotwatch.detection.taxonomy import Exemplar, load_taxonomy


def test_a_written_cache_gives_back_exactly_what_embedding_gives(tmp_path: Path) -> None:
    # Given a cache written for the hashing embedder and the shipped taxonomy
    taxonomy, embedder = load_taxonomy(), HashingEmbedder(dim=64)
    path = write_cache(taxonomy, embedder, tmp_path / "exemplars-hashing.json")
    # When it is loaded for the same embedder and taxonomy
    cached = load_cached(taxonomy, embedder.name, [path])
    # Then every category's matrix and the negatives equal freshly embedded ones
    assert cached is not None
    fresh_pos, fresh_neg = embed_all(taxonomy, embedder)
    assert len(cached[0]) == len(fresh_pos) == len(taxonomy.categories)
    for got, want in zip(cached[0], fresh_pos, strict=True):
        np.testing.assert_array_equal(got, want)
    assert cached[1] is not None and fresh_neg is not None
    np.testing.assert_array_equal(cached[1], fresh_neg)


def test_another_encoder_or_an_edited_taxonomy_misses_the_cache(tmp_path: Path) -> None:
    # Given a cache for one embedder and the shipped taxonomy
    taxonomy, embedder = load_taxonomy(), HashingEmbedder(dim=64)
    path = write_cache(taxonomy, embedder, tmp_path / "exemplars-hashing.json")
    # When another embedder asks, or one exemplar's text changed
    category = next(iter(taxonomy.categories))
    cat = taxonomy.categories[category]
    edited_cat = cat.model_copy(update={"exemplars": (Exemplar(id="x", text="changed"), *cat.exemplars[1:])})
    edited = taxonomy.model_copy(update={"categories": {**taxonomy.categories, category: edited_cat}})
    # Then the cache is not used (the scorer embeds the exemplars itself)
    assert load_cached(taxonomy, HashingEmbedder(dim=32).name, [path]) is None
    assert load_cached(edited, embedder.name, [path]) is None
    assert cache_key(embedder.name, edited) != cache_key(embedder.name, taxonomy)


def test_the_shipped_cache_matches_the_shipped_taxonomy() -> None:
    # Given the package's caches; Then one was made from the current taxonomy for the default encoder on torch
    # (after editing taxonomy.yaml: `python -m cotwatch.detection.exemplar_cache`, else cold starts re-embed)
    key = cache_key(f"{DEFAULT_MODEL}:torch", load_taxonomy())
    assert any(key in path.read_text(encoding="utf-8") for path in builtin_caches())
