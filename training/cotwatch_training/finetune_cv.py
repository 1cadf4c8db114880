"""Experiment (issue 11): fine-tune all-MiniLM-L6-v2 end to end as a binary window classifier on the pool and
judge it by grouped k-fold by source, next to the shipped scorer in the SAME folds and on the SAME rows.

    HF_HUB_OFFLINE=1 PYTHONPATH=shared:training nice -n 10 .venv/bin/python -m cotwatch_training.finetune_cv \
        --pool ../shared/data --run ft4                 # trains k models, writes ~/.cache/cotwatch/finetune_cv/ft4/
    .venv/bin/python -m cotwatch_training.finetune_cv --run ft4 --report          # re-prints the tables only

Recipe, per fold: training rows are the pool rows of the other folds' sources plus the text this project wrote
(``training/data/written/``); every row is cut into the handler's 240-character windows and one window per draw
is sampled with weights that give each label half the mass, each topic within a label an equal share
(unsafe: category; benign: what the source looks like: security, bio, code, reasoning, persona, chat, ...), and
each source within a topic an equal share. So benign security / bio / code / reasoning text stands next to attack
/ uplift text, and real reasoning traces are a full benign topic, not a few rows. Few steps, short sequences,
so that a fold fits in about ten minutes on two CPU cores.

Scoring, as the handler: a row's score is the max over its windows of the classifier's logit. The fold threshold
is fitted at the target FPR on benign rows of the fold's *training* sources that were not drawn for training
(a capped sample; same sources, so it is optimistic, see docs/detection.md). Pooled figures use
``score − fold threshold`` for both scorers. Evaluation rows are capped per (source, label) to fit the time
budget; the shipped scorer is scored on exactly those rows (through ``build_monitor`` + ``assess_texts``,
cached like ``cotwatch eval --cv source``) and thresholded on the benign rows of the same training sources.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from cotwatch_training.crossval import PoolRow, load_pool, wilson
from cotwatch_training.metrics import auroc, tpr_at_fpr

F64 = npt.NDArray[np.float64]
CATEGORIES = ("bio_chem", "cyber", "self_improvement", "cot_misbehaviour", "other_harm")
POOLED_FPRS = (0.01, 0.02, 0.05, 0.10)
WRITTEN_DIR = Path(__file__).resolve().parents[1] / "data" / "written"

# What a benign source looks like (its topic and form), so that topic cannot tell the labels apart.
BENIGN_TOPIC: dict[str, str] = {
    "cwe": "security",
    "cotwatch-written-cyber": "security",
    "pubmedqa": "bio",
    "cotwatch-written-biochem": "bio",
    "mmlu_stem": "science",
    "humaneval": "code",
    "mbpp": "code",
    "codecontests": "code",
    "marco_o1_cot": "reasoning",
    "mmlu_flan_cot": "reasoning",
    "aqua_rat": "reasoning",
    "math_solutions": "reasoning",
    "bbh_cot": "reasoning",
    "gsm8k": "reasoning",
    "cotwatch-written-traces": "reasoning",
    "anthropic_advanced_ai_risk": "persona",
    "anthropic_evals_persona": "persona",
    "cotwatch-written-agent": "persona",
}


class FoldConfig(BaseModel):
    steps: int = 120
    batch_size: int = 32
    lr: float = 5e-5
    warmup: int = 30
    max_seq_length: int = 64
    seed: int = 0


def topic_of(row: PoolRow) -> str:
    """Unsafe rows group by category; benign rows by what their source looks like (unknown sources: chat)."""
    if row.label == "unsafe":
        return row.category
    return BENIGN_TOPIC.get(row.source, "chat")


def assign_folds(sizes: Mapping[str, int], k: int) -> dict[str, int]:
    """Deterministic, blind to scores: largest source first, into the fold with the fewest rows so far."""
    if k < 2:
        raise ValueError("need at least 2 folds")
    if len(sizes) < k:
        raise ValueError(f"{len(sizes)} sources cannot fill {k} folds")
    load = [0] * k
    out: dict[str, int] = {}
    for source in sorted(sizes, key=lambda s: (-sizes[s], s)):
        fold = min(range(k), key=lambda f: (load[f], f))
        out[source] = fold
        load[fold] += sizes[source]
    return out


def cap_rows(rows: Sequence[PoolRow], cap: int, seed: int) -> list[int]:
    """Indices of at most ``cap`` rows per (source, label), chosen at random with ``seed``, in pool order."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[(row.source, row.label)].append(i)
    rng = random.Random(seed)
    keep: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        keep.extend(members if len(members) <= cap else rng.sample(members, cap))
    return sorted(keep)


