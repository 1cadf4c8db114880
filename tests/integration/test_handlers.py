"""Each function's handler, loaded by the local invoker with its template environment, run on the sample
events in ``events/`` against the moto server: what ``cotwatch invoke`` and ``sam local invoke`` do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from cotwatch.kafka_event import parse_kafka_event
from cotwatch.score_traces import decode_chunk
from cotwatch.trace import TraceChunk
from cotwatch_local.cloudformation import TRACES_TOPIC_PARAMETER, LocalNames, deploy_stack, function_environment
from cotwatch_local.invoker import LocalInvoker
from cotwatch_local.stack import aws_env

pytestmark = [pytest.mark.integration, pytest.mark.model]

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE_TOPIC = "cotwatch-traces"  # the topic of every record in events/score_traces_*.json


@pytest.fixture(scope="module")
def local_aws_names(cotwatch_template: dict[str, Any], moto_endpoint: str) -> LocalNames:
    """A stack of this module's own (overrides the session stack): the sample events carry demo trace ids, and
    the end-to-end tests score the same traces cut into other chunks on the session stack, so there the
    chunk-identity claim would dead-letter these as conflicting duplicates."""
    suffix = uuid.uuid4().hex[:8]
    default_topic = cotwatch_template["Parameters"][TRACES_TOPIC_PARAMETER]["Default"]
    return deploy_stack(
        cotwatch_template,
        endpoint_url=moto_endpoint,
        stack_name=f"cwt-handlers-{suffix}",
        parameter_overrides={TRACES_TOPIC_PARAMETER: f"{default_topic}-{suffix}"},
    )


@pytest.fixture
def local_function_env(local_aws_names: LocalNames, moto_endpoint: str) -> Callable[[str], dict[str, str]]:
    """Function environments read back from this module's stack (the handlers here need no Kafka broker)."""

    def env_for(function_logical_id: str) -> dict[str, str]:
        return {
            **aws_env(moto_endpoint, local_aws_names.region),
            **function_environment(local_aws_names, function_logical_id, moto_endpoint),
        }

    return env_for


@pytest.fixture(scope="module")
def invoker_env() -> dict[str, Any]:
    return {"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}


def scorer_env(local_function_env: Callable[[str], dict[str, str]], invoker_env: dict[str, Any]) -> dict[str, Any]:
    """The stack's scorer environment, with the sample events' topic bound: the session stack's own topic has a
    per-session suffix, and a record from an unbound topic is dead-lettered (tenant_mismatch), not scored."""
    return {**local_function_env("ScoreTracesFunction"), "TENANT_BINDINGS": f"{SAMPLE_TOPIC}=*", **invoker_env}


@pytest.mark.parametrize("event_file", ["score_traces_msk.json", "score_traces_self_managed.json"])
def test_scorer_handles_sample_events_and_dead_letters_the_bad_record(
    event_file: str,
    local_aws_names: LocalNames,
    local_aws_env: dict[str, str],
    local_function_env: Callable[[str], dict[str, str]],
    invoker_env: dict[str, Any],
) -> None:
    # Given a sample Kafka event as Lambda delivers it
    event = json.loads((EVENTS / event_file).read_text())
    records = parse_kafka_event(event).records
    valid = [r for r in records if isinstance(decode_chunk(r), TraceChunk)]
    invalid = [r for r in records if not isinstance(decode_chunk(r), TraceChunk)]
    assert valid and invalid
    invoker = LocalInvoker(environments={"ScoreTracesFunction": scorer_env(local_function_env, invoker_env)})
    # When the scorer handles it
    response = invoker.invoke("score_traces", event)
    # Then no record is reported failed, each bad one is dead-lettered under its coordinates
    assert response == {"batchItemFailures": []}
    s3 = boto3.client("s3")
    bucket = local_aws_names.name("DataBucket")
    for record in invalid:
        key = f"dead-letters/{record.topic}/{record.partition}/{record.offset:020d}.json"
        letter = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert letter["reason"] and letter["offset"] == record.offset
    # And no good record was dead-lettered (it was scored)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dead-letters/").get("Contents", [])
    good_keys = {f"dead-letters/{r.topic}/{r.partition}/{r.offset:020d}.json" for r in valid}
    assert not good_keys & {o["Key"] for o in listed}
    # And the valid records were counted exactly once each, even when handled twice
    invoker.invoke("score_traces", event)
    markers = [
        i
        for i in boto3.resource("dynamodb").Table(local_aws_names.name("CountersTable")).scan()["Items"]
        if str(i["pk"]).startswith("marker#")
    ]
    ids = {f"marker#{r.record_id}" for r in records}
    assert ids <= {str(m["pk"]) for m in markers}


def test_rollup_writes_the_hour_of_counters_to_s3(
    local_aws_names: LocalNames,
    local_aws_env: dict[str, str],
    local_function_env: Callable[[str], dict[str, str]],
    invoker_env: dict[str, Any],
) -> None:
    # Given counters written by the scorer for the sample event's hour
    event = json.loads((EVENTS / "score_traces_msk.json").read_text())
    chunks = [c for c in (decode_chunk(r) for r in parse_kafka_event(event).records) if isinstance(c, TraceChunk)]
    hour = chunks[0].created_at.strftime("%Y-%m-%dT%H")
    invoker = LocalInvoker(
        environments={
            "ScoreTracesFunction": scorer_env(local_function_env, invoker_env),
            "RollupFunction": {**local_function_env("RollupFunction"), **invoker_env},
        }
    )
    invoker.invoke("score_traces", event)
    # When the roll-up runs for that hour (as a backfill)
    result = invoker.invoke("rollup_counters", {"hour": hour})
    # Then one Athena-partitioned JSON-lines object holds every counter cell of the hour
    key = f"rollups/counters/dt={hour[:10]}/hour={hour[11:]}/counters.jsonl"
    assert result["location"].endswith(key) and result["rows"] > 0
    body = boto3.client("s3").get_object(Bucket=local_aws_names.name("DataBucket"), Key=key)["Body"].read().decode()
    rows = [json.loads(line) for line in body.splitlines()]
    assert len(rows) == result["rows"]
    assert {r["hour"] for r in rows} == {hour}
    assert sum(r["count"] for r in rows if r["metric"] == "chunks") >= len(chunks)
