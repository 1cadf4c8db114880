"""The Athena tables of the roll-ups, locally: DuckDB over the Parquet objects on the (moto) S3 bucket.

DuckDB reads S3 through its ``httpfs`` extension, which it downloads at run time; this machine (and CI)
reaches no extension repository, and the PyPI wheel does not bundle it. So the objects are read with boto3
into pyarrow tables and registered as DuckDB relations named as the Glue tables (``counters_hourly``,
``counters_daily``), with the partition columns (``dt``, ``hh``) taken from the keys, as Athena's partition
projection does. The queries in ``data/queries/*.sql`` (also in docs/tracking.md) then run unchanged.
"""

from __future__ import annotations

import importlib.resources
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cotwatch.rollup import COLUMNS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TABLES = {"counters_hourly": ("hourly/", ("dt", "hh")), "counters_daily": ("daily/", ("dt",))}
_PARTITION = re.compile(r"(dt|hh)=([^/]+)/")


def query_names() -> list[str]:
    folder = importlib.resources.files("cotwatch_local") / "data" / "queries"
    return sorted(p.name.removesuffix(".sql") for p in folder.iterdir() if p.name.endswith(".sql"))


def query_text(name: str) -> str:
    path = importlib.resources.files("cotwatch_local") / "data" / "queries" / f"{name}.sql"
    if not path.is_file():
        raise ValueError(f"no query {name!r}; known: {', '.join(query_names())}")
    return path.read_text(encoding="utf-8")


def _schema(partitions: tuple[str, ...]) -> pa.Schema:
    fields = [(c, pa.string()) for c in COLUMNS[:-1]] + [("amount", pa.int64())]
    return pa.schema(fields + [(p, pa.string()) for p in partitions])


def s3_objects(s3: S3Client, bucket: str, prefix: str) -> Iterator[tuple[str, bytes]]:
    """(key relative to ``prefix``, body) of every Parquet object under ``prefix``."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".parquet"):
                yield obj["Key"].removeprefix(prefix), s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()


def folder_objects(root: Path) -> Iterator[tuple[str, bytes]]:
    """The same from a folder laid out as the bucket's prefix (the demo's snapshot)."""
    for path in sorted(root.rglob("*.parquet")):
        yield path.relative_to(root).as_posix(), path.read_bytes()


def read_table(objects: Iterable[tuple[str, bytes]], sub: str, partitions: tuple[str, ...]) -> pa.Table:
    """Every Parquet object under ``sub`` as one table, with its partition values as columns."""
    parts: list[pa.Table] = []
    for key, body in objects:
        if not key.startswith(sub):
            continue
        values = dict(_PARTITION.findall(key))
        if set(partitions) - set(values):
            raise ValueError(f"{key} lacks the partitions {partitions}")
        table = pq.read_table(io.BytesIO(body))
        for name in partitions:
            table = table.append_column(name, pa.array([values[name]] * table.num_rows, pa.string()))
        parts.append(table.cast(_schema(partitions)))
    return pa.concat_tables(parts) if parts else _schema(partitions).empty_table()


def connect_objects(objects: Iterable[tuple[str, bytes]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the roll-up tables registered under their Glue names."""
    listed = list(objects)
    con = duckdb.connect()
    for name, (sub, partitions) in TABLES.items():
        con.register(name, read_table(listed, sub, partitions))
    return con


def connect(s3: S3Client, bucket: str, prefix: str = "rollups/") -> duckdb.DuckDBPyConnection:
    return connect_objects(s3_objects(s3, bucket, prefix))


def run_query(con: duckdb.DuckDBPyConnection, name_or_sql: str) -> list[dict[str, Any]]:
    """A named query (``flag_rate_per_model_per_week``, ...) or SQL text; rows as dicts."""
    sql = query_text(name_or_sql) if re.fullmatch(r"[a-z_]+", name_or_sql) else name_or_sql
    relation = con.sql(sql)
    names = [d[0] for d in relation.description]
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
