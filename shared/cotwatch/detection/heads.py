"""Trained per-category heads: a multinomial logistic regression on sentence embeddings, fused with a
small hashed word n-gram model, plus nearest-exemplar similarity from the taxonomy.

Why two views: the embedding head generalises across phrasings but is nearly blind to stance and negation
("I want more compute" vs "more compute would be unimportant to me"); the lexical head sees those words.
Both are trained on cotwatch's own synthetic data (``cotwatch_training.synth``), never on dev rows.

The artifact is one JSON file (``data/heads-<encoder>.json``, a few hundred KB: a manifest plus the
weights as a base64 ``.npz``; JSON so the package-data globs ship it) holding both heads; it is rebuilt by
``python -m cotwatch_training.train_heads``. Inference needs numpy only.
"""

from __future__ import annotations

import base64
import importlib.resources
import io
import itertools
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cotwatch.detection.embedding import Embedder, Matrix
from cotwatch.detection.scorer import ExemplarIndexScorer, Nearest
from cotwatch.detection.taxonomy import Taxonomy

BENIGN = "benign"
HEADS_GLOB = "heads-*.json"
_WORD = re.compile(r"[a-z0-9']+")
F64 = npt.NDArray[np.float64]


def lexical_features(texts: Sequence[str], n_features: int) -> tuple[list[list[int]], list[list[float]]]:
    """Hashed binary unigrams and bigrams, L2-normalised: (indices, values) per text."""
    idx: list[list[int]] = []
    val: list[list[float]] = []
    for text in texts:
        toks = _WORD.findall(text.lower())
        grams = set(toks) | {f"{a} {b}" for a, b in itertools.pairwise(toks)}
        cols = sorted({zlib.crc32(g.encode()) % n_features for g in grams})
        idx.append(cols)
        val.append([1.0 / np.sqrt(len(cols))] * len(cols) if cols else [])
    return idx, val


def model_key(embedder_name: str) -> str:
    """The encoder part of an embedder's name: heads do not care whether it runs on torch or ONNX."""
    for suffix in (":torch", ":onnx", ":onnx-int8", ":openvino"):
        if embedder_name.endswith(suffix):
            return embedder_name[: -len(suffix)]
    return embedder_name


@dataclass(frozen=True)
class HeadModel:
    """Weights of both heads. ``classes[0]`` is always ``benign``.

    One pair only: an agent-reasoning pair blended in by a gate was removed in heads-v3, because without it
    the scorer ranked sources it never saw better (leave-one-source-out over the pool, docs/detection.md).
    """

    version: str
    encoder: str
    classes: list[str]
    emb_w: F64  # (k, d)
    emb_b: F64  # (k,)
    lex_n_features: int
    lex_cols: npt.NDArray[np.int64]  # (m,) hashed columns that carry weight, sorted
    lex_w: F64  # (m, k)
    lex_b: F64  # (k,)
    lex_weight: float

    def log_odds(self, embeddings: Matrix, texts: Sequence[str]) -> F64:
        """(n, k-1): log p(category) - log p(benign) for each non-benign class, both heads fused."""
        emb = _log_softmax(embeddings.astype(np.float64) @ self.emb_w.T + self.emb_b)
        out: F64 = emb[:, 1:] - emb[:, :1]
        if self.lex_weight > 0 and len(texts) > 0:
            idx, val = lexical_features(texts, self.lex_n_features)
            lex_logits = np.tile(self.lex_b, (len(idx), 1))
            for row, (cols, vals) in enumerate(zip(idx, val, strict=True)):
                pos = np.searchsorted(self.lex_cols, cols)
                pos = np.minimum(pos, len(self.lex_cols) - 1)
                hit = self.lex_cols[pos] == np.asarray(cols, dtype=np.int64)
                if hit.any():
                    lex_logits[row] += np.asarray(vals)[hit] @ self.lex_w[pos[hit]]
            lex = _log_softmax(lex_logits)
            out = out + self.lex_weight * (lex[:, 1:] - lex[:, :1])
        return out

    def save(self, path: str | Path) -> None:
        manifest: dict[str, object] = {
            "version": self.version,
            "encoder": self.encoder,
            "classes": self.classes,
            "lex_n_features": self.lex_n_features,
            "lex_weight": self.lex_weight,
        }
        arrays: dict[str, Any] = {  # name -> array, as np.savez takes them
            "emb_w": self.emb_w.astype(np.float32),
            "emb_b": self.emb_b.astype(np.float32),
            "lex_cols": self.lex_cols.astype(np.int32),
            "lex_w": self.lex_w.astype(np.float16),
            "lex_b": self.lex_b.astype(np.float32),
        }
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        manifest["weights_npz_b64"] = base64.b64encode(buf.getvalue()).decode("ascii")
        Path(path).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> HeadModel:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        raw = base64.b64decode(manifest["weights_npz_b64"])
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}

        if "agentic" in manifest:  # heads-v2 artifacts: refuse rather than silently drop half the model
            raise ValueError(f"{path}: a gated heads-v2 artifact; rebuild it with cotwatch_training.train_heads")
        return cls(
            version=str(manifest["version"]),
            encoder=manifest["encoder"],
            classes=list(manifest["classes"]),
            emb_w=arrays["emb_w"].astype(np.float64),
            emb_b=arrays["emb_b"].astype(np.float64),
            lex_n_features=int(manifest["lex_n_features"]),
            lex_cols=arrays["lex_cols"].astype(np.int64),
            lex_w=arrays["lex_w"].astype(np.float64),
            lex_b=arrays["lex_b"].astype(np.float64),
            lex_weight=float(manifest["lex_weight"]),
        )


