"""The roll-up's Parquet encoding, and what the writer does where pyarrow is not installed (the zip-packaged
rollup function today: see cotwatch.rollup)."""

from __future__ import annotations

import logging
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


def test_without_pyarrow_the_hour_is_written_as_json_lines_and_the_skip_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a runtime without pyarrow
    monkeypatch.setattr(rollup, "parquet_available", lambda: False)
    s3 = FakeS3()
    writer = S3RollupWriter("bucket", s3=s3)  # type: ignore[arg-type]
    # When an hour is rolled up (caplog's handler sits on the module's logger itself: a powertools Logger for
    # the "cotwatch" service, made by an earlier test, stops propagation to the root logger)
    rollup.logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=rollup.logger.name):
            writer.write("2026-11-26T15", ROWS)
    finally:
        rollup.logger.removeHandler(caplog.handler)
    # Then the JSON Lines object is there, no Parquet, and the log says why
    assert list(s3.objects) == ["rollups/counters/dt=2026-11-26/hour=15/counters.jsonl"]
    assert "needs its own image" in caplog.text
    # And compaction refuses with the same reason
    with pytest.raises(RuntimeError, match="needs its own image"):
        writer.compact("2026-11-26")
