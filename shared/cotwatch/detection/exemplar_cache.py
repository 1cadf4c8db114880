"""The taxonomy's exemplar embeddings, computed once and shipped, so a cold start does not re-embed them.

Every scorer embeds the taxonomy's ~170 exemplars and look-alikes when it is built: on the 2-core benchmark
machine that was half of the scorer's init time (see docs/performance.md). ``data/exemplars-<name>.json``
holds them for one encoder; it is used only when its key (the embedder's full name, backend included, and
the sha256 of every exemplar text in order) matches, else the scorer embeds the exemplars as before. So an
edited taxonomy or another encoder costs cold-start time, never wrong scores.

Rebuild after changing the taxonomy (the unit suite fails until then)::

    .venv/bin/python -m cotwatch.detection.exemplar_cache
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import io
import json
import sys
from pathlib import Path

import numpy as np

from cotwatch.detection.embedding import Embedder, Matrix
from cotwatch.detection.taxonomy import Taxonomy, load_taxonomy

CACHE_GLOB = "exemplars-*.json"
FORMAT = 1


def exemplar_texts(taxonomy: Taxonomy) -> tuple[list[list[str]], list[str]]:
    """Each category's unsafe exemplar texts, and the negatives (benign reasoning, then look-alikes)."""
    positives = [[e.text for e in cat.exemplars] for cat in taxonomy.categories.values()]
    negatives = [
        *(e.text for e in taxonomy.benign_reasoning),
        *(e.text for cat in taxonomy.categories.values() for e in cat.benign_lookalikes),
    ]
    return positives, negatives


def cache_key(embedder_name: str, taxonomy: Taxonomy) -> str:
    positives, negatives = exemplar_texts(taxonomy)
    digest = hashlib.sha256(f"v{FORMAT}\0{embedder_name}".encode())
    for group in [*positives, negatives]:
        digest.update(b"\x1e")  # group separator: moving a text between categories changes the key
        for text in group:
            digest.update(text.encode() + b"\x1f")
    return digest.hexdigest()


def embed_all(taxonomy: Taxonomy, embedder: Embedder) -> tuple[list[Matrix], Matrix | None]:
    """The exemplar embeddings, one encoder call per category and one for the negatives."""
    positives, negatives = exemplar_texts(taxonomy)
    return [embedder.encode(texts) for texts in positives], (embedder.encode(negatives) if negatives else None)


def builtin_caches() -> list[Path]:
    root = Path(str(importlib.resources.files("cotwatch") / "data"))
    return sorted(root.glob(CACHE_GLOB))


def load_cached(
    taxonomy: Taxonomy, embedder_name: str, paths: list[Path] | None = None
) -> tuple[list[Matrix], Matrix | None] | None:
    """The cached embeddings whose key matches this embedder and taxonomy, or None."""
    key = cache_key(embedder_name, taxonomy)
    for path in builtin_caches() if paths is None else paths:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("key") != key:
            continue
        with np.load(io.BytesIO(base64.b64decode(document["npz"]))) as arrays:
            positives = [np.asarray(arrays[f"pos_{c}"], dtype=np.float32) for c in range(len(taxonomy.categories))]
            negatives = np.asarray(arrays["neg"], dtype=np.float32) if "neg" in arrays else None
        return positives, negatives
    return None


def write_cache(taxonomy: Taxonomy, embedder: Embedder, path: Path) -> Path:
    positives, negatives = embed_all(taxonomy, embedder)
    arrays = {f"pos_{c}": m for c, m in enumerate(positives)}
    if negatives is not None:
        arrays["neg"] = negatives
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    document = {
        "format": FORMAT,
        "key": cache_key(embedder.name, taxonomy),
        "encoder": embedder.name,
        "taxonomy_version": taxonomy.version,
        "npz": base64.b64encode(buffer.getvalue()).decode(),
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path


def main() -> int:
    from cotwatch.detection.embedding import SentenceTransformerEmbedder
    from cotwatch.detection.heads import model_key

    embedder = SentenceTransformerEmbedder()
    name = model_key(embedder.name).removeprefix("package:").replace("gt_all_", "").replace("_l6_v2", "")
    out = Path(str(importlib.resources.files("cotwatch") / "data")) / f"exemplars-{name}.json"
    print(write_cache(load_taxonomy(), embedder, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
