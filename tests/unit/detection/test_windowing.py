from __future__ import annotations

import itertools

from cotwatch.detection.windowing import cut_windows, sentence_spans, tail_of


def test_windows_cover_text_and_offsets_match() -> None:
    text = " ".join(f"Sentence number {i} talks about step {i}." for i in range(40))
    windows = cut_windows(text, target_chars=120)
    assert windows[0].start == 0
    assert windows[-1].end == len(text)
    for w in windows:
        assert text[w.start : w.end] == w.text
        assert len(w.text) <= 120
    # Consecutive windows overlap by a sentence, so nothing falls between them.
    for a, b in itertools.pairwise(windows):
        assert b.start <= a.end


def test_windows_do_not_span_paragraphs() -> None:
    text = "Add two and three. That gives five.\n\nThe hidden passage sits here alone.\n\nBack to math now."
    windows = cut_windows(text, target_chars=400)
    assert [w.text for w in windows] == [
        "Add two and three. That gives five.",
        "The hidden passage sits here alone.",
        "Back to math now.",
    ]
    merged = cut_windows(text, target_chars=400, respect_paragraphs=False)
    assert len(merged) == 1


def test_long_sentence_is_split() -> None:
    text = "x" * 1000
    windows = cut_windows(text, target_chars=240)
    assert all(len(w.text) <= 240 for w in windows)
    assert windows[-1].end == 1000


def test_tail_offsets_are_negative_and_tail_only_windows_are_skipped() -> None:
    tail = "The previous chunk ended with this sentence."
    text = "This chunk continues the thought. And adds another sentence."
    windows = cut_windows(text, target_chars=80, tail=tail + " ")
    assert windows[0].start < 0
    full = tail + " " + text
    for w in windows:
        assert full[w.start + len(tail) + 1 : w.end + len(tail) + 1] == w.text
        assert w.end > 0


def test_sentence_spans_and_tail() -> None:
    text = "One. Two! Three?\nFour"
    assert [text[s:e] for s, e in sentence_spans(text)] == ["One.", "Two!", "Three?", "Four"]
    long = "First sentence here. " * 30
    tail = tail_of(long, max_chars=50)
    assert len(tail) <= 50 and tail.startswith("First")
