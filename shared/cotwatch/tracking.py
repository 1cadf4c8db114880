"""The preparedness counters: what one scored chunk adds to the hourly cells of (tenant, model, metric, category).

Every increment is derived from the chunk, its assessment and the trace's state *before* the chunk, never from
what a store answered, so a redelivered chunk derives the same increments and the marker in the same
transaction (``CounterStore.apply_once``) keeps them exactly once.

Metrics (``category`` is ``-`` for the trace-level ones):

==========================  ==========================================================================
``traces``                  traces scored (counted at their first chunk, ``seq == 0``)
``chunks``                  chunks scored
``tokens``                  tokens scored (the embedding model's tokenizer; a word count in unit tests)
``flagged_chunks``          chunks over the category's threshold
``flagged_traces``          traces whose first chunk over the threshold this is
``flagged_traces_any``      (category ``-``) traces whose first chunk over any category's threshold this is
``severity_<n>``            flagged chunks by their severity band
``alerts_severity_<n>``     alerts by their current severity: +1 when raised, -1/+1 when escalated,
                            mirroring the alert store (one alert per trace and category, severity only rises)
``alerts_<disposition>``    alerts by the disposition stored with them (replaced whenever a later finding
                            rises above the stored one: :func:`rises`)
``triage_<verdict>``        alerts triaged ``true_positive`` / ``false_positive`` (:func:`triage_increments`)
``score_bucket_<nn>``       histogram of calibrated scores, ``SCORE_BUCKETS`` buckets of equal width
                            over [0, 1]; bucket ``nn`` holds [nn/B, (nn+1)/B), 1.0 in the last one
==========================  ==========================================================================
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cotwatch.detection.models import ChunkAssessment, TraceState
from cotwatch.ports import CounterKey
from cotwatch.trace import TraceChunk

SCORE_BUCKETS = 20
FLAG_SCORE = 0.5  # calibrated scores put every category's threshold at 0.5

TokenCounter = Callable[[str], int]


def word_count(text: str) -> int:
    """A tokenizer stand-in for tests and for scorers without a model tokenizer: whitespace words."""
    return len(text.split())


def score_bucket(score: float) -> int:
    return min(SCORE_BUCKETS - 1, max(0, int(score * SCORE_BUCKETS)))


def bucket_metric(bucket: int) -> str:
    return f"score_bucket_{bucket:02d}"


def bucket_bounds(metric: str) -> tuple[float, float]:
    """The [low, high) score range of a ``score_bucket_<nn>`` metric."""
    index = int(metric.removeprefix("score_bucket_"))
    return index / SCORE_BUCKETS, (index + 1) / SCORE_BUCKETS


def rises(stored: tuple[int, float, str] | None, severity: int, score: float) -> bool:
    """Whether the alert store replaces a stored alert with this finding (``cotwatch.alerts.rises_above``)."""
    return stored is None or score > stored[1] or severity > stored[0]


def with_alerts(state: TraceState, before: TraceState | None, assessment: ChunkAssessment) -> TraceState:
    """The state after the chunk, carrying each category's alert as the store keeps it: the severity only
    rises, score and disposition are those of the last finding that rose above the stored one."""
    alerted = dict(before.alerted) if before is not None else {}
    for finding in assessment.flagged:
        stored = alerted.get(finding.category)
        if rises(stored, finding.severity, finding.score):
            severity = max(finding.severity, stored[0] if stored else 0)
            alerted[finding.category] = (severity, finding.score, assessment.disposition.value)
    return state.model_copy(update={"alerted": alerted})


def chunk_increments(
    chunk: TraceChunk,
    assessment: ChunkAssessment,
    before: TraceState | None,
    count_tokens: TokenCounter = word_count,
) -> Counter[CounterKey]:
    """Everything one scored chunk adds; ``before`` is the trace's state before it (None: a new trace)."""
    hour = CounterKey.hour_of(chunk.created_at)
    prior_peak = before.peak if before is not None else {}
    alerted = before.alerted if before is not None else {}

    def key(metric: str, category: str = "-") -> CounterKey:
        return CounterKey(hour=hour, tenant=chunk.tenant, model=chunk.model, metric=metric, category=category)

    counts: Counter[CounterKey] = Counter({key("chunks"): 1, key("tokens"): count_tokens(chunk.text)})
    if chunk.seq == 0:
        counts[key("traces")] += 1
    for finding in assessment.findings.values():
        counts[key(bucket_metric(score_bucket(finding.score)), finding.category)] += 1
    if assessment.flagged and max(prior_peak.values(), default=0.0) < FLAG_SCORE:
        counts[key("flagged_traces_any")] += 1  # per-category flags would count a multi-category trace twice
    for finding in assessment.flagged:
        category = finding.category
        counts[key("flagged_chunks", category)] += 1
        counts[key(f"severity_{finding.severity}", category)] += 1
        if prior_peak.get(category, 0.0) < FLAG_SCORE:
            counts[key("flagged_traces", category)] += 1
        stored = alerted.get(category)
        if rises(stored, finding.severity, finding.score):  # the store creates or replaces the alert
            severity = max(finding.severity, stored[0] if stored else 0)
            if stored is not None:
                counts[key(f"alerts_severity_{stored[0]}", category)] -= 1
                counts[key(f"alerts_{stored[2]}", category)] -= 1
            counts[key(f"alerts_severity_{severity}", category)] += 1
            counts[key(f"alerts_{assessment.disposition.value}", category)] += 1
    # A -1 and +1 on the same cell (escalated within a disposition) cancel: no write for them.
    return Counter({k: n for k, n in counts.items() if n})


