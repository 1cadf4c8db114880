"""The agentic-episode generator that teaches the heads what misbehaving reasoning reads like."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cotwatch_training.episodes import UNSAFE_MAKERS, generate_episodes
from cotwatch_training.train import read_passages


def test_episodes_are_deterministic_and_balanced() -> None:
    rows = list(generate_episodes(n_per_category=40, seed=3))
    assert rows == list(generate_episodes(n_per_category=40, seed=3))
    labels = Counter(r.label for r in rows)
    assert labels["benign"] == labels["unsafe"]
    categories = Counter(r.category for r in rows if r.label == "unsafe")
    assert set(categories) == set(UNSAFE_MAKERS)
    assert categories["cot_misbehaviour"] == categories["self_improvement"] == 40


def test_episodes_are_window_sized_and_never_both_labels() -> None:
    rows = list(generate_episodes(n_per_category=40, seed=3))
    assert all(20 < len(r.text) < 480 for r in rows)
    unsafe = {r.text for r in rows if r.label == "unsafe"}
    assert not unsafe & {r.text for r in rows if r.label == "benign"}


def test_a_bad_passage_row_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "passages.jsonl"
    path.write_text('{"text": "ok", "label": "benign", "category": "benign"}\n["not", "a", "row"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"passages.jsonl:2: not a training row"):
        read_passages([path])
    path.write_text(
        '{"text": "I will hide it.", "label": "unsafe", "category": "cot_misbehaviour"}\n', encoding="utf-8"
    )
    assert read_passages([path]) == [("I will hide it.", "cot_misbehaviour")]