def sampling_weights(rows: Sequence[PoolRow]) -> F64:
    """Per-row draw probability: label halves, equal topics within a label, equal sources within a topic."""
    tree: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for row in rows:
        tree[row.label][topic_of(row)][row.source] += 1
    weights: F64 = np.zeros(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        topics = tree[row.label]
        sources = topics[topic_of(row)]
        weights[i] = 1.0 / (len(tree) * len(topics) * len(sources) * sources[row.source])
    total = float(weights.sum())
    return weights / total


def read_written(folder: Path = WRITTEN_DIR) -> list[PoolRow]:
    """The project's own written rows (training only: never a held-out source)."""
    out: list[PoolRow] = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(PoolRow.model_validate_json(line))
    return out


def row_windows(text: str) -> list[str]:
    from cotwatch.detection.windowing import cut_windows

    return [w.text for w in cut_windows(text)] or [text]


# ---------------------------------------------------------------------------------------------------- metrics


def fit_threshold(benign: F64, target_fpr: float) -> float:
    ordered = np.sort(benign)[::-1]
    allowed = math.floor(target_fpr * len(ordered))
    return -math.inf if allowed >= len(ordered) else float(ordered[allowed])


def bootstrap_auroc(pos: F64, neg: F64, n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = [auroc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n)]
    return (round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4))


def summarise(rows: Sequence[PoolRow], margin: F64, bootstrap: int = 200, seed: int = 0) -> dict[str, Any]:
    """``margin`` = score − fold threshold of each row (flag = margin > 0). Pooled, per category, per source."""
    unsafe = np.array([r.label == "unsafe" for r in rows])
    pos, neg = margin[unsafe], margin[~unsafe]
    out: dict[str, Any] = {
        "n_unsafe": int(unsafe.sum()),
        "n_benign": int((~unsafe).sum()),
        "auroc": round(auroc(pos, neg), 4),
        "auroc_ci95": bootstrap_auroc(pos, neg, bootstrap, seed),
        "tpr_at_fpr": {str(f): round(tpr_at_fpr(pos, neg, f), 4) for f in POOLED_FPRS},
        "tpr_at_fold_thr": round(float((pos > 0).mean()), 4),
        "fpr_at_fold_thr": round(float((neg > 0).mean()), 4),
    }
    cats = np.array([r.category for r in rows])
    out["categories"] = {
        c: {
            "n": int((cats == c).sum()),
            "auroc": round(auroc(margin[cats == c], neg), 4),
            "tpr@1%": round(tpr_at_fpr(margin[cats == c], neg, 0.01), 4),
        }
        for c in CATEGORIES
        if (cats[unsafe] == c).any()
    }
    sources = np.array([r.source for r in rows])
    per: dict[str, dict[str, Any]] = {}
    for s in sorted(set(sources.tolist())):
        here = sources == s
        entry: dict[str, Any] = {"unsafe": int((here & unsafe).sum()), "benign": int((here & ~unsafe).sum())}
        if entry["unsafe"]:
            entry["auroc"] = round(auroc(margin[here & unsafe], neg), 4)
            entry["tpr_at_thr"] = round(float((margin[here & unsafe] > 0).mean()), 4)
        if entry["benign"]:
            k = int((margin[here & ~unsafe] > 0).sum())
            entry["fpr_at_thr"] = round(k / entry["benign"], 4)
            entry["fpr_ci95"] = wilson(k, entry["benign"])
        per[s] = entry
    out["sources"] = per
    aurocs = {s: e["auroc"] for s, e in per.items() if "auroc" in e}
    fprs = {s: e["fpr_at_thr"] for s, e in per.items() if "fpr_at_thr" in e}
    worst_a = min(aurocs, key=lambda s: aurocs[s])
    worst_f = max(fprs, key=lambda s: fprs[s])
    out["unsafe_source_auroc_mean"] = round(float(np.mean(list(aurocs.values()))), 4)
    out["worst_unsafe_source"] = [worst_a, aurocs[worst_a]]
    out["benign_source_fpr_mean"] = round(float(np.mean(list(fprs.values()))), 4)
    out["worst_benign_source"] = [worst_f, fprs[worst_f]]
    return out