def model_token_counter(embedding_model: str) -> TokenCounter:
    """Count tokens with the embedding model's own tokenizer (``tokenizer.json`` in its folder).

    Special tokens are left out: the count is of the trace's text, whatever the model wraps it in.
    """
    from tokenizers import Tokenizer  # in the scorer image with sentence-transformers; not in the layer

    from cotwatch.detection.embedding import resolve_model_path

    tokenizer = Tokenizer.from_file(str(resolve_model_path(embedding_model) / "tokenizer.json"))
    # The file pads and truncates to the encoder's 128-token input: a count wants neither.
    tokenizer.no_padding()
    tokenizer.no_truncation()

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


# The triage verdicts of the alert lifecycle (cotwatch.alerts.Verdict, in review); precision is
# true_positive / (true_positive + false_positive), the others are shown beside it.
TRIAGE_VERDICTS = ("true_positive", "false_positive", "benign_refusal", "needs_policy")


def triage_increments(
    alert: Mapping[str, Any], verdict: str, at: datetime, previous: str | None = None
) -> Counter[CounterKey]:
    """What a triage verdict on a stored alert adds: ``triage_<verdict>`` in the hour it was given (the hour the
    roll-up of which is still to come); a changed verdict moves the alert out of the old one.

    For the triage workflow to apply with ``CounterStore.apply_once`` under a marker unique to the decision.
    """
    if verdict not in TRIAGE_VERDICTS or (previous is not None and previous not in TRIAGE_VERDICTS):
        raise ValueError(f"triage verdict must be one of {TRIAGE_VERDICTS}, got {verdict!r} (was {previous!r})")
    key = functools.partial(
        CounterKey,
        hour=CounterKey.hour_of(at.astimezone(UTC)),
        tenant=str(alert["tenant"]),
        model=str(alert["model"]),
        category=str(alert["category"]),
    )
    counts: Counter[CounterKey] = Counter({key(metric=f"triage_{verdict}"): 1})
    if previous is not None:
        counts[key(metric=f"triage_{previous}")] -= 1
    return Counter({k: n for k, n in counts.items() if n})


def last_verdict(alert: Mapping[str, Any]) -> str | None:
    """The verdict the counters hold for a stored alert: that of its latest resolution in the audit trail
    (a reopened alert's ``verdict`` field is cleared, but its counted verdict stands until it is resolved again,
    and then moves: :func:`triage_increments` with ``previous``)."""
    for entry in reversed(list(alert.get("audit") or [])):
        if isinstance(entry, Mapping) and entry.get("action") == "resolved" and entry.get("verdict"):
            return str(entry["verdict"])
    return None