def _log_softmax(z: F64) -> F64:
    z = z - z.max(axis=1, keepdims=True)
    out: F64 = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return out


def builtin_heads() -> list[Path]:
    root = Path(str(importlib.resources.files("cotwatch") / "data"))
    return sorted(root.glob(HEADS_GLOB))


def find_heads(embedder_name: str, path: str | Path | None = None) -> HeadModel | None:
    """The head trained for this encoder: ``path`` if given, else a built-in artifact whose encoder matches."""
    if path:
        return HeadModel.load(path)
    key = model_key(embedder_name)
    for candidate in builtin_heads():
        model = HeadModel.load(candidate)
        if model.encoder == key:
            return model
    return None


class HeadScorer(ExemplarIndexScorer):
    """Scores windows with trained heads; categories the heads do not know (added by a user's taxonomy)
    fall back to exemplar similarity, and close matches to any exemplar add to the head's score so that
    user-supplied exemplars take effect without retraining."""

    CUE_GAIN = 4.0  # log-odds a matched intent cue adds ...
    CUE_GATE = -4.0  # ... when the category's score is already above this
    EXEMPLAR_FLOOR = 0.72  # cosine similarity above which a match to an exemplar adds to the score
    EXEMPLAR_GAIN = 12.0  # log-odds per unit of similarity above the floor
    FALLBACK_SCALE = 20.0  # maps exemplar similarity margins onto a log-odds-like range

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, heads: HeadModel) -> None:
        super().__init__(taxonomy, embedder, f"heads-v3/{heads.version}/{taxonomy.version}/{embedder.name}")
        self._heads = heads
        self._head_index = {c: i for i, c in enumerate(heads.classes[1:])}

    def _raw(self, embeddings: Matrix, texts: Sequence[str], nearest: Nearest) -> F64:
        n = embeddings.shape[0]
        odds = self._heads.log_odds(embeddings, texts if len(texts) == n else [""] * n)
        raw = np.zeros((n, len(self.categories)), dtype=np.float64)
        for c, category in enumerate(self.categories):
            best = nearest.best[:, c]
            head = self._head_index.get(category)
            if head is None:
                margin = best - 0.5 * np.maximum(nearest.negative - best, 0.0) - 0.5
                raw[:, c] = self.FALLBACK_SCALE * margin
            else:
                raw[:, c] = odds[:, head] + self.EXEMPLAR_GAIN * np.maximum(best - self.EXEMPLAR_FLOOR, 0.0)
        return raw
