"""`cotwatch replay kafka` on the real broker and the moto server: an offset or time range of one partition read
without a consumer group, re-scored through the use case; replaying twice changes no counter."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import boto3
import pytest
from kafka import KafkaProducer

from cotwatch.adapters.aws import (
    DynamoAlertStore,
    DynamoCounterStore,
    DynamoTraceStateStore,
    S3DeadLetterSink,
    SnsAlertPublisher,
)
from cotwatch.detection.calibration import Calibration, CategoryCalibration
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch.score_traces import ScoreTraces
from cotwatch.tenancy import TenantBinding
from cotwatch.trace import TraceChunk
from cotwatch_local.cli import main
from cotwatch_local.cloudformation import LocalNames, create_kafka_topic
from cotwatch_local.replay import kafka_range_set, run_replay

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# The records' timestamps (ms): T0, T0 + 1 s, ... Recent: older ones fall to the broker's retention at once.
T0 = (int(time.time()) - 600) * 1000
BENIGN = "First list the inputs, then add them and divide by their count to get the mean."


def _unsafe() -> str:
    return next(e.text for c in load_taxonomy(None).categories.values() for e in c.exemplars)


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    """A topic of its own with four records: an unsafe chunk, two benign ones and a malformed value at offset 2."""
    name = f"replay-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(kafka_bootstrap, name, 1)
    chunks = [
        TraceChunk(trace_id=f"{name}-{i}", seq=0, model="m", text=t, tenant="acme")
        for i, t in enumerate([_unsafe(), BENIGN, "", BENIGN])
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i, chunk in enumerate(chunks):
        value = b'{"trace_id": ' if i == 2 else chunk.model_dump_json().encode()
        producer.send(name, value=value, key=chunk.trace_id.encode(), partition=0, timestamp_ms=T0 + i * 1000)
    producer.flush()
    producer.close()
    yield name


def _cells(names: LocalNames) -> dict[tuple[str, str], int]:
    cells: dict[tuple[str, str], int] = {}
    for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=names.name("CountersTable")):
        for item in page["Items"]:
            if item["pk"]["S"].startswith("hour#"):
                cells[(item["pk"]["S"], item["sk"]["S"])] = int(item["count"]["N"])
    return cells


def _dead_letter_keys(names: LocalNames, topic: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=names.name("DataBucket"), Prefix=f"dead-letters/{topic}/")
    return [o["Key"] for o in listed.get("Contents", [])]


def _use_case(names: LocalNames, topic: str) -> ScoreTraces:
    categories = load_taxonomy(None).categories
    calibration = Calibration(
        version="replay-test",
        scorer_version="replay-test",
        target_fpr=0.01,
        categories={c: CategoryCalibration(threshold=0.6, scale=0.05) for c in categories},
    )
    return ScoreTraces(
        build_monitor(embedder=HashingEmbedder(), use_heads=False, calibration=calibration),
        DynamoAlertStore(names.name("AlertsTable")),
        SnsAlertPublisher(names.arn("AlertsTopic")),
        DynamoTraceStateStore(names.name("TraceStateTable")),
        DynamoCounterStore(names.name("CountersTable")),
        S3DeadLetterSink(names.name("DataBucket")),
        tenants=TenantBinding({topic: frozenset({"*"})}),
    )


def test_offset_and_time_ranges_are_read_and_replayed_idempotently(
    kafka_bootstrap: str, topic: str, local_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    # When ranges are read by offsets (inclusive) and by times (to-time exclusive)
    by_offset = kafka_range_set(kafka_bootstrap, topic, 0, from_offset=0, to_offset=1)
    by_time = kafka_range_set(
        kafka_bootstrap,
        topic,
        0,
        from_time=_moment(T0 + 1000),
        to_time=_moment(T0 + 3000),
    )
    everything = kafka_range_set(kafka_bootstrap, topic, 0, from_offset=0)
    # Then each holds exactly its records
    assert [r.offset for r in by_offset.records] == [0, 1]
    assert [r.offset for r in by_time.records] == [1, 2]
    assert [r.offset for r in everything.records] == [0, 1, 2, 3]

    # When the whole partition is replayed, twice
    first = run_replay(everything, _use_case(local_names, topic))
    cells = _cells(local_names)
    second = run_replay(everything, _use_case(local_names, topic))

    # Then the chunks score once and deduplicate after, the malformed record is dead-lettered with its reason
    assert first.outcomes == {"scored": 3, "dead_lettered": 1}
    assert second.outcomes == {"deduplicated": 3, "dead_lettered": 1}
    assert {r.reason for r in second.records if r.outcome == "dead_lettered"} == {"not_json"}
    # And the second replay changed no counter
    assert _cells(local_names) == cells


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@pytest.fixture
def scorer_shell_env(
    topic: str, local_function_env: Callable[[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The stack's scorer settings in the environment, with this test's topic bound (else unbound_topic)."""
    env = {**local_function_env("ScoreTracesFunction"), "TENANT_BINDINGS": f"{topic}=*"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return env


def test_cli_dry_run_estimates_and_writes_nothing(
    kafka_bootstrap: str,
    topic: str,
    local_names: LocalNames,
    scorer_shell_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given offset 0 processed before identity claims existed (its marker, no claim), offset 1 dead-lettered
    # once (its marker and its stored letter)
    counters = DynamoCounterStore(local_names.name("CountersTable"))
    counters.apply_once(f"{topic}-0@0", {})
    counters.apply_once(f"{topic}-0@1", {})
    letter = f"dead-letters/{topic}/0/{1:020d}.json"
    boto3.client("s3").put_object(Bucket=local_names.name("DataBucket"), Key=letter, Body=b"{}")
    cells = _cells(local_names)
    # When `cotwatch replay kafka --dry-run` runs on the topic with a given rate
    code = main(
        [
            *("replay", "kafka", "--topic", topic, "--partition", "0", "--from-offset", "0"),
            *("--bootstrap-servers", kafka_bootstrap, "--env-from-shell", "--dry-run", "--windows-per-second", "40"),
        ]
    )
    out = capsys.readouterr().out
    # Then it prints the estimate: offset 0 set aside (it would count twice), two chunks to score, one record
    # that would be dead-lettered, the rate it was given
    assert code == 0
    assert "replay dry run (kafka): nothing was written" in out
    assert "records          3 (not replayable from where they are stored: processed_without_claim: 1)" in out
    assert "chunks to score  2 (already claimed, would be deduplicated: 0)" in out
    assert "would dead-letter 1 (not_json: 1)" in out
    assert "40.0 windows/s (given)" in out and "$0.0000166667/GB-s" in out
    # And nothing was written: no counter moved, no dead letter stored
    assert _cells(local_names) == cells
    assert _dead_letter_keys(local_names, topic) == [letter]


@pytest.mark.model
def test_cli_replay_with_the_real_scorer_twice(
    kafka_bootstrap: str,
    topic: str,
    local_names: LocalNames,
    scorer_shell_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["replay", "kafka", "--topic", topic, "--partition", "0", "--from-offset", "0"]
    args += ["--bootstrap-servers", kafka_bootstrap, "--env-from-shell"]
    # When `cotwatch replay kafka` runs on the topic with the deployed scorer's settings (the real encoder)
    assert main(args) == 0
    first = capsys.readouterr().out
    cells = _cells(local_names)
    # And again
    assert main(args) == 0
    second = capsys.readouterr().out
    # Then the first scores the three chunks and dead-letters the malformed record; the second deduplicates
    assert "scored=3 dead_lettered=1 failed=0 skipped=0 deduplicated=0" in first
    assert f"{topic}-0@2: dead_lettered not_json" in first
    assert "scored=0 dead_lettered=1 failed=0 skipped=0 deduplicated=3" in second
    assert _dead_letter_keys(local_names, topic) == [f"dead-letters/{topic}/0/{2:020d}.json"]
    # And the second changed no counter
    assert _cells(local_names) == cells
