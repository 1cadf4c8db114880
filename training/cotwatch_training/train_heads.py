"""Rebuild the trained heads artifact from cotwatch's synthetic data and the taxonomy (no dev or pool rows).

One pair of heads (embedding + lexical). The agentic pair and its gate were removed in heads-v3: scored
leave-one-source-out over the pool, the scorer without them ranked unseen sources better (docs/detection.md).

    HF_HUB_OFFLINE=1 .venv/bin/python -m cotwatch_training.train_heads            # MiniLM -> data/heads-minilm.json
    .venv/bin/python -m cotwatch_training.train_heads --encoder /path/to/model --name mpnet --out /tmp/heads-mpnet.json

Embeddings are cached under --cache so re-runs only encode new sentences.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cotwatch.detection.embedding import DEFAULT_MODEL, SentenceTransformerEmbedder
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch_training.train import cached_encode, fit_heads, training_rows

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "shared" / "cotwatch" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=DEFAULT_MODEL, help="package:<module> or a model folder")
    parser.add_argument("--name", default="minilm", help="short name used in the artifact's file name")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", default="/tmp/cotwatch-emb-cache")
    parser.add_argument("--per-category", type=int, default=400)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--c-emb", type=float, default=3.0)
    parser.add_argument("--c-lex", type=float, default=10.0)
    parser.add_argument("--lex-weight", type=float, default=1.0)
    args = parser.parse_args()

    taxonomy = load_taxonomy()
    embedder = SentenceTransformerEmbedder(args.encoder)
    version = (
        f"{args.name}-s{args.seed}-n{args.per_category}-ce{args.c_emb:g}-cl{args.c_lex:g}"
        f"-lw{args.lex_weight:g}-t{taxonomy.version}"
    )
    texts, labels = training_rows(taxonomy, n_per_category=args.per_category, seed=args.seed)
    started = time.perf_counter()
    embeddings = cached_encode(embedder, texts, args.cache)
    print(f"{len(texts)} training texts embedded in {time.perf_counter() - started:.1f}s")
    model = fit_heads(
        texts,
        labels,
        embeddings,
        encoder=embedder.name,
        version=version,
        c_emb=args.c_emb,
        c_lex=args.c_lex,
        lex_weight=args.lex_weight,
    )
    out = args.out or DATA / f"heads-{args.name}.json"
    model.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB), version {model.version}, classes {model.classes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
