"""The Athena tables of the roll-ups in template.yaml: the Glue columns are the Parquet schema the roll-up
writes, and the partition projection reproduces the keys it writes them under."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cotwatch.rollup import COLUMNS, S3RollupWriter

TABLES = {"CountersHourlyTable": "counters_hourly", "CountersDailyTable": "counters_daily"}


def _table(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource = template["Resources"][logical_id]
    assert resource["Type"] == "AWS::Glue::Table"
    assert resource["Properties"]["DatabaseName"] == {"Ref": "TrackingDatabase"}
    table: dict[str, Any] = resource["Properties"]["TableInput"]
    return table


def _sub_text(value: Any) -> str:
    assert isinstance(value, dict) and "Fn::Sub" in value, value
    text = value["Fn::Sub"]
    return str(text if isinstance(text, str) else text[0])


@pytest.mark.parametrize("logical_id", sorted(TABLES))
def test_glue_columns_are_the_parquet_schema(template: dict[str, Any], logical_id: str) -> None:
    # Given the table definition; Then its columns are the roll-up's, amount a bigint, the rest strings
    table = _table(template, logical_id)
    assert table["Name"] == TABLES[logical_id]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == [(c, "bigint" if c == "amount" else "string") for c in COLUMNS]
    assert table["Parameters"]["classification"] == "parquet"
    assert "ParquetHiveSerDe" in table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]


@pytest.mark.parametrize("logical_id", sorted(TABLES))
def test_partition_projection_reproduces_the_writers_keys(template: dict[str, Any], logical_id: str) -> None:
    # Given the projection's location template, filled in for one hour
    table = _table(template, logical_id)
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true"
    keys = [k["Name"] for k in table["PartitionKeys"]]
    location = _sub_text(parameters["storage.location.template"]).replace("${DataBucket}", "bucket")
    filled = location.replace("${!dt}", "2026-11-26").replace("${!hh}", "07")
    # Then the writer's object for that hour (or day) lies directly under it
    writer = S3RollupWriter("bucket", prefix="rollups/", s3=object())  # type: ignore[arg-type]
    key = writer.hourly_key("2026-11-26T07") if "hh" in keys else writer.daily_key("2026-11-26")
    assert f"s3://bucket/{key}".startswith(filled) and "/" not in f"s3://bucket/{key}".removeprefix(filled)
    # And every partition key is projected: dt as a date in the writer's format, hh as two digits 00-23
    assert parameters["projection.dt.type"] == "date" and parameters["projection.dt.format"] == "yyyy-MM-dd"
    if "hh" in keys:
        assert (parameters["projection.hh.range"], parameters["projection.hh.digits"]) == ("0,23", "2")
    assert set(re.findall(r"\$\{!(\w+)\}", location)) == set(keys)


def test_the_rollup_prefix_is_the_tables_prefix(template: dict[str, Any]) -> None:
    # Given the rollup function's prefix; Then both tables live under it
    prefix = template["Resources"]["RollupFunction"]["Properties"]["Environment"]["Variables"]["ROLLUP_PREFIX"]
    for logical_id in TABLES:
        location = _sub_text(_table(template, logical_id)["StorageDescriptor"]["Location"])
        assert location.startswith(f"s3://${{DataBucket}}/{prefix}")
