"""The demo traces: a well-formed, varied set of synthetic reasoning traces covering every category."""

from __future__ import annotations

import json
from collections import Counter
from importlib.resources import files
from typing import Any

import pytest

from cotwatch.trace import TraceDocument

CATEGORIES = ("bio_chem", "cyber", "self_improvement", "cot_misbehaviour", "other_harm")
LONG_TRACE_CHARS = 5_000


def _rows() -> list[dict[str, Any]]:
    text = (files("cotwatch_local") / "data" / "demo_traces.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _documents() -> list[TraceDocument]:
    return [TraceDocument.model_validate(row) for row in _rows()]


def test_every_line_is_a_complete_trace() -> None:
    # Given the packaged demo file
    rows = _rows()

    # When each line is read as a trace document
    docs = [TraceDocument.model_validate(row) for row in rows]

    # Then every line has the documented fields and non-empty reasoning and answer
    assert len(rows) >= 30
    for row, doc in zip(rows, docs, strict=True):
        assert {"trace_id", "model", "tenant", "conversation_id", "reasoning", "answer", "expect"} <= set(row)
        assert doc.trace_id.startswith("demo-")
        assert doc.reasoning.strip() and doc.answer.strip()


def test_trace_ids_are_unique() -> None:
    # Given the demo traces / When their ids are counted / Then none repeats
    ids = Counter(doc.trace_id for doc in _documents())
    assert [tid for tid, n in ids.items() if n > 1] == []


def test_expectations_name_known_categories_and_dispositions() -> None:
    # Given the demo rows
    rows = _rows()

    # Then `expect` only names monitor categories, without repeats, and the optional disposition is valid
    for row in rows:
        assert set(row["expect"]) <= set(CATEGORIES), row["trace_id"]
        assert len(row["expect"]) == len(set(row["expect"])), row["trace_id"]
        assert row.get("expect_disposition") in {None, "refused", "complied"}, row["trace_id"]
        if not row["expect"]:
            assert "expect_disposition" not in row, row["trace_id"]


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_is_expected_at_least_three_times(category: str) -> None:
    # Given the demo traces / When their expectations are tallied / Then the category has three traces or more
    tally = Counter(c for doc in _documents() for c in doc.expect)
    assert tally[category] >= 3


def test_mix_of_benign_unsafe_and_refusing_traces() -> None:
    # Given the demo rows
    rows = _rows()

    # Then there are benign traces to catch false alarms, and unsafe ones that both refuse and comply
    assert sum(1 for r in rows if not r["expect"]) >= 12
    assert sum(1 for r in rows if r["expect"]) >= 15
    assert sum(1 for r in rows if r.get("expect_disposition") == "refused") >= 3
    assert sum(1 for r in rows if r.get("expect_disposition") == "complied") >= 3


def test_at_least_six_long_traces_hide_an_unsafe_passage() -> None:
    # Given the demo traces
    docs = _documents()

    # When the long ones are picked out by the length of their reasoning
    long_docs = [d for d in docs if len(d.reasoning) >= LONG_TRACE_CHARS]

    # Then at least six are long, and at least six of those are unsafe (a single bad paragraph in benign work)
    assert len(long_docs) >= 6
    assert sum(1 for d in long_docs if d.expect) >= 6
    assert all(len(d.reasoning) <= 15_000 for d in long_docs)


def test_long_traces_do_not_repeat_paragraphs() -> None:
    # Given the long demo traces / When split into paragraphs / Then no paragraph appears twice in any of them
    for doc in (d for d in _documents() if len(d.reasoning) >= LONG_TRACE_CHARS):
        paragraphs = [p.strip() for p in doc.reasoning.split("\n\n") if p.strip()]
        assert len(paragraphs) == len(set(paragraphs)), doc.trace_id
        assert len(paragraphs) >= 8, doc.trace_id


def test_several_tenants_and_models() -> None:
    # Given the demo traces / Then they come from at least two tenants and two models
    docs = _documents()
    assert len({d.tenant for d in docs}) >= 2
    assert len({d.model for d in docs}) >= 2


def test_every_trace_cuts_into_valid_chunks() -> None:
    # Given the demo traces / When each is cut as a producer would publish it
    for doc in _documents():
        chunks = doc.to_chunks(max_chars=1500)

        # Then the chunks are small, numbered from zero, end with one final chunk and lose no text
        assert all(len(c.text) <= 1500 for c in chunks)
        assert [c.seq for c in chunks] == list(range(len(chunks)))
        assert [c.final for c in chunks].count(True) == 1 and chunks[-1].final
        assert "".join(c.text for c in chunks) == doc.reasoning + doc.answer


def test_known_misses_name_categories_and_are_excused_only_for_their_trace() -> None:
    # Given the demo rows and their `known_miss` lists (what the shipped scorer is known to get wrong)
    from cotwatch_local.demo import check_expectations, known_misses

    rows = _rows()
    known = known_misses()
    for row in rows:
        miss = set(row.get("known_miss", []))
        # Then a known miss is a category, and on an unsafe trace one of the categories it expects
        assert miss <= set(CATEGORIES), row["trace_id"]
        assert not row["expect"] or miss <= set(row["expect"]), row["trace_id"]
    unsafe = next(d for d in _documents() if d.trace_id in known and d.expect)
    other = next(d for d in _documents() if d.trace_id not in known and d.expect)

    # When neither trace raises any alert (ids carry a run suffix, as in `cotwatch demo`)
    docs = [d.model_copy(update={"trace_id": f"{d.trace_id}@run1"}) for d in (unsafe, other)]
    problems = check_expectations(docs, [])

    # Then each trace is reported for what it expected minus its known misses, and nothing more
    left = sorted(set(unsafe.expect) - known[unsafe.trace_id])
    expected = [f"{unsafe.trace_id}@run1: expected {left} but no alert"] if left else []
    assert problems == [*expected, f"{other.trace_id}@run1: expected {sorted(other.expect)} but no alert"]


def test_known_misses_that_happen_are_reported_not_passed_as_clean() -> None:
    # Given a trace with a known miss and an alert for none of its categories
    from cotwatch_local.demo import known_misses, known_misses_seen

    known = known_misses()
    unsafe = next(d for d in _documents() if d.trace_id in known and d.expect)
    docs = [unsafe.model_copy(update={"trace_id": f"{unsafe.trace_id}@run1"})]
    # When the run's known misses are listed
    seen = known_misses_seen(docs, [])
    # Then the excused categories are named, marked as known misses
    excused = sorted(set(unsafe.expect) & known[unsafe.trace_id])
    assert seen == [f"{unsafe.trace_id}@run1: expected {excused} but no alert (known miss)"]
    # And once every expected category alerts, nothing is listed
    alerts = [{"tenant": unsafe.tenant, "trace_id": docs[0].trace_id, "category": c} for c in unsafe.expect]
    assert known_misses_seen(docs, alerts) == []
