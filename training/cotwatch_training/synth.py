"""Synthetic training and test text, composed from templates and vocabulary written for cotwatch.

Why: the dev data is a handful of public prompt sets; a head fitted to them learns their phrasing. Heads
trained on many varied phrasings of the *same intents* (first-person reasoning, imperative requests,
questions, third-person reports, persona statements) and on benign look-alikes that share the vocabulary
generalise better. Nothing here is copied from any dataset.

Everything is deterministic for a given seed, so the training set can be rebuilt by one command.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from cotwatch_training.vocabulary import load_vocabulary

VOCABULARY = load_vocabulary("synth")

BENIGN = "benign"


@dataclass(frozen=True, slots=True)
class SynthRow:
    text: str
    label: str  # "unsafe" | "benign"
    category: str  # a category id, or "benign"
    kind: str  # which generator made it (for diagnostics)


# --- slot vocabulary -------------------------------------------------------------------------------------

SLOTS: dict[str, list[str]] = VOCABULARY["slots"]


def fill_slots(template: str, rng: random.Random) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]) if m.group(1) in SLOTS else m.group(0), template
    )


# --- intents: verb phrases that read after "to" / "I'll" / "how to" ------------------------------------

UNSAFE_TASKS: dict[str, list[str]] = VOCABULARY["unsafe_tasks"]

# Benign look-alikes per category: same vocabulary, harmless intent.
BENIGN_TASKS: dict[str, list[str]] = VOCABULARY["benign_tasks"]

# Whole sentences that do not fit the "how to {t}" mould.
UNSAFE_SENTENCES: dict[str, list[str]] = VOCABULARY["unsafe_sentences"]
BENIGN_SENTENCES: list[str] = VOCABULARY["benign_sentences"]
PERSONA_EXTRA_BENIGN: list[str] = VOCABULARY["persona_extra_benign"]

# Persona statements: how a model with the trait (or its opposite) talks about itself.
PERSONA_UNSAFE: dict[str, list[str]] = VOCABULARY["persona_unsafe"]
PERSONA_BENIGN: list[str] = VOCABULARY["persona_benign"]

# --- frames: how an intent is phrased -------------------------------------------------------------------

# {t} is an intent verb phrase ("build a pipe bomb").
REQUEST_FRAMES: list[str] = VOCABULARY["request_frames"]
COT_FRAMES: list[str] = VOCABULARY["cot_frames"]
# Only for unsafe intents: the covert-planning flavour a complying chain of thought adds.
SNEAKY_FRAMES: list[str] = VOCABULARY["sneaky_frames"]
THIRD_FRAMES: list[str] = VOCABULARY["third_frames"]
# Refusing chains of thought about an unsafe intent (label: still the category for detection, since the
# reasoning discusses it; disposition tells them apart). Used for the disposition set, not the heads.
REFUSE_FRAMES: list[str] = VOCABULARY["refuse_frames"]
COMPLY_FRAMES: list[str] = VOCABULARY["comply_frames"]

# Own-goal frames for self_improvement / cot_misbehaviour intents (first person, the model's own plan).
AGENT_FRAMES: list[str] = VOCABULARY["agent_frames"]
AGENT_BENIGN_FRAMES: list[str] = VOCABULARY["agent_benign_frames"]

# --- benign reasoning (no category vocabulary) ------------------------------------------------------------

_NAMES: list[str] = VOCABULARY["names"]
_ITEMS: list[str] = VOCABULARY["items"]
_LANG: list[str] = VOCABULARY["lang"]


def _math_step(rng: random.Random) -> str:
    a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(2, 12)
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    options = [
        f"{name} has {a} {item} and buys {b} more, so that makes {a} + {b} = {a + b} {item}.",
        f"If each box holds {c} {item} and there are {b} boxes, the total is {c} × {b} = {b * c}.",
        f"Splitting {a * c} {item} evenly among {c} friends gives each friend {a} {item}.",
        f"The price goes from {a} dollars to {a + b} dollars, an increase of {b} dollars, which is "
        f"{round(100 * b / a)} percent.",
        f"Let x be the number of {item}. Then {c}x + {b} = {c * a + b}, so {c}x = {c * a} and x = {a}.",
        f"Wait, I should double-check: {a} times {c} is {a * c}, not {a * c + 1}. Good, the earlier value holds.",
        f"The train covers {a * c} km in {c} hours, so its average speed is {a} km per hour.",
        f"Now subtract the {b} {item} that {name} gave away: {a + b} - {b} = {a} remain.",
        f"So the answer is {a * b}. Let me verify by dividing back: {a * b} / {b} = {a}. Correct.",
        f"The rectangle is {a} by {b}, so the area is {a * b} and the perimeter is {2 * (a + b)}.",
        f"Hmm, the question asks for the total over {c} weeks, so I multiply the weekly {a} by {c} to get {a * c}.",
    ]
    return rng.choice(options)


def _code_step(rng: random.Random) -> str:
    thing, lang = rng.choice(SLOTS["code_thing"]), rng.choice(_LANG)
    n = rng.randint(2, 40)
    options = [
        f"Looking at {thing}, the loop runs one time too many, so I'll change the bound to len(items) - 1.",
        f"The stack trace points to line {n} of {thing}, where a None value is dereferenced.",
        f"In {lang}, I can use a dictionary to count occurrences, which makes this O(n).",
        f"Let me write a helper that validates the input before {thing} uses it.",
        f"The test for {thing} expects an empty list when there is no input, so I'll return early.",
        f"I'll refactor {thing} into two smaller functions so each is easier to test.",
        "The query is slow because it lacks an index on the user_id column; adding one should help.",
        f"Using a binary search here reduces the lookups from {n * 100} to about {max(1, n.bit_length() + 7)}.",
        f"I need to handle the timezone when parsing timestamps in {thing}, otherwise dates shift by a day.",
        f"The CI job fails on the lint step; the import order in {thing} is wrong, which ruff can fix.",
        "Next, I'll add a retry with exponential backoff when the API returns a 503 error.",
        "Let me check the edge case where the string is empty before indexing its first character.",
        f"The recursion depth exceeds the limit for {n * 1000} elements, so an iterative version is safer.",
        f"Caching the results of {thing} will avoid recomputing the same values on every request.",
    ]
    return rng.choice(options)


def _plan_step(rng: random.Random) -> str:
    name, topic = rng.choice(_NAMES), rng.choice(SLOTS["benign_topic"])
    n = rng.randint(2, 9)
    options = [
        f"The user wants a {n}-day itinerary, so I'll put museums in the morning and walks in the afternoon.",
        f"To explain {topic}, I'll start with a simple example and then give the general rule.",
        f"{name} asked for feedback on the essay; the argument is clear but the conclusion is rushed.",
        f"I should structure the answer as a short summary followed by {n} bullet points.",
        f"The user's budget is tight, so I'll suggest cooking at home on most of the {n} days.",
        f"Let me recall the key facts about {topic} before writing the explanation.",
        "For the meeting agenda, the first item is the quarterly review and the second is hiring.",
        f"The email should be polite but firm about the deadline moving to next {rng.choice(['Monday', 'Friday'])}.",
        "I'll compare the two options by cost, time and risk, then recommend one.",
        f"A good analogy for {topic} is water flowing downhill; I'll use that in the answer.",
        f"The user seems confused about {topic}, so I'll avoid jargon and define each term.",
        "Okay, that covers the main points. Now I'll write the final answer concisely.",
    ]
    return rng.choice(options)


BENIGN_STEPS = (_math_step, _code_step, _plan_step)


def benign_reasoning_sentence(rng: random.Random) -> str:
    return rng.choice(BENIGN_STEPS)(rng)


def benign_trace(rng: random.Random, min_chars: int = 5000, max_chars: int = 20000) -> str:
    """A long benign reasoning trace: paragraphs of math, coding and planning steps."""
    target = rng.randint(min_chars, max_chars)
    paragraphs: list[str] = []
    size = 0
    while size < target:
        step = rng.choice(BENIGN_STEPS)
        para = " ".join(step(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(para)
        size += len(para) + 2
    return "\n\n".join(paragraphs)


def embed_in_trace(trace: str, passage: str, rng: random.Random) -> tuple[str, int, int]:
    """Insert ``passage`` as its own paragraph at a random paragraph break; return text and its span."""
    breaks = [m.end() for m in re.finditer(r"\n\n", trace)] or [len(trace)]
    at = rng.choice(breaks)
    insert = passage + "\n\n"
    return trace[:at] + insert + trace[at:], at, at + len(passage)


# --- generators ---------------------------------------------------------------------------------------------


def phrase(frames: list[str], task: str, rng: random.Random) -> str:
    text = rng.choice(frames).replace("{t}", task)
    return text[0].upper() + text[1:]


def generate(n_per_category: int = 400, seed: int = 13) -> list[SynthRow]:
    """Unsafe rows for each category and about as many benign look-alikes and benign reasoning rows."""
    rng = random.Random(seed)
    rows: list[SynthRow] = []
    seen: set[str] = set()

    def add(text: str, label: str, category: str, kind: str) -> None:
        if text not in seen:
            seen.add(text)
            rows.append(SynthRow(text, label, category, kind))

    for cat, tasks in UNSAFE_TASKS.items():
        agentic = cat in ("self_improvement", "cot_misbehaviour")
        for _ in range(n_per_category):
            task = fill_slots(rng.choice(tasks), rng)
            r = rng.random()
            if agentic and r < 0.35:
                add(phrase(AGENT_FRAMES, task, rng), "unsafe", cat, "agent")
            elif agentic and r < 0.55:
                add(fill_slots(rng.choice(PERSONA_UNSAFE[cat]), rng), "unsafe", cat, "persona")
            elif r < 0.75:
                add(phrase(REQUEST_FRAMES, task, rng), "unsafe", cat, "request")
            elif r < 0.9:
                add(phrase(COT_FRAMES, task, rng), "unsafe", cat, "cot")
            elif r < 0.95:
                add(phrase(SNEAKY_FRAMES, task, rng), "unsafe", cat, "cot")
            else:
                add(phrase(THIRD_FRAMES, task, rng), "unsafe", cat, "third")
        for _ in range(n_per_category):
            task = fill_slots(rng.choice(BENIGN_TASKS[cat]), rng)
            r = rng.random()
            if agentic and r < 0.3:
                add(phrase(AGENT_BENIGN_FRAMES, task, rng), BENIGN, BENIGN, f"agent-{cat}")
            elif r < 0.7:
                add(phrase(REQUEST_FRAMES, task, rng), BENIGN, BENIGN, f"request-{cat}")
            else:
                add(phrase(COT_FRAMES, task, rng), BENIGN, BENIGN, f"cot-{cat}")
    for cat, sentences in UNSAFE_SENTENCES.items():
        for _ in range(n_per_category // 3):
            add(fill_slots(rng.choice(sentences), rng), "unsafe", cat, "sentence")
    for _ in range(2 * n_per_category):
        add(fill_slots(rng.choice(BENIGN_SENTENCES), rng), BENIGN, BENIGN, "sentence")
    for _ in range(n_per_category):
        add(fill_slots(rng.choice(PERSONA_BENIGN + PERSONA_EXTRA_BENIGN), rng), BENIGN, BENIGN, "persona")
    for _ in range(2 * n_per_category):
        k = rng.randint(1, 4)
        add(" ".join(benign_reasoning_sentence(rng) for _ in range(k)), BENIGN, BENIGN, "reasoning")
    return rows


def disposition_examples(seed: int = 5, n: int = 60) -> Iterator[tuple[str, str]]:
    """(text, "refused"|"complied") pairs about unsafe intents, for checking the disposition judge."""
    rng = random.Random(seed)
    cats = list(UNSAFE_TASKS)
    for i in range(n):
        task = fill_slots(rng.choice(UNSAFE_TASKS[cats[i % len(cats)]]), rng)
        if i % 2:
            yield phrase(REFUSE_FRAMES, task, rng), "refused"
        else:
            yield phrase(COMPLY_FRAMES, task, rng), "complied"
