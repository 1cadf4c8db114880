"""`cotwatch replay` over the moto server: archived dead letters and failed batches re-scored through the use
case with the AWS adapters; a dry run writes nothing; replaying twice changes no counter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

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
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import ScoreTraces
from cotwatch.tenancy import TenantBinding
from cotwatch.trace import TraceChunk
from cotwatch.tracking import word_count
from cotwatch_local.cloudformation import LocalNames
from cotwatch_local.poller import FailedRecords, S3Destination
from cotwatch_local.replay import (
    KeepArchived,
    ReplaySet,
    dead_letter_set,
    estimate,
    failed_batch_set,
    run_replay,
)

pytestmark = pytest.mark.integration

BENIGN = "First list the inputs, then add them and divide by their count to get the mean."


def _monitor() -> TraceMonitor:
    # The hashing embedder with thresholds its exemplar similarity crosses for the taxonomy's own exemplars:
    # fast, and what is tested here is delivery, not detection quality.
    categories = load_taxonomy(None).categories
    calibration = Calibration(
        version="replay-test",
        scorer_version="replay-test",
        target_fpr=0.01,
        categories={c: CategoryCalibration(threshold=0.6, scale=0.05) for c in categories},
    )
    return build_monitor(embedder=HashingEmbedder(), use_heads=False, calibration=calibration)


def _unsafe() -> str:
    return next(e.text for c in load_taxonomy(None).categories.values() for e in c.exemplars)


class Stack:
    def __init__(self, names: LocalNames) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.names = names
        self.bucket = names.name("DataBucket")
        self.dead_prefix = f"dead-letters-{self.run}/"
        self.failed_prefix = f"failed-batches-{self.run}/"
        self.topic, self.late_topic = f"replay-{self.run}", f"replay-late-{self.run}"
        self.s3 = boto3.client("s3")
        self.monitor = _monitor()

    def use_case(self, bindings: dict[str, frozenset[str]], archived: ReplaySet | None = None) -> ScoreTraces:
        sink = S3DeadLetterSink(self.bucket, prefix=self.dead_prefix, s3=self.s3)
        return ScoreTraces(
            self.monitor,
            DynamoAlertStore(self.names.name("AlertsTable")),
            SnsAlertPublisher(self.names.arn("AlertsTopic")),
            DynamoTraceStateStore(self.names.name("TraceStateTable")),
            self.counters(),
            KeepArchived(sink, archived.archived) if archived else sink,
            tenants=TenantBinding(bindings),
        )

    def counters(self) -> DynamoCounterStore:
        return DynamoCounterStore(self.names.name("CountersTable"))

    def chunk(self, n: int, text: str) -> TraceChunk:
        return TraceChunk(trace_id=f"t-{self.run}-{n}", seq=0, model="m", text=text, tenant="acme")

    def record(self, topic: str, offset: int, chunk: TraceChunk | None = None, value: bytes = b"") -> KafkaRecord:
        return KafkaRecord(
            topic=topic,
            partition=0,
            offset=offset,
            timestamp_ms=1_760_000_000_000 + offset,
            key=chunk.trace_id.encode() if chunk else None,
            value=chunk.model_dump_json().encode() if chunk else value,
        )

    def cells(self) -> dict[tuple[str, str], int]:
        """Every counter cell of the table (markers and claims are not counters)."""
        client = boto3.client("dynamodb")
        cells: dict[tuple[str, str], int] = {}
        for page in client.get_paginator("scan").paginate(TableName=self.names.name("CountersTable")):
            for item in page["Items"]:
                if item["pk"]["S"].startswith("hour#"):
                    cells[(item["pk"]["S"], item["sk"]["S"])] = int(item["count"]["N"])
        return cells

    def keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="")
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def alerts(self) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb").Table(self.names.name("AlertsTable"))
        items = table.scan()["Items"]
        return sorted((i for i in items if self.run in str(i["trace_id"])), key=lambda i: str(i["alert_id"]))


@pytest.fixture
def stack(local_aws_names: LocalNames, local_aws_env: dict[str, str]) -> Stack:
    return Stack(local_aws_names)


def test_dead_letters_replay_scores_the_transient_and_keeps_the_poison(stack: Stack) -> None:
    # Given one delivery: two good chunks, a malformed record, a record whose value holds a credential (its letter
    # is redacted), and an unsafe chunk on a topic not bound yet (dead-lettered for a cause that can go away)
    first = stack.use_case({stack.topic: frozenset({"*"})})
    secret = b"not json, aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    late = stack.chunk(9, _unsafe())
    delivered = first.process_batch(
        KafkaBatch(
            event_source="SelfManagedKafka",
            records=[
                stack.record(stack.topic, 0, stack.chunk(0, _unsafe())),
                stack.record(stack.topic, 1, stack.chunk(1, BENIGN)),
                stack.record(stack.topic, 2, value=b'{"trace_id": '),
                stack.record(stack.topic, 3, value=secret),
                stack.record(stack.late_topic, 0, late),
            ],
        )
    )
    assert (delivered.scored, delivered.dead_lettered) == (2, 3)
    poison_key = f"{stack.dead_prefix}{stack.topic}/0/{2:020d}.json"
    archived_poison = stack.s3.get_object(Bucket=stack.bucket, Key=poison_key)["Body"].read()

    # When the dead letters are read back and a dry run is made, with the late topic now bound
    found = dead_letter_set(stack.s3, stack.bucket, stack.dead_prefix)
    bindings = {stack.topic: frozenset({"*"}), stack.late_topic: frozenset({"acme"})}
    cells, keys = stack.cells(), stack.keys()
    dry = estimate(
        found,
        counters=stack.counters(),
        count_tokens=word_count,
        token_counter="words",
        windows_per_second=50.0,
        rate_source="given",
        tenants=TenantBinding(bindings),
        batch_size=100,
    )

    # Then it estimates one chunk to score, one poison record, and reports the redacted letter as not replayable
    assert (dry.records, dry.chunks, dry.already_claimed) == (2, 1, 0)
    assert dry.would_dead_letter == {"not_json": 1}
    assert dry.unreplayable == {"value_altered": 1}
    assert dry.tokens == word_count(late.text) and dry.windows >= 1
    assert dry.seconds == pytest.approx(dry.windows / 50.0)
    assert dry.lambda_usd > 0 and dry.invocations == 1
    # And the dry run wrote nothing
    assert stack.cells() == cells and stack.keys() == keys

    # When they are replayed, twice
    replays = [run_replay(found, stack.use_case(bindings, found)) for _ in range(2)]

    # Then the late chunk scores on the first (with its alert) and deduplicates on the second
    outcomes = [{r.record_id: r.outcome for r in rep.records} for rep in replays]
    late_id, poison_id = f"{stack.late_topic}-0@0", f"{stack.topic}-0@2"
    assert outcomes[0] == {late_id: "scored", poison_id: "dead_lettered"}
    assert outcomes[1] == {late_id: "deduplicated", poison_id: "dead_lettered"}
    assert [a["trace_id"] for a in stack.alerts() if a["trace_id"] == late.trace_id]
    # And the poison stays poison, reported with its reason and its archived letter, which is unchanged
    poison = next(r for r in replays[0].records if r.record_id == poison_id)
    assert poison.reason == "not_json" and poison.dead_letter == f"s3://{stack.bucket}/{poison_key}"
    assert stack.s3.get_object(Bucket=stack.bucket, Key=poison_key)["Body"].read() == archived_poison
    assert [u["reason"] for u in replays[0].unreplayable] == ["value_altered"]


def test_replaying_twice_changes_no_counter(stack: Stack) -> None:
    # Given a dead-lettered chunk replayed once (it scored)
    stack.use_case({stack.topic: frozenset({"*"})}).process_batch(
        KafkaBatch(event_source="SelfManagedKafka", records=[stack.record(stack.late_topic, 0, stack.chunk(5, BENIGN))])
    )
    found = dead_letter_set(stack.s3, stack.bucket, stack.dead_prefix)
    bindings = {stack.late_topic: frozenset({"acme"})}
    assert run_replay(found, stack.use_case(bindings, found)).outcomes == {"scored": 1}
    cells, alerts = stack.cells(), stack.alerts()
    # When it is replayed again
    again = run_replay(found, stack.use_case(bindings, found))
    # Then it is deduplicated and no counter cell or alert changed
    assert again.outcomes == {"deduplicated": 1}
    assert stack.cells() == cells and stack.alerts() == alerts


def test_failed_batches_replay_scores_what_never_was_and_deduplicates_the_rest(stack: Stack) -> None:
    # Given a chunk scored on delivery, and a batch the event source gave up on holding it and two more chunks
    done, lost = stack.chunk(0, BENIGN), [stack.chunk(1, _unsafe()), stack.chunk(2, BENIGN)]
    use_case = stack.use_case({stack.topic: frozenset({"*"})})
    use_case.process_batch(KafkaBatch(event_source="SelfManagedKafka", records=[stack.record(stack.topic, 0, done)]))
    records = [stack.record(stack.topic, 0, done)] + [stack.record(stack.topic, i + 1, c) for i, c in enumerate(lost)]
    destination = S3Destination(stack.bucket, prefix=stack.failed_prefix, client=stack.s3)
    destination(
        FailedRecords(
            function_name="score_traces",
            function_arn="arn:aws:lambda:eu-west-1:123456789012:function:score_traces",
            condition="RetryAttemptsExhausted",
            topic=stack.topic,
            partition=0,
            attempts=3,
            error="Task timed out",
            records=tuple(records),
        )
    )
    # And a Lambda-style document without its payload
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=f"{stack.failed_prefix}no-payload.json",
        Body=json.dumps(
            {"KafkaBatchInfo": {"topic": stack.topic, "partition": 0, "firstOffset": 7, "lastOffset": 9}}
        ).encode(),
    )

    # When the failed batches are replayed, twice
    found = failed_batch_set(stack.s3, stack.bucket, [stack.failed_prefix])
    first = run_replay(found, stack.use_case({stack.topic: frozenset({"*"})}))
    cells, alerts = stack.cells(), stack.alerts()
    second = run_replay(found, stack.use_case({stack.topic: frozenset({"*"})}))

    # Then the two lost chunks score (the unsafe one alerts) and the done one is deduplicated
    assert {r.record_id: r.outcome for r in first.records} == {
        f"{stack.topic}-0@0": "deduplicated",
        f"{stack.topic}-0@1": "scored",
        f"{stack.topic}-0@2": "scored",
    }
    assert any(a["trace_id"] == lost[0].trace_id for a in alerts)
    # And the second replay deduplicates everything and changes no counter or alert
    assert second.outcomes == {"deduplicated": 3}
    assert stack.cells() == cells and stack.alerts() == alerts
    # And the document without records is reported with the Kafka range to replay instead
    (missing,) = first.unreplayable
    assert missing["reason"] == "no_payload" and "--from-offset 7 --to-offset 9" in missing["detail"]
