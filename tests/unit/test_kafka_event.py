"""The Kafka event parser accepts every shape Lambda sends and rejects broken envelopes clearly."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from cotwatch.kafka_event import (
    KafkaEventError,
    KafkaRecord,
    build_kafka_event,
    decode_headers,
    encode_headers,
    parse_kafka_event,
)


def _record(topic: str, partition: int, offset: int, key: str | None, value: str) -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": 1764172800000,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(key.encode()).decode() if key is not None else None,
        "value": base64.b64encode(value.encode()).decode(),
        "headers": [{"content-type": [97, 112, 112]}, {"sig": [-1, 0, 127, -128]}],
    }


@pytest.mark.parametrize("source", ["aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka"])
def test_parses_every_kafka_event_source(source: str) -> None:
    # Given an event with two partitions, a null key and signed-byte headers
    event = {
        "eventSource": source,
        "bootstrapServers": "b-1:9092,b-2:9092",
        "records": {
            "traces-0": [_record("traces", 0, 5, "t1", "a"), _record("traces", 0, 6, None, "b")],
            "traces-2": [_record("traces", 2, 9, "t2", "c")],
        },
    }
    # When it is parsed
    batch = parse_kafka_event(event)
    # Then every record is decoded with its coordinates
    assert [r.record_id for r in batch.records] == ["traces-0@5", "traces-0@6", "traces-2@9"]
    assert batch.records[1].key is None
    assert batch.records[0].value == b"a"
    assert batch.records[0].headers == (("content-type", b"app"), ("sig", bytes([255, 0, 127, 128])))
    assert batch.bootstrap_servers == ["b-1:9092", "b-2:9092"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"eventSource": "aws:sqs", "records": {}}, "unsupported eventSource"),
        ({"eventSource": "aws:kafka", "records": []}, "'records' must map"),
        ({"eventSource": "aws:kafka", "records": {"t-0": [{"topic": "t", "partition": 0}]}}, "lacks 'offset'"),
        (
            {
                "eventSource": "aws:kafka",
                "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 1, "value": "%%"}]},
            },
            "not valid base64",
        ),
    ],
)
def test_rejects_malformed_envelopes_with_a_clear_reason(event: dict[str, Any], message: str) -> None:
    with pytest.raises(KafkaEventError, match=message):
        parse_kafka_event(event)


def test_build_and_parse_round_trip() -> None:
    # Given records as the local poller sees them
    records = [
        KafkaRecord(topic="t", partition=1, offset=3, key=None, value=b"{}", headers={"h": b"\xff\x01"}),
        KafkaRecord(topic="t", partition=0, offset=7, key=b"k", value=None),
    ]
    # When built into a Lambda event and parsed back
    parsed = parse_kafka_event(build_kafka_event(records, bootstrap_servers="localhost:9092"))
    # Then nothing is lost
    assert sorted(parsed.records, key=lambda r: r.record_id) == sorted(
        [r.model_copy(update={"timestamp_ms": 0, "timestamp_type": "CREATE_TIME"}) for r in records],
        key=lambda r: r.record_id,
    )


def test_headers_use_java_signed_bytes() -> None:
    assert encode_headers([("x", bytes([0, 127, 128, 255]))]) == [{"x": [0, 127, -128, -1]}]
    assert decode_headers(encode_headers([("x", bytes(range(256)))])) == (("x", bytes(range(256))),)


def test_repeated_header_names_keep_every_value_in_order() -> None:
    # Given a record that carries the same header name twice (Kafka allows it)
    raw = [{"trace-hop": [97]}, {"other": [1]}, {"trace-hop": [98]}]

    # When it is decoded and encoded again
    headers = decode_headers(raw)

    # Then nothing is dropped, the order survives the round trip, and header() reads the last value
    assert headers == (("trace-hop", b"a"), ("other", b"\x01"), ("trace-hop", b"b"))
    assert encode_headers(headers) == raw
    record = KafkaRecord(topic="t", partition=0, offset=1, headers=headers)
    assert record.header("trace-hop") == b"b"
    assert record.header("missing") is None


def test_batch_item_identifier_is_lambdas_composite_shape() -> None:
    record = KafkaRecord(topic="cotwatch-traces", partition=2, offset=16)
    assert record.batch_item_identifier() == {"partition": "cotwatch-traces-2", "offset": 16}
