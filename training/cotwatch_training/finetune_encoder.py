"""Experiment: fine-tune MiniLM end to end on cotwatch's synthetic rows (6-way classification), then save
it as a sentence-transformers folder that `cotwatch_training.train_heads --encoder` and `--embedding-model` accept.

    HF_HUB_OFFLINE=1 .venv/bin/python -m cotwatch_training.finetune_encoder --out /tmp/models/minilm-ft
    HF_HUB_OFFLINE=1 .venv/bin/python -m cotwatch_training.train_heads \
        --encoder /tmp/models/minilm-ft --name ft --out /tmp/heads-ft.json

Not the default: the result is a 90 MB model that would have to be rebuilt by every deployment, and the
leave-one-source-out gain it bought is small (docs/detection.md, "Encoders compared"). About 5 minutes
for one epoch on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib
import random
import time
from typing import Any

from cotwatch.detection.embedding import DEFAULT_MODEL, resolve_model_path
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch_training.train import training_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the fine-tuned model")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch: Any = importlib.import_module("torch")
    st: Any = importlib.import_module("sentence_transformers")
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    texts, labels = training_rows(load_taxonomy())
    classes = sorted(set(labels))
    targets = [classes.index(label) for label in labels]
    model = st.SentenceTransformer(str(resolve_model_path(DEFAULT_MODEL)), device="cpu")
    head = torch.nn.Linear(model.get_embedding_dimension(), len(classes))
    optimiser = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=args.lr, weight_decay=0.01)
    order = list(range(len(texts)))
    steps = args.epochs * (len(order) // args.batch_size)
    # Short warm-up, then linear decay to zero.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / steps))
    model.train()
    started = time.perf_counter()
    for epoch in range(args.epochs):
        rng.shuffle(order)
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            batch = order[start : start + args.batch_size]
            features = model.preprocess([texts[i] for i in batch])
            embedded = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=1)
            # Cosine logits need a temperature, or the softmax stays nearly flat.
            loss = torch.nn.functional.cross_entropy(20.0 * head(embedded), torch.tensor([targets[i] for i in batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{args.epochs}: last loss {loss.item():.3f}, {time.perf_counter() - started:.0f}s")
    model.eval()
    model.save(args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
