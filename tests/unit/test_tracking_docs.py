"""docs/tracking.md shows the tested queries verbatim, so the documented SQL is the SQL the tests run."""

from __future__ import annotations

from pathlib import Path

from cotwatch_local.tracking import query_names, query_text

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tracking.md"


def test_every_tested_query_is_in_the_docs_verbatim() -> None:
    # Given the docs and the query files the integration test runs
    docs = DOCS.read_text(encoding="utf-8")
    # Then each query appears whole, in an SQL block
    assert len(query_names()) == 4
    for name in query_names():
        assert f"```sql\n{query_text(name)}```" in docs, name
