"""Roll-ups of the DynamoDB counters into S3, laid out for Athena.

Per hour, two objects, each rewritten whole on every run (so re-running an hour replaces it, never
duplicates rows):

- ``<prefix>counters/dt=YYYY-MM-DD/hour=HH/counters.jsonl``: one JSON object per counter cell (as before);
- ``<prefix>hourly/dt=YYYY-MM-DD/hh=HH/counters.parquet``: the same cells as Parquet, the Glue table
  ``counters_hourly`` (partition projection on ``dt`` and ``hh``).

Per day, a compaction of that day's hourly Parquet objects into ``<prefix>daily/dt=YYYY-MM-DD/counters.parquet``
(table ``counters_daily``): one object a day keeps long-range queries cheap. It runs when the roll-up of
hour 23 is written, and on demand. Parquet columns: ``hour`` (``YYYY-MM-DDTHH``), ``tenant``, ``model``,
``metric``, ``category``, ``amount`` (int64; ``count`` is a reserved word in Athena's SQL).

pyarrow is imported where Parquet is written or read, so the scorer image (which wires this module but never
rolls up) does not need it. The rollup function is an image of its own with pyarrow in it
(functions/rollup_counters/Dockerfile; it does not fit a zip function and its layer): a roll-up without
pyarrow is a broken package, so it fails with that reason before writing anything rather than leaving the
Athena tables without the hour.
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from cotwatch.adapters.aws import s3_client
from cotwatch.patterns import EmbeddingSummary

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PARQUET_MISSING = (
    "pyarrow is not installed: the rollup function's image (functions/rollup_counters/Dockerfile) installs it, "
    "with the rollup extra (docs/tracking.md)"
)
COLUMNS = ("hour", "tenant", "model", "metric", "category", "amount")
SORT_KEY = ("hour", "tenant", "model", "metric", "category")


class HourlyCounters(Protocol):
    def hour(self, hour: str) -> list[dict[str, Any]]: ...

    def embedding_hour(self, hour: str) -> list[EmbeddingSummary]: ...


class RollupWriter(Protocol):
    def write(self, hour: str, rows: list[dict[str, Any]]) -> str: ...

    def compact(self, day: str) -> tuple[str, int]: ...

    def write_embeddings(self, hour: str, summaries: list[EmbeddingSummary]) -> str: ...


def previous_hour(now: datetime) -> str:
    """The last complete UTC hour before ``now``."""
    return (now.astimezone(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H")


def parse_hour(value: str) -> str:
    """Validate an hour bucket such as ``2026-11-26T15``."""
    return datetime.strptime(value, "%Y-%m-%dT%H").strftime("%Y-%m-%dT%H")


def parse_day(value: str) -> str:
    """Validate a day such as ``2026-11-26``."""
    return datetime.strptime(value, "%Y-%m-%d").strftime("%Y-%m-%d")


def _sorted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in SORT_KEY))


def parquet_available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def to_parquet(rows: Sequence[dict[str, Any]]) -> bytes:
    """Counter rows (``count`` or ``amount``) as a Parquet file with the table's schema, in a stable order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _sorted(rows)
    schema = pa.schema([(c, pa.string()) for c in COLUMNS[:-1]] + [("amount", pa.int64())])
    columns: dict[str, list[Any]] = {c: [str(r[c]) for r in rows] for c in COLUMNS[:-1]}
    columns["amount"] = [int(r["amount"] if "amount" in r else r["count"]) for r in rows]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), buffer, compression="zstd")
    return buffer.getvalue()


def from_parquet(body: bytes) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


class S3RollupWriter:
    def __init__(self, bucket: str, prefix: str = "rollups/", s3: S3Client | None = None) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._s3 = s3 or s3_client()

    def hourly_key(self, hour: str) -> str:
        day, hh = hour.split("T")
        return f"{self._prefix}hourly/dt={day}/hh={hh}/counters.parquet"

    def daily_key(self, day: str) -> str:
        return f"{self._prefix}daily/dt={day}/counters.parquet"

    def write(self, hour: str, rows: list[dict[str, Any]]) -> str:
        if not parquet_available():
            raise RuntimeError(f"cannot roll up {hour}: {PARQUET_MISSING}")
        day, hh = hour.split("T")
        # One object per hour and format, rewritten whole: re-running a roll-up replaces it.
        key = f"{self._prefix}counters/dt={day}/hour={hh}/counters.jsonl"
        body = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
        self._s3.put_object(Bucket=self._bucket, Key=self.hourly_key(hour), Body=to_parquet(rows))
        return f"s3://{self._bucket}/{key}"  # the JSON Lines object, as before; the Parquet one is hourly_key

    def write_embeddings(self, hour: str, summaries: list[EmbeddingSummary]) -> str:
        """The hour's (tenant, model) embedding summaries, JSON Lines, rewritten whole (emerging patterns)."""
        day, hh = hour.split("T")
        key = f"{self._prefix}embeddings/dt={day}/hh={hh}/summaries.jsonl"
        body = "".join(s.model_dump_json() + "\n" for s in summaries)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
        return f"s3://{self._bucket}/{key}"

    def compact(self, day: str) -> tuple[str, int]:
        """Merge the day's hourly Parquet objects into one daily object (rewritten whole: idempotent)."""
        if not parquet_available():
            raise RuntimeError(f"cannot compact {day}: {PARQUET_MISSING}")
        prefix = f"{self._prefix}hourly/dt={day}/"
        rows: list[dict[str, Any]] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".parquet"):
                    body = self._s3.get_object(Bucket=self._bucket, Key=obj["Key"])["Body"].read()
                    rows.extend(from_parquet(body))
        key = self.daily_key(day)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=to_parquet(rows))
        return f"s3://{self._bucket}/{key}", len(rows)


class RollupCounters:
    def __init__(self, counters: HourlyCounters, writer: RollupWriter) -> None:
        self._counters = counters
        self._writer = writer

    def run(self, hour: str) -> tuple[str, int]:
        rows = _sorted(self._counters.hour(hour))
        location = self._writer.write(hour, rows)
        self._writer.write_embeddings(hour, self._counters.embedding_hour(hour))
        if hour.endswith("T23"):  # the day is complete: compact it
            self._writer.compact(hour.split("T")[0])
        return location, len(rows)

    def compact(self, day: str) -> tuple[str, int]:
        return self._writer.compact(day)
