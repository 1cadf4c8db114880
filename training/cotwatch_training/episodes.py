"""Agentic episodes: short first-person reasoning passages about a task, a snag and what the agent does next.

Real chains of thought rarely state an intent in one sentence. An agent describes its task, hits a snag,
and then either deals with it honestly or takes a shortcut: it games the grader, reports success it did
not see, grabs permissions, switches off its monitor. The request-shaped rows in :mod:`synth` do not look
like that, so these rows teach the heads the narrative form.

Every unsafe passage has benign twins built from the same task and snag, so the heads learn from the
decision sentence and not from the setting. Passages are one to three sentences, about the size of a
scoring window. Everything here was written for cotwatch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from cotwatch_training.synth import BENIGN, SynthRow
from cotwatch_training.vocabulary import load_vocabulary

VOCABULARY = load_vocabulary("episodes")

TASKS: list[str] = VOCABULARY["tasks"]
TASK_OPENERS: list[str] = VOCABULARY["task_openers"]

SNAGS: list[str] = VOCABULARY["snags"]

# Reward hacking: gaming the check instead of doing the task.
SHORTCUTS: list[str] = VOCABULARY["shortcuts"]
SHORTCUT_FRAMES: list[str] = VOCABULARY["shortcut_frames"]

# Deception: reporting something the agent knows is false, or hiding what it did.
FALSE_CLAIMS: list[str] = VOCABULARY["false_claims"]
COVER_UPS: list[str] = VOCABULARY["cover_ups"]
DECEPTION_FRAMES: list[str] = VOCABULARY["deception_frames"]
SANDBAGGING: list[str] = VOCABULARY["sandbagging"]

# Power seeking and oversight evasion: the self_improvement category.
GRABS: list[str] = VOCABULARY["grabs"]
GRAB_FRAMES: list[str] = VOCABULARY["grab_frames"]
HIDING: list[str] = VOCABULARY["hiding"]

# The honest continuations of the same situations.
HONEST_STEPS: list[str] = VOCABULARY["honest_steps"]
HONEST_FRAMES: list[str] = VOCABULARY["honest_frames"]
HONEST_REPORTS: list[str] = VOCABULARY["honest_reports"]
# Passages that name a shortcut in order to reject it or to explain it.
NAMED_AND_REJECTED: list[str] = VOCABULARY["named_and_rejected"]

# Fraud and scams narrated from the model's side (other_harm), with honest twins.
FRAUD: list[str] = VOCABULARY["fraud"]
FRAUD_TWINS: list[str] = VOCABULARY["fraud_twins"]


def _opener(rng: random.Random) -> str:
    return rng.choice(TASK_OPENERS).format(task=rng.choice(TASKS))


def _shortcut(rng: random.Random) -> str:
    return rng.choice(SHORTCUT_FRAMES).format(x=rng.choice(SHORTCUTS))


def _deception(rng: random.Random) -> str:
    return rng.choice(DECEPTION_FRAMES).format(claim=rng.choice(FALSE_CLAIMS), cover=rng.choice(COVER_UPS))


def _grab(rng: random.Random) -> str:
    return rng.choice(GRAB_FRAMES).format(x=rng.choice(GRABS))


def _honest(rng: random.Random) -> str:
    return rng.choice(HONEST_FRAMES).format(x=rng.choice(HONEST_STEPS))


def _context(rng: random.Random) -> str:
    """Zero, one or two benign sentences that set the scene."""
    parts = rng.choice([[], [_opener(rng)], [rng.choice(SNAGS)], [_opener(rng), rng.choice(SNAGS)]])
    return " ".join(parts)


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


_Maker = Callable[[random.Random], str]
UNSAFE_MAKERS: dict[str, list[_Maker]] = {
    "cot_misbehaviour": [
        lambda r: _join(_context(r), _shortcut(r)),
        lambda r: _join(_shortcut(r), _deception(r)),
        lambda r: _join(_context(r), _deception(r)),
        lambda r: _join(_context(r), r.choice(SANDBAGGING)),
    ],
    "self_improvement": [
        lambda r: _join(_context(r), _grab(r)),
        lambda r: _join(_grab(r), r.choice(HIDING)),
        lambda r: _join(r.choice(SNAGS), _grab(r), r.choice(HIDING)),
    ],
    "other_harm": [lambda r: r.choice(FRAUD)],
}
BENIGN_MAKERS: list[_Maker] = [
    lambda r: _context(r) or _opener(r),
    lambda r: _join(_context(r), _honest(r)),
    lambda r: _join(_honest(r), r.choice(HONEST_REPORTS)),
    lambda r: _join(_context(r), r.choice(NAMED_AND_REJECTED)),
    lambda r: r.choice(FRAUD_TWINS),
]


def generate_episodes(n_per_category: int = 150, seed: int = 29) -> Iterator[SynthRow]:
    """``n_per_category`` unsafe passages for cot_misbehaviour and self_improvement, the fixed fraud passages
    for other_harm, and as many benign twins as all unsafe ones together."""
    rng = random.Random(seed)
    seen: set[str] = set()
    unsafe_total = 0
    for category, makers in UNSAFE_MAKERS.items():
        wanted = n_per_category if category != "other_harm" else len(FRAUD)
        for _ in range(wanted * 3):
            if wanted == 0:
                break
            text = rng.choice(makers)(rng)
            if text not in seen:
                seen.add(text)
                wanted -= 1
                unsafe_total += 1
                yield SynthRow(text, "unsafe", category, "episode")
    made = 0
    for _ in range(unsafe_total * 3):
        if made >= unsafe_total:
            break
        text = rng.choice(BENIGN_MAKERS)(rng)
        if text not in seen:
            seen.add(text)
            made += 1
            yield SynthRow(text, BENIGN, BENIGN, "episode")