def markdown(results: Mapping[str, Mapping[str, Any]], folds: Mapping[str, int]) -> str:
    names = list(results)
    lines = [
        "| scorer | pooled AUROC [95% CI] | TPR at 1/2/5/10% FPR | TPR / FPR at fold thr | "
        "unsafe-source AUROC mean / worst | benign-source FPR mean / worst |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        r = results[n]
        lo, hi = r["auroc_ci95"]
        tprs = " / ".join(f"{r['tpr_at_fpr'][str(f)]:.3f}" for f in POOLED_FPRS)
        lines.append(
            f"| {n} | {r['auroc']:.3f} [{lo:.3f}–{hi:.3f}] | {tprs} | {r['tpr_at_fold_thr']:.3f} / "
            f"{r['fpr_at_fold_thr']:.3f} | {r['unsafe_source_auroc_mean']:.3f} / {r['worst_unsafe_source'][0]} "
            f"{r['worst_unsafe_source'][1]:.3f} | {r['benign_source_fpr_mean']:.3f} / "
            f"{r['worst_benign_source'][0]} {r['worst_benign_source'][1]:.3f} |"
        )
    lines += [
        "",
        "| category | " + " | ".join(f"{n} AUROC / TPR@1%" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for c in CATEGORIES:
        if c in results[names[0]]["categories"]:
            cells = [
                f"{results[n]['categories'][c]['auroc']:.3f} / {results[n]['categories'][c]['tpr@1%']:.3f}"
                for n in names
            ]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| source (fold) | unsafe / benign | " + " | ".join(f"{n} AUROC · FPR@thr" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    first = results[names[0]]["sources"]
    for s in first:
        cells = []
        for n in names:
            e = results[n]["sources"][s]
            a = f"{e['auroc']:.3f}" if "auroc" in e else "–"
            f = f"{e['fpr_at_thr']:.3f} [{e['fpr_ci95'][0]:.3f}–{e['fpr_ci95'][1]:.3f}]" if "fpr_at_thr" in e else "–"
            cells.append(f"{a} · {f}")
        lines.append(f"| {s} ({folds[s]}) | {first[s]['unsafe']} / {first[s]['benign']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- training


def _train(texts: Sequence[str], targets: Sequence[float], weights: F64, cfg: FoldConfig) -> tuple[Any, Any]:
    torch: Any = importlib.import_module("torch")
    st: Any = importlib.import_module("sentence_transformers")
    from cotwatch.detection.embedding import DEFAULT_MODEL, resolve_model_path

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = st.SentenceTransformer(str(resolve_model_path(DEFAULT_MODEL)), device="cpu")
    model.max_seq_length = cfg.max_seq_length
    head = torch.nn.Linear(model.get_embedding_dimension(), 1)
    optimiser = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=cfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, 1 - s / cfg.steps)
    )
    model.train()
    started = time.perf_counter()
    draws = rng.choice(len(texts), size=(cfg.steps, cfg.batch_size), p=weights)
    for step, batch in enumerate(draws):
        features = model.preprocess([texts[i] for i in batch])
        logits = head(model(features)["sentence_embedding"]).squeeze(1)
        target = torch.tensor([targets[i] for i in batch], dtype=torch.float32)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0:
            print(f"  step {step}/{cfg.steps} loss {loss.item():.3f} {time.perf_counter() - started:.0f}s", flush=True)
    model.eval()
    return model, head


def _score(model: Any, head: Any, texts: Sequence[str]) -> F64:
    """Max logit over each text's windows (the handler's aggregation)."""
    torch: Any = importlib.import_module("torch")
    spans: list[tuple[int, int]] = []
    flat: list[str] = []
    for t in texts:
        ws = row_windows(t)
        spans.append((len(flat), len(flat) + len(ws)))
        flat.extend(ws)
    with torch.no_grad():
        emb = model.encode(flat, batch_size=64, convert_to_tensor=True)
        logits = head(emb).squeeze(1).numpy().astype(np.float64)
    return np.array([logits[a:b].max() for a, b in spans])


def _shipped_scores(pool: str, texts: Sequence[str], cache_file: str | None = None) -> F64:
    """The shipped monitor, built and cached exactly as ``cotwatch eval --cv source --pool`` does.

    ``cache_file`` pins an earlier score cache of that command (its fingerprint changes with any edit to the
    detection package, and a re-score of the evaluation rows is ~12 minutes here); misses are scored."""
    from cotwatch_training import commands
    from cotwatch_training.crossval import ScoreCache, default_cache_dir, score_rows, scorer_fingerprint

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="cmd"))
    ns = parser.parse_args(["eval", "--cv", "source", "--pool", pool])
    embedder = commands._embedder(ns)
    monitor = commands._MonitorFactory(ns, embedder)()
    if cache_file:
        cache = ScoreCache(Path(cache_file).parent, Path(cache_file).stem)
    else:
        cache = ScoreCache(default_cache_dir(), scorer_fingerprint(ns, monitor, embedder.name))
    return np.array([s.score for s in score_rows(monitor, texts, cache, progress=True)])


