"""The parts of `cotwatch replay` that need no service: reading letters and failure documents back, the dry-run
arithmetic, the archive-keeping sink, and the CLI's errors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from cotwatch.adapters.memory import MemoryCounterStore, MemoryDeadLetterSink
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch.ports import ChunkIdentity, DeadLetter
from cotwatch.score_traces import identity_key
from cotwatch.tenancy import TenantBinding
from cotwatch.trace import TraceChunk
from cotwatch.tracking import word_count
from cotwatch_local.cli import main
from cotwatch_local.replay import (
    LAMBDA_USD_PER_GB_SECOND,
    KeepArchived,
    ReplaySet,
    Unreplayable,
    calibrate,
    estimate,
    record_from_dead_letter,
    records_from_failed_batch,
    set_aside_unclaimed_done,
)

AT = datetime(2026, 12, 7, tzinfo=UTC)


def _letter(value: bytes | None, **extra: object) -> DeadLetter:
    return DeadLetter.model_validate(
        {
            "reason": "not_json",
            "detail": "bad",
            "topic": "traces",
            "partition": 1,
            "offset": 5,
            "timestamp_ms": 1000,
            "key_b64": base64.b64encode(b"t-1").decode(),
            "value_b64": base64.b64encode(value).decode() if value is not None else None,
            "headers": [("content-type", base64.b64encode(b"application/json").decode())],
            "dead_lettered_at": AT,
            **extra,
        }
    )


def test_a_clean_letter_gives_back_its_record() -> None:
    # Given a letter of a value redaction leaves alone
    record = record_from_dead_letter(_letter(b'{"trace_id": '), "s3://b/k")
    # Then the record is the one that arrived, at its coordinates
    assert record == KafkaRecord(
        topic="traces",
        partition=1,
        offset=5,
        timestamp_ms=1000,
        key=b"t-1",
        value=b'{"trace_id": ',
        headers=(("content-type", b"application/json"),),
    )


def test_a_redacted_or_withheld_letter_is_not_replayable_and_says_what_to_do() -> None:
    # Given a letter whose value held a credential (stored redacted) and a digest-only letter
    redacted = record_from_dead_letter(
        _letter(b"x aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), "a"
    )
    withheld = DeadLetter.withholding_raw_text(
        reason="schema_violation",
        topic="traces",
        partition=1,
        offset=5,
        timestamp_ms=None,
        key=None,
        value=b"{}",
        header_names=[],
        dead_lettered_at=AT,
    )
    # Then neither is re-scored from the archive; each points at the Kafka range of its record
    hint = "cotwatch replay kafka --topic traces --partition 1 --from-offset 5 --to-offset 5"
    assert isinstance(redacted, Unreplayable) and redacted.reason == "value_altered" and hint in redacted.detail
    gone = record_from_dead_letter(withheld, "b")
    assert isinstance(gone, Unreplayable) and gone.reason == "value_withheld" and hint in gone.detail


def test_failed_batch_documents_with_an_object_or_string_payload_or_none() -> None:
    # Given Lambda-shaped on-failure documents
    records = [KafkaRecord(topic="traces", partition=0, offset=o, value=b"{}") for o in (3, 4)]
    event = build_kafka_event(records)
    as_object = records_from_failed_batch({"payload": event}, "a")
    as_string = records_from_failed_batch({"payload": json.dumps(event)}, "b")
    without = records_from_failed_batch(
        {"KafkaBatchInfo": {"topic": "traces", "partition": 0, "firstOffset": 3, "lastOffset": 4}}, "c"
    )
    # Then the records come back either way, and a document without them names its range
    assert isinstance(as_object, list) and [r.offset for r in as_object] == [3, 4]
    assert isinstance(as_string, list) and [r.offset for r in as_string] == [3, 4]
    assert isinstance(without, Unreplayable) and "--from-offset 3 --to-offset 4" in without.detail


def test_the_estimate_leaves_out_claimed_chunks_and_prices_the_rest() -> None:
    # Given three chunks, one already claimed, and a malformed record
    chunks = [TraceChunk(trace_id=f"t-{i}", seq=0, model="m", text="One sentence here. " * 20) for i in range(3)]
    records = [
        KafkaRecord(topic="traces", partition=0, offset=i, key=c.trace_id.encode(), value=c.model_dump_json().encode())
        for i, c in enumerate(chunks)
    ]
    found = ReplaySet(source="kafka")
    for record in [*records, KafkaRecord(topic="traces", partition=0, offset=9, value=b"{")]:
        found.add(record, "kafka")
    counters = MemoryCounterStore()
    counters.apply_once("x", {}, ChunkIdentity(key=identity_key(chunks[0]), fingerprint="f@x"))
    # When it is estimated at 10 windows/s and 2,048 MB
    got = estimate(
        found,
        counters=counters,
        count_tokens=word_count,
        token_counter="words",
        windows_per_second=10.0,
        rate_source="given",
        tenants=TenantBinding({"traces": frozenset({"*"})}),
        batch_size=2,
        memory_mb=2048,
    )
    # Then two chunks are to score, one would deduplicate, one would be dead-lettered
    assert (got.records, got.chunks, got.already_claimed, got.would_dead_letter) == (4, 2, 1, {"not_json": 1})
    assert got.tokens == 2 * word_count(chunks[1].text)
    # And time and cost follow from the windows, the rate, the memory and the invocations
    assert got.seconds == pytest.approx(got.windows / 10.0)
    assert got.lambda_gb_seconds == pytest.approx(got.seconds * 2)
    assert got.invocations == 2
    assert got.lambda_usd == pytest.approx(got.lambda_gb_seconds * LAMBDA_USD_PER_GB_SECOND + 2 * 0.2e-6)
    assert "nothing was written" in got.render()


def test_calibration_measures_a_positive_rate() -> None:
    chunk = TraceChunk(trace_id="t", seq=0, model="m", text="A sentence. " * 50)
    found = ReplaySet(source="kafka")
    found.add(KafkaRecord(topic="traces", partition=0, offset=0, key=b"t", value=chunk.model_dump_json().encode()), "")
    assert calibrate(HashingEmbedder(), found) > 0


def test_a_letter_still_poison_keeps_its_archived_object() -> None:
    # Given the archive-keeping sink of a replay
    inner = MemoryDeadLetterSink()
    sink = KeepArchived(inner, {("traces", 1, 5): "s3://b/dead-letters/traces/1/5.json"})
    # Then an archived record's letter is not rewritten, another record's is
    assert sink.write(_letter(b"{")) == "s3://b/dead-letters/traces/1/5.json" and not inner.letters
    other = _letter(b"{", offset=6)
    assert sink.write(other) == "memory://traces/1/6"


def test_the_cli_names_what_a_kafka_replay_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given scorer settings in the environment
    for name, value in {
        "ALERTS_TABLE": "alerts",
        "COUNTERS_TABLE": "counters",
        "TRACE_STATE_TABLE": "state",
        "DATA_BUCKET": "bucket",
        "ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
        "TENANT_BINDINGS": "traces=*",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    # When a Kafka replay is asked for without a broker, or without a partition
    with pytest.raises(SystemExit, match="give --bootstrap-servers"):
        main(["replay", "kafka", "--topic", "traces", "--partition", "0", "--from-offset", "0", "--env-from-shell"])
    with pytest.raises(SystemExit, match="needs --topic and --partition"):
        main(["replay", "kafka", "--topic", "traces", "--bootstrap-servers", "x:9092", "--env-from-shell"])


def test_records_processed_without_a_claim_are_set_aside_not_replayed() -> None:
    # Given three chunk records: one scored before identity claims existed (marker, no claim), one dead-lettered
    # (marker and a stored letter), one never processed
    chunks = [TraceChunk(trace_id=f"t-{i}", seq=0, model="m", text="A sentence.") for i in range(3)]
    found = ReplaySet(source="kafka")
    for i, c in enumerate(chunks):
        found.add(
            KafkaRecord(
                topic="traces", partition=0, offset=i, key=c.trace_id.encode(), value=c.model_dump_json().encode()
            ),
            f"kafka://traces/0@{i}",
        )
    counters = MemoryCounterStore()
    counters.apply_once("traces-0@0", {})
    counters.apply_once("traces-0@1", {})
    # When the replay set is checked
    aside = set_aside_unclaimed_done(
        found,
        counters=counters,
        dead_lettered=lambda r: r.offset == 1,
        tenants=TenantBinding({"traces": frozenset({"*"})}),
    )
    # Then only the pre-claim record is set aside, reported with why
    assert aside == 1
    assert [r.offset for r in found.records] == [1, 2]
    (reported,) = found.unreplayable
    assert reported.reason == "processed_without_claim" and reported.where == "kafka://traces/0@0"
