"""Rebuild the trained heads artifact from cotwatch's synthetic data, the written agent-reasoning passages
in training/data and the taxonomy (no dev rows).

Two pairs of heads go into one artifact: general heads without the passages, agentic heads with them, and
a gate that blends them by how much a window reads like an agent reasoning about its task (see heads.py).

    HF_HUB_OFFLINE=1 .venv/bin/python -m cotwatch_training.train_heads            # MiniLM -> data/heads-minilm.json
    .venv/bin/python -m cotwatch_training.train_heads --encoder /path/to/model --name mpnet --out /tmp/heads-mpnet.json

Embeddings are cached under --cache so re-runs only encode new sentences.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from cotwatch.detection.embedding import DEFAULT_MODEL, SentenceTransformerEmbedder
from cotwatch.detection.heads import BENIGN, HeadModel
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch_training.episodes import generate_episodes
from cotwatch_training.synth import generate
from cotwatch_training.train import cached_encode, fit_gate, fit_heads, read_passages, training_rows

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "shared" / "cotwatch" / "data"
PASSAGES = sorted((ROOT / "training" / "data").glob("*.jsonl"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=DEFAULT_MODEL, help="package:<module> or a model folder")
    parser.add_argument("--name", default="minilm", help="short name used in the artifact's file name")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", default="/tmp/cotwatch-emb-cache")
    parser.add_argument("--per-category", type=int, default=400)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--episodes", type=int, default=60, help="agentic episodes per category (0: none)")
    parser.add_argument(
        "--passages", type=Path, nargs="*", default=PASSAGES, help="JSONL of written passages (default: training/data)"
    )
    parser.add_argument("--c-emb", type=float, default=3.0)
    parser.add_argument("--c-lex", type=float, default=10.0)
    parser.add_argument("--lex-weight", type=float, default=1.0)
    parser.add_argument("--c-gate", type=float, default=10.0)
    args = parser.parse_args()

    taxonomy = load_taxonomy()
    passages = read_passages(args.passages)
    unknown = {category for _, category in passages} - {BENIGN, *taxonomy.category_ids}
    if unknown:
        parser.error(f"passages name categories the taxonomy lacks: {sorted(unknown)}")
    embedder = SentenceTransformerEmbedder(args.encoder)
    version = (
        f"{args.name}-s{args.seed}-n{args.per_category}-ce{args.c_emb:g}-cl{args.c_lex:g}"
        f"-lw{args.lex_weight:g}-e{args.episodes}-p{len(passages)}-t{taxonomy.version}"
    )

    def fit(rows: tuple[list[str], list[str]], name: str) -> HeadModel:
        texts, labels = rows
        started = time.perf_counter()
        embeddings = cached_encode(embedder, texts, args.cache)
        print(f"{name}: {len(texts)} training texts embedded in {time.perf_counter() - started:.1f}s")
        return fit_heads(
            texts,
            labels,
            embeddings,
            encoder=embedder.name,
            version=name,
            c_emb=args.c_emb,
            c_lex=args.c_lex,
            lex_weight=args.lex_weight,
        )

    rows = {"n_per_category": args.per_category, "seed": args.seed}
    model = fit(training_rows(taxonomy, **rows, episodes_per_category=0), version)
    if passages or args.episodes:
        agentic_rows = training_rows(taxonomy, **rows, episodes_per_category=args.episodes, passages=passages)
        agentic = fit(agentic_rows, f"{version}-agentic")
        episodes = generate_episodes(args.episodes) if args.episodes else ()
        narratives = [text for text, _ in passages] + [r.text for r in episodes]
        others = [r.text for r in generate(n_per_category=args.per_category, seed=args.seed)]
        gate_w, gate_b = fit_gate(
            cached_encode(embedder, narratives + others, args.cache),
            [True] * len(narratives) + [False] * len(others),
            c=args.c_gate,
        )
        model = replace(model, version=f"{version}-g{args.c_gate:g}", agentic=agentic, gate_w=gate_w, gate_b=gate_b)
    out = args.out or DATA / f"heads-{args.name}.json"
    model.save(out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB), version {model.version}, classes {model.classes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
