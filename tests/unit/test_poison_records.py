"""One Kafka event, nine good records and every kind of poison: the good ones are scored, each poison record
is dead-lettered with its reason and original coordinates, and nothing fails the batch."""

from __future__ import annotations

import json

from cotwatch.detection.monitor import TraceMonitor
from cotwatch.kafka_event import KafkaRecord, build_kafka_event, parse_kafka_event
from cotwatch.score_traces import Outcome, ScoreTraces
from cotwatch.tenancy import TenantBinding, parse_tenant_bindings
from cotwatch.trace import TraceChunk

from .conftest import Adapters

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."


def _good(offset: int) -> KafkaRecord:
    chunk = TraceChunk(trace_id=f"good-{offset}", model="m", tenant="default", text=BENIGN)
    return KafkaRecord(
        topic="traces",
        partition=offset % 2,
        offset=offset,
        key=chunk.trace_id.encode(),
        value=chunk.model_dump_json().encode(),
    )


def _valid_fields(**changes: object) -> bytes:
    payload: dict[str, object] = {"trace_id": "p", "model": "m", "text": BENIGN, **changes}
    return json.dumps(payload).encode()


POISON: dict[str, bytes] = {
    "too_deep": b"[" * 100_000 + b"]" * 100_000,
    "not_utf8": b'{"trace_id": "p", "text": "\xff\xfe"}',
    "not_json": b'{"trace_id": "p", ',
    "too_large": _valid_fields(text="the mean of two numbers. " * 45_000),
    "schema_violation": _valid_fields(seq="first", final="maybe"),
    "unknown_schema_version": _valid_fields(schema_version=99),
    "not_object": b"[1, 2, 3]",
}


def test_poison_records_are_dead_lettered_and_good_ones_scored(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given one Kafka event: nine good records interleaved with one record of each poison kind
    records: list[KafkaRecord] = []
    offset = 0
    poison_at: dict[tuple[int, int], str] = {}
    kinds = list(POISON.items())
    for i in range(9):
        records.append(_good(offset))
        offset += 1
        if i < len(kinds):
            reason, value = kinds[i]
            records.append(KafkaRecord(topic="traces", partition=offset % 2, offset=offset, value=value))
            poison_at[(offset % 2, offset)] = reason
            offset += 1
    batch = parse_kafka_event(build_kafka_event(records))
    # When the batch is processed
    report = use_case.process_batch(batch)
    # Then the nine good records are scored, the batch reports no failure
    assert report.scored == 9 and report.failed == [] and report.batch_item_failures() == []
    assert report.dead_lettered == len(POISON)
    # And each poison record is in the dead-letter store with its reason and its own coordinates
    letters = {(d.partition, d.offset): d for d in adapters.dead_letters.letters.values()}
    assert {k: d.reason for k, d in letters.items()} == poison_at
    assert all(d.topic == "traces" and d.detail for d in letters.values())
    assert {o for o in (r.outcome for r in report.records)} == {Outcome.SCORED, Outcome.DEAD_LETTERED}


def test_deep_otlp_json_and_proto_exports_are_dead_lettered(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given OTLP records whose JSON nests 100k levels, and a protobuf AnyValue nested thousands deep
    deep_json = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    inner = b""
    for _ in range(5_000):  # AnyValue{array_value (5): ArrayValue{values (1): AnyValue}}
        array = b"\x0a" + _varint(len(inner)) + inner
        inner = b"\x2a" + _varint(len(array)) + array
    attribute = b"\x0a\x01k" + b"\x12" + _varint(len(inner)) + inner  # KeyValue{key, value}
    span = b"\x0a\x10" + b"\x01" * 16 + b"\x12\x08" + b"\x02" * 8 + b"\x4a" + _varint(len(attribute)) + attribute
    scope = b"\x12" + _varint(len(span)) + span
    resource_spans = b"\x12" + _varint(len(scope)) + scope
    deep_proto = b"\x0a" + _varint(len(resource_spans)) + resource_spans
    records = [
        KafkaRecord(
            topic="traces", partition=0, offset=0, value=deep_json, headers=(("cotwatch-encoding", b"otlp_json"),)
        ),
        KafkaRecord(
            topic="traces", partition=0, offset=1, value=deep_proto, headers=(("cotwatch-encoding", b"otlp_proto"),)
        ),
    ]
    # When the batch is processed
    report = use_case.process_batch(parse_kafka_event(build_kafka_event(records)))
    # Then both are dead letters with a reason, and nothing failed
    assert report.failed == [] and report.dead_lettered == 2
    reasons = {d.offset: d.reason for d in adapters.dead_letters.letters.values()}
    assert reasons[0] == "not_otlp" and "too_deep" in next(
        d.detail for d in adapters.dead_letters.letters.values() if d.offset == 0
    )
    assert reasons[1] in {"too_deep", "not_otlp"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_forged_tenants_are_dead_lettered_by_the_topic_binding(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given a scorer whose topic "traces-acme" is bound to acme-labs only, and "shared" to two tenants
    binding = TenantBinding(parse_tenant_bindings("traces-acme=acme-labs,shared=acme-labs|northwind-ai"))
    use_case = ScoreTraces(
        monitor,
        adapters.alerts,
        adapters.publisher,
        adapters.states,
        adapters.counters,
        adapters.dead_letters,
        tenants=binding,
    )

    def rec(offset: int, topic: str, **fields: object) -> KafkaRecord:
        value = json.dumps({"trace_id": f"t{offset}", "model": "m", "text": BENIGN, **fields}).encode()
        return KafkaRecord(topic=topic, partition=0, offset=offset, value=value)

    records = [
        rec(0, "traces-acme"),  # no tenant: the topic's own
        rec(1, "traces-acme", tenant="acme-labs"),
        rec(2, "traces-acme", tenant="northwind-ai"),  # forged
        rec(3, "traces-acme", tenant="../../etc"),  # not a tenant name at all
        rec(4, "shared", tenant="northwind-ai"),
        rec(5, "shared"),  # several tenants, none named
        rec(6, "elsewhere", tenant="acme-labs"),  # a topic bound to nobody
    ]
    # When the batch is processed
    report = use_case.process_batch(parse_kafka_event(build_kafka_event(records)))
    # Then the bound records are scored under their topic's tenant, every other one is a dead letter with why
    assert [r.outcome for r in report.records] == [Outcome.SCORED] * 2 + [Outcome.DEAD_LETTERED] * 2 + [
        Outcome.SCORED
    ] + [Outcome.DEAD_LETTERED] * 2
    assert {k.tenant for k in adapters.counters.counts if k.metric == "chunks"} == {"acme-labs", "northwind-ai"}
    reasons = {d.offset: d.reason for d in adapters.dead_letters.letters.values()}
    assert reasons == {2: "tenant_mismatch", 3: "schema_violation", 5: "tenant_missing", 6: "unbound_topic"}
