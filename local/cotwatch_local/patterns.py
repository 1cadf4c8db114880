"""Emerging patterns, the analyst's share (rig side: scikit-learn is not in the scorer image).

- **Embedding drift per model**: the roll-ups' hourly embedding summaries (``rollups/embeddings/``) of a window
  against the window before it: cosine distance of the two window means, and the Fréchet distance of the two
  diagonal Gaussians (``cotwatch.patterns``).
- **Clusters of suspicious windows** (``patterns/windows/``, written by the scorer: windows no category passes):
  agglomerative clustering (cosine distance, average linkage, a distance threshold, so the number of clusters is
  not fixed in advance) over the window and its baseline, ranked by growth (windows now against before).
  A cluster's id is a digest of its members, so ``list`` and ``promote`` on the same data name the same cluster.
- **Promotion**: ``cotwatch patterns promote CLUSTER --category NAME --out FILE`` writes a taxonomy override
  (``cotwatch.detection.taxonomy.load_taxonomy``): the cluster's redacted excerpts as ``extra_exemplars`` of an
  existing category, or as the ``exemplars`` of a new one. Hashed windows (no-raw-text tenants) hold no text and
  are never exemplars.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch.patterns import (
    ChunkPatterns,
    EmbeddingSummary,
    SuspiciousWindow,
    combine,
    cosine_distance,
    frechet_diagonal,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CLUSTER_DISTANCE = 0.35  # cosine distance at which two groups of windows stop being merged
EXAMPLES = 3


def s3_texts(s3: S3Client, bucket: str, prefix: str) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out.append((obj["Key"].removeprefix(prefix), s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
    return out


def folder_texts(root: Path) -> list[tuple[str, bytes]]:
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def parse_windows(objects: Iterable[tuple[str, bytes]]) -> list[SuspiciousWindow]:
    windows: dict[str, SuspiciousWindow] = {}
    for key, body in objects:
        if key.endswith(".json"):
            for w in ChunkPatterns.model_validate_json(body).windows:
                windows[w.window_id] = w
    return sorted(windows.values(), key=lambda w: (w.hour, w.window_id))


def parse_summaries(objects: Iterable[tuple[str, bytes]]) -> list[EmbeddingSummary]:
    return [
        EmbeddingSummary.model_validate_json(line)
        for key, body in objects
        if key.endswith(".jsonl")
        for line in body.decode().splitlines()
        if line.strip()
    ]


@dataclass(frozen=True)
class Period:
    start: str  # hour buckets "YYYY-MM-DDTHH", start inclusive, end exclusive
    end: str

    def holds(self, hour: str) -> bool:
        return self.start <= hour < self.end


def periods(since: timedelta, now: datetime | None = None) -> tuple[Period, Period]:
    """The window ending with the current hour, and the baseline of the same length before it."""
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    fmt = "%Y-%m-%dT%H"
    return (
        Period((end - since).strftime(fmt), end.strftime(fmt)),
        Period((end - 2 * since).strftime(fmt), (end - since).strftime(fmt)),
    )


def drift_by_model(
    summaries: Sequence[EmbeddingSummary], current: Period, baseline: Period, tenant: str | None = None
) -> list[dict[str, Any]]:
    """Per model: windows in each period, cosine distance of the means, diagonal Fréchet distance."""
    rows: list[dict[str, Any]] = []
    mine = [s for s in summaries if tenant is None or s.tenant == tenant]
    for model in sorted({s.model for s in mine}):
        now = combine(s for s in mine if s.model == model and current.holds(s.hour))
        before = combine(s for s in mine if s.model == model and baseline.holds(s.hour))
        both = now is not None and before is not None
        rows.append(
            {
                "model": model,
                "windows": now.windows if now else 0,
                "baseline_windows": before.windows if before else 0,
                "cosine_distance": cosine_distance(now.mean(), before.mean()) if both and now and before else None,
                "frechet": frechet_diagonal(now, before) if both and now and before else None,
            }
        )
    return rows


@dataclass
class Cluster:
    cluster_id: str
    members: list[SuspiciousWindow]
    current: int
    baseline: int
    nearest: str
    models: dict[str, int] = field(default_factory=dict)

    @property
    def growth(self) -> float:
        """Windows now over windows before (+1 each: a new pattern has a finite, large growth)."""
        return (self.current + 1) / (self.baseline + 1)

    def examples(self, limit: int = EXAMPLES) -> list[str]:
        texts = [w.excerpt for w in sorted(self.members, key=lambda w: -w.suspicion) if not w.hashed]
        return list(dict.fromkeys(texts))[:limit]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster_id,
            "windows": self.current,
            "baseline_windows": self.baseline,
            "growth": round(self.growth, 3),
            "nearest_category": self.nearest,
            "models": self.models,
            "hashed_windows": sum(w.hashed for w in self.members),
            "examples": self.examples(),
        }


def cluster_windows(
    windows: Sequence[SuspiciousWindow],
    current: Period,
    baseline: Period,
    tenant: str | None = None,
    distance: float = CLUSTER_DISTANCE,
) -> list[Cluster]:
    """Clusters of the suspicious windows of both periods, most grown first."""
    from sklearn.cluster import AgglomerativeClustering  # rig only: not in the runtime image

    picked = [
        w
        for w in windows
        if (tenant is None or w.tenant == tenant) and (current.holds(w.hour) or baseline.holds(w.hour))
    ]
    if not picked:
        return []
    if len(picked) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        model = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance
        )
        labels = model.fit_predict(np.asarray([w.embedding for w in picked], dtype=np.float64))
    clusters: list[Cluster] = []
    for label in sorted(set(int(x) for x in labels)):
        members = [w for w, x in zip(picked, labels, strict=True) if int(x) == label]
        digest = hashlib.sha256("\n".join(sorted(w.window_id for w in members)).encode()).hexdigest()[:10]
        clusters.append(
            Cluster(
                cluster_id=f"c-{digest}",
                members=members,
                current=sum(current.holds(w.hour) for w in members),
                baseline=sum(baseline.holds(w.hour) for w in members),
                nearest=Counter(w.nearest for w in members).most_common(1)[0][0],
                models=dict(Counter(w.model for w in members)),
            )
        )
    return sorted(clusters, key=lambda c: (-c.growth, -c.current, c.cluster_id))


def promote(
    cluster: Cluster,
    category: str,
    out: Path,
    name: str | None = None,
    definition: str | None = None,
    limit: int = 5,
) -> dict[str, Any]:
    """Merge the cluster's redacted excerpts into the override at ``out`` as exemplars of ``category``, check
    that the taxonomy loads with it, and return what was added."""
    texts = [t.strip("… ").strip() for t in cluster.examples(limit)]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"cluster {cluster.cluster_id} has no text to promote: its windows are hashed (no-raw-text)")
    override: dict[str, Any] = yaml.safe_load(out.read_text(encoding="utf-8")) or {} if out.exists() else {}
    categories = override.setdefault("categories", {})
    spec = categories.get(category) or {}
    builtin = load_taxonomy().categories
    if category in builtin:
        key = "extra_exemplars"
    else:
        key = "exemplars"
        spec.setdefault("name", name or category.replace("_", " "))
        spec.setdefault("definition", definition or f"Emerging pattern promoted from cluster {cluster.cluster_id}.")
    existing = list(spec.get(key) or [])
    added = [t for t in texts if t not in existing]
    spec[key] = existing + added
    categories[category] = spec
    out.write_text(yaml.safe_dump(override, sort_keys=False, allow_unicode=True), encoding="utf-8")
    taxonomy = load_taxonomy(out)  # the scorer's own loader must accept it
    return {"category": category, "field": key, "added": added, "taxonomy_version": taxonomy.version}


# ------------------------------------------------------------------------------------------ CLI


def inputs(
    prefix_windows: str = "patterns/windows/", prefix_summaries: str = "rollups/embeddings/"
) -> tuple[list[SuspiciousWindow], list[EmbeddingSummary], str]:
    """From the running local stack's bucket if it is up, else the last demo's snapshot."""
    import boto3

    from cotwatch_local.stack import LocalStack

    stack = LocalStack()
    info = stack.info() if stack.status().up else None
    if info is not None:
        from cotwatch_local.invoker import patched_environ

        with patched_environ(info.aws_env):
            s3 = boto3.client("s3")
            bucket = info.names.name("DataBucket")
            return (
                parse_windows(s3_texts(s3, bucket, prefix_windows)),
                parse_summaries(s3_texts(s3, bucket, prefix_summaries)),
                "the running local stack",
            )
    folder = stack.state_root / "tracking"
    return (
        parse_windows(folder_texts(folder / prefix_windows)),
        parse_summaries(folder_texts(folder / prefix_summaries)),
        f"the snapshot in {folder}",
    )


def summary(since: timedelta, tenant: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """What ``patterns list`` prints, for the report."""
    windows, summaries, source = inputs()
    current, baseline = periods(since, now)
    return {
        "source": source,
        "window": [current.start, current.end],
        "baseline": [baseline.start, baseline.end],
        "drift": drift_by_model(summaries, current, baseline, tenant),
        "clusters": [c.as_dict() for c in cluster_windows(windows, current, baseline, tenant)],
    }


def cmd_patterns(args: argparse.Namespace) -> int:
    from cotwatch_local.report import parse_span

    windows, summaries, source = inputs()
    current, baseline = periods(parse_span(args.since))
    clusters = cluster_windows(windows, current, baseline, args.tenant)
    if args.action == "list":
        answer = {
            "source": source,
            "window": [current.start, current.end],
            "baseline": [baseline.start, baseline.end],
            "drift": drift_by_model(summaries, current, baseline, args.tenant),
            "clusters": [c.as_dict() for c in clusters],
        }
        print(json.dumps(answer, indent=2))
        return 0
    if not args.cluster or not args.category:
        raise SystemExit("promote needs CLUSTER and --category")
    match = [c for c in clusters if c.cluster_id == args.cluster]
    if not match:
        raise SystemExit(f"no cluster {args.cluster!r} in {source}; `cotwatch patterns list` names them")
    try:
        done = promote(match[0], args.category, Path(args.out), args.name, args.definition)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    print(json.dumps({**done, "out": args.out, "load_with": f"TAXONOMY_PATH={args.out}"}, indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "promote"])
    parser.add_argument("cluster", nargs="?", help="with promote: a cluster id from `list`")
    parser.add_argument("--since", default="7d", help="window ending now (baseline: the one before)")
    parser.add_argument("--tenant")
    parser.add_argument("--category", help="with promote: an existing category, or a new id (a-z, 0-9, _)")
    parser.add_argument("--name", help="with promote of a new category: its name")
    parser.add_argument("--definition", help="with promote of a new category: its definition")
    parser.add_argument("--out", default="taxonomy-override.yaml")
    parser.set_defaults(func=cmd_patterns)
