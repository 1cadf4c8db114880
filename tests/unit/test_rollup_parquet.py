"""The roll-up's Parquet encoding, and what the writer does where pyarrow is not installed (a broken package:
the rollup function's image installs it, see cotwatch.rollup)."""

from __future__ import annotations

from typing import Any

import pytest

from cotwatch import rollup
from cotwatch.rollup import S3RollupWriter, from_parquet, to_parquet

ROWS = [
    {"hour": "2026-11-26T15", "tenant": "b", "model": "m", "metric": "chunks", "category": "-", "count": 3},
    {"hour": "2026-11-26T15", "tenant": "a", "model": "m", "metric": "traces", "category": "-", "count": 1},
]


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:  # noqa: N803 (boto3's names)
        self.objects[Key] = Body


def test_parquet_round_trips_in_a_stable_order() -> None:
    # Given counter rows in any order; When encoded twice; Then the bytes are equal and decode sorted, as amount
    assert to_parquet(ROWS) == to_parquet(list(reversed(ROWS)))
    decoded = from_parquet(to_parquet(ROWS))
    assert [(r["tenant"], r["metric"], r["amount"]) for r in decoded] == [("a", "traces", 1), ("b", "chunks", 3)]


def test_without_pyarrow_a_roll_up_fails_with_the_reason_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a runtime without pyarrow (a broken package: the rollup function's image installs it)
    monkeypatch.setattr(rollup, "parquet_available", lambda: False)
    s3 = FakeS3()
    writer = S3RollupWriter("bucket", s3=s3)  # type: ignore[arg-type]
    # When an hour is rolled up; Then it fails naming the image, before any object is written (no hour that
    # JSON Lines has and the Athena tables lack)
    with pytest.raises(RuntimeError, match=r"cannot roll up 2026-11-26T15: pyarrow is not installed.*Dockerfile"):
        writer.write("2026-11-26T15", ROWS)
    assert s3.objects == {}
    # And compaction refuses with the same reason
    with pytest.raises(RuntimeError, match="rollup_counters/Dockerfile"):
        writer.compact("2026-11-26")