def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_root) / args.run
    if args.report:
        saved = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
        print(markdown(saved["results"], saved["folds"]))
        return 0
    cfg = FoldConfig(steps=args.steps, max_seq_length=args.max_seq_length, lr=args.lr, seed=args.seed)
    pool = load_pool(args.pool)
    sizes: dict[str, int] = defaultdict(int)
    for r in pool:
        sizes[r.source] += 1
    folds = assign_folds(sizes, args.folds)
    eval_idx = cap_rows(pool, args.eval_cap, args.seed)
    erows = [pool[i] for i in eval_idx]
    written = read_written() if args.written else []
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{len(erows)} eval rows of {len(pool)}; folds {dict(sorted(folds.items()))}", flush=True)

    shipped = _shipped_scores(args.pool, [r.text for r in erows], args.shipped_cache)
    ft = np.zeros(len(erows))
    ft_margin, sh_margin = np.zeros(len(erows)), np.zeros(len(erows))
    done = np.zeros(len(erows), dtype=bool)
    for k in range(args.folds):
        t0 = time.perf_counter()
        held = [j for j, r in enumerate(erows) if folds[r.source] == k]
        train_benign = np.array([folds[r.source] != k and r.label == "benign" for r in erows])
        sh_thr = fit_threshold(shipped[train_benign], args.target_fpr)
        sh_margin[held] = shipped[held] - sh_thr
        fold_file = out_dir / f"fold{k}.json"
        if fold_file.exists():  # resume: a fold is saved as soon as it is scored
            saved_fold = json.loads(fold_file.read_text(encoding="utf-8"))
            ft[held], thr = np.array(saved_fold["scores"]), float(saved_fold["thr"])
            ft_margin[held] = ft[held] - thr
            done[held] = True
            continue
        if args.no_train:
            continue
        rng = random.Random(args.seed * 1000 + k)
        train_rows = [r for r in pool if folds[r.source] != k] + written
        # one (row, window) item per window; a row's draw mass is split over its windows
        texts: list[str] = []
        targets: list[float] = []
        owner: list[int] = []
        for i, r in enumerate(train_rows):
            for w in row_windows(r.text):
                texts.append(w)
                targets.append(1.0 if r.label == "unsafe" else 0.0)
                owner.append(i)
        row_w = sampling_weights(train_rows)
        counts = np.bincount(owner, minlength=len(train_rows))
        weights = np.array([row_w[o] / counts[o] for o in owner])
        model, head = _train(texts, targets, weights / weights.sum(), cfg)
        # calibration: benign pool rows of the training sources, a capped sample (not held-out sources)
        by_src: dict[str, list[PoolRow]] = defaultdict(list)
        for r in pool:
            if folds[r.source] != k and r.label == "benign":
                by_src[r.source].append(r)
        calib = [
            x
            for s in sorted(by_src)
            for x in (by_src[s] if len(by_src[s]) <= args.calib_cap else rng.sample(by_src[s], args.calib_cap))
        ]
        thr = fit_threshold(_score(model, head, [r.text for r in calib]), args.target_fpr)
        ft[held] = _score(model, head, [erows[j].text for j in held])
        ft_margin[held] = ft[held] - thr
        done[held] = True
        fold_file.write_text(json.dumps({"thr": thr, "scores": ft[held].tolist()}), encoding="utf-8")
        print(
            f"fold {k}: {len(held)} held-out rows, thr {thr:.3f} (shipped {sh_thr:.3f}), "
            f"{time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    if not done.any():
        print("finetune_cv: no fold scored yet", file=sys.stderr)
        return 2
    # Only rows of scored folds count (all of them once the run is complete), for both scorers alike.
    keep = np.flatnonzero(done)
    krows = [erows[j] for j in keep]
    results = {
        "finetuned": summarise(krows, ft_margin[keep], args.bootstrap, args.seed),
        "shipped": summarise(krows, sh_margin[keep], args.bootstrap, args.seed),
    }
    saved_out = {
        "config": cfg.model_dump(),
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "folds": folds,
        "folds_scored": sorted({folds[r.source] for r in krows}),
        "results": results,
    }
    (out_dir / "results.json").write_text(json.dumps(saved_out, indent=1), encoding="utf-8")
    np.savez(
        out_dir / "scores.npz",
        finetuned=ft,
        ft_margin=ft_margin,
        shipped=shipped,
        sh_margin=sh_margin,
        index=np.array(eval_idx),
    )
    print(markdown(results, folds))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", default="../shared/data")
    p.add_argument("--run", required=True, help="name of the run folder under --out-root")
    p.add_argument(
        "--out-root",
        default=str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cotwatch" / "finetune_cv"),
    )
    p.add_argument("--report", action="store_true", help="re-print the tables of a finished run")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--eval-cap", type=int, default=150, help="rows per (source, label) scored")
    p.add_argument("--calib-cap", type=int, default=60, help="benign rows per training source for the threshold")
    p.add_argument("--target-fpr", type=float, default=0.01)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shipped-cache", default=None, help="score cache JSONL of `cotwatch eval --cv source` to reuse")
    p.add_argument("--no-train", action="store_true", help="summarise the folds already scored, train nothing")
    p.add_argument("--no-written", dest="written", action="store_false", help="pool rows only")
    args = p.parse_args(argv)
    if not args.report and not Path(args.pool).is_dir():
        print(f"finetune_cv: pool folder {args.pool} not found", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
