"""Fitting the heads (training time only: needs scikit-learn and scipy from the ``train`` extra; inference in
:mod:`cotwatch.detection.heads` does not use them, so the scorer image does not carry them)."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cotwatch.detection.embedding import Embedder, Matrix
from cotwatch.detection.heads import BENIGN, HeadModel, lexical_features, model_key
from cotwatch.detection.taxonomy import Taxonomy
from cotwatch_training.synth import generate

DEFAULT_LEX_FEATURES = 1 << 18


def training_rows(
    taxonomy: Taxonomy,
    *,
    n_per_category: int = 400,
    seed: int = 13,
) -> tuple[list[str], list[str]]:
    """Synthetic rows and the taxonomy's own exemplars and look-alikes: (texts, class labels)."""
    texts: list[str] = []
    labels: list[str] = []
    for row in generate(n_per_category=n_per_category, seed=seed):
        texts.append(row.text)
        labels.append(row.category)
    for cid, cat in taxonomy.categories.items():
        for ex in cat.exemplars:
            texts.append(ex.text)
            labels.append(cid)
        for ex in cat.benign_lookalikes:
            texts.append(ex.text)
            labels.append(BENIGN)
    for ex in taxonomy.benign_reasoning:
        texts.append(ex.text)
        labels.append(BENIGN)
    return texts, labels


def cached_encode(embedder: Embedder, texts: Sequence[str], cache_dir: str | Path | None) -> Matrix:
    """Encode with an on-disk cache keyed by encoder name and text, so repeated experiments stay cheap."""
    if cache_dir is None:
        return embedder.encode(texts)
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    safe = hashlib.sha1(embedder.name.encode()).hexdigest()[:12]
    path = folder / f"emb-{safe}.npz"
    cache: dict[str, Matrix] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            cache = dict(zip(data["keys"].tolist(), data["vecs"], strict=True))

    def key(t: str) -> str:
        return hashlib.sha1(t.encode()).hexdigest()

    missing = [t for t in dict.fromkeys(texts) if key(t) not in cache]
    if missing:
        for t, v in zip(missing, embedder.encode(missing), strict=True):
            cache[key(t)] = v
        keys = list(cache)
        np.savez(path, keys=np.array(keys), vecs=np.stack([cache[k] for k in keys]))
    return np.stack([cache[key(t)] for t in texts]).astype(np.float32)


def fit_heads(
    texts: Sequence[str],
    labels: Sequence[str],
    embeddings: Matrix,
    *,
    encoder: str,
    version: str,
    c_emb: float = 3.0,
    c_lex: float = 10.0,
    lex_weight: float = 1.0,
    lex_features: int = DEFAULT_LEX_FEATURES,
    sample_weight: Sequence[float] | None = None,
) -> HeadModel:
    """Fit the embedding head and the lexical head on the same rows; ``benign`` becomes class 0."""
    linear_model: Any = importlib.import_module("sklearn.linear_model")
    sparse: Any = importlib.import_module("scipy.sparse")
    classes = [BENIGN, *sorted(set(labels) - {BENIGN})]
    y = np.array([classes.index(label) for label in labels])
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    emb = linear_model.LogisticRegression(C=c_emb, max_iter=3000).fit(embeddings, y, sample_weight=weights)
    idx, val = lexical_features(texts, lex_features)
    indptr = np.cumsum([0] + [len(i) for i in idx])
    matrix = sparse.csr_matrix(
        (
            np.concatenate([np.asarray(v) for v in val]),
            np.concatenate([np.asarray(i, dtype=np.int64) for i in idx]),
            indptr,
        ),
        shape=(len(texts), lex_features),
    )
    lex = linear_model.LogisticRegression(C=c_lex, max_iter=3000).fit(matrix, y, sample_weight=weights)
    used = np.unique(matrix.indices)
    coef = lex.coef_.T[used]  # (m, k)
    keep = np.abs(coef).max(axis=1) > 1e-3  # columns that barely move any class are dropped to save space
    return HeadModel(
        version=version,
        encoder=model_key(encoder),
        classes=classes,
        emb_w=np.asarray(emb.coef_, dtype=np.float64),
        emb_b=np.asarray(emb.intercept_, dtype=np.float64),
        lex_n_features=lex_features,
        lex_cols=used[keep].astype(np.int64),
        lex_w=np.asarray(coef[keep], dtype=np.float64),
        lex_b=np.asarray(lex.intercept_, dtype=np.float64),
        lex_weight=lex_weight,
    )
