"""Hourly roll-ups of the DynamoDB counters into S3, laid out for Athena (``dt=``/``hour=`` partitions,
one JSON object per line)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from cotwatch.adapters.aws import s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class HourlyCounters(Protocol):
    def hour(self, hour: str) -> list[dict[str, Any]]: ...


class RollupWriter(Protocol):
    def write(self, hour: str, rows: list[dict[str, Any]]) -> str: ...


def previous_hour(now: datetime) -> str:
    """The last complete UTC hour before ``now``."""
    return (now.astimezone(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H")


def parse_hour(value: str) -> str:
    """Validate an hour bucket such as ``2026-11-26T15``."""
    return datetime.strptime(value, "%Y-%m-%dT%H").strftime("%Y-%m-%dT%H")


class S3RollupWriter:
    def __init__(self, bucket: str, prefix: str = "rollups/", s3: S3Client | None = None) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._s3 = s3 or s3_client()

    def write(self, hour: str, rows: list[dict[str, Any]]) -> str:
        day, hh = hour.split("T")
        # One object per hour, rewritten whole: re-running a roll-up replaces it instead of duplicating rows.
        key = f"{self._prefix}counters/dt={day}/hour={hh}/counters.jsonl"
        body = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")
        return f"s3://{self._bucket}/{key}"


class RollupCounters:
    def __init__(self, counters: HourlyCounters, writer: RollupWriter) -> None:
        self._counters = counters
        self._writer = writer

    def run(self, hour: str) -> tuple[str, int]:
        rows = sorted(self._counters.hour(hour), key=lambda r: (r["tenant"], r["model"], r["metric"], r["category"]))
        return self._writer.write(hour, rows), len(rows)
