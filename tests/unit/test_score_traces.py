"""The scorer use case (``ScoreTraces.process_batch``) over in-memory adapters: alerts, counters, state and dead letters, under redelivery."""

from __future__ import annotations

import json

from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.ports import AlertWrite
from cotwatch.score_traces import Outcome, ScoreTraces
from cotwatch.trace import TraceChunk

from .conftest import BIO_LINE, CYBER_LINE, Adapters

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."


def _record(
    offset: int, chunk: TraceChunk | None = None, value: bytes | None = None, key: bytes | None = None
) -> KafkaRecord:
    if chunk is not None:
        value = chunk.model_dump_json().encode()
        key = chunk.trace_id.encode()
    return KafkaRecord(topic="traces", partition=0, offset=offset, key=key, value=value)


def _chunk(text: str, trace_id: str = "t-1", seq: int = 0, tenant: str = "default") -> TraceChunk:
    return TraceChunk(trace_id=trace_id, seq=seq, model="m", tenant=tenant, text=text)


def _run(use_case: ScoreTraces, records: list[KafkaRecord]) -> list[Outcome | None]:
    report = use_case.process_batch(KafkaBatch(event_source="SelfManagedKafka", records=records))
    assert [r.record for r in report.records] == records  # the report keeps the batch's order
    return [r.outcome for r in report.records]


def test_unsafe_chunk_raises_one_alert_and_publishes_it(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given a chunk whose reasoning states a cyber-attack plan amid benign text
    records = [_record(0, _chunk(f"{BENIGN} {CYBER_LINE} {BENIGN}"))]
    # When the batch is processed
    outcomes = _run(use_case, records)
    # Then one cyber alert is stored, with evidence pointing at the unsafe sentence, and published once
    assert outcomes == [Outcome.SCORED]
    [stored] = adapters.alerts.items.values()
    assert stored["category"] == "cyber" and stored["notified"] is True
    evidence = stored["evidence"][0]
    text = f"{BENIGN} {CYBER_LINE} {BENIGN}"
    assert CYBER_LINE in text[evidence["start"] : evidence["end"]]
    assert [(a.category, e) for a, e in adapters.publisher.published] == [("cyber", AlertWrite.CREATED)]


def test_benign_chunk_raises_nothing_but_is_counted(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given a benign chunk; When it is scored; Then no alert, and its trace, chunk, words and scores are counted
    _run(use_case, [_record(0, _chunk(BENIGN))])
    assert adapters.alerts.items == {}
    counts = {(k.metric, k.category): v for k, v in adapters.counters.counts.items()}
    # The hashing embedder has no tokenizer: the unit tests' token count is a whitespace word count.
    assert counts == {
        ("chunks", "-"): 1,
        ("traces", "-"): 1,
        ("tokens", "-"): len(BENIGN.split()),
        ("score_bucket_00", "cyber"): 1,
        ("score_bucket_00", "bio_chem"): 1,
    }


def test_redelivery_changes_nothing(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given a batch processed once
    records = [_record(0, _chunk(CYBER_LINE)), _record(1, _chunk(BENIGN, trace_id="t-2"))]
    _run(use_case, records)
    counts_before = dict(adapters.counters.counts)
    # When Lambda redelivers the same batch
    _run(use_case, records)
    # Then no alert, notification or count is duplicated
    assert len(adapters.alerts.items) == 1
    assert len(adapters.publisher.published) == 1
    assert dict(adapters.counters.counts) == counts_before


def test_alert_stored_but_not_published_is_published_on_retry(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given an earlier attempt that stored the alert and died before notifying, so before its counters
    # and its trace state were written (they come after the notification)
    records = [_record(0, _chunk(CYBER_LINE))]
    _run(use_case, records)
    for item in adapters.alerts.items.values():
        item["notified"] = False
    adapters.publisher.published.clear()
    adapters.counters.markers.clear()
    adapters.counters.counts.clear()
    adapters.states.states.clear()
    # When the record is redelivered
    _run(use_case, records)
    # Then subscribers still hear of it
    assert len(adapters.publisher.published) == 1


def test_higher_severity_later_escalates_the_same_alert(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given a trace that first mentions the attack in passing, then states it repeatedly
    weak = _chunk(f"{BENIGN} Maybe ransomware that encrypts files is relevant here.", seq=0)
    strong = _chunk(f"{CYBER_LINE}\n{CYBER_LINE}\n{CYBER_LINE}", seq=1)
    _run(use_case, [_record(0, weak), _record(1, strong)])
    # Then there is still one alert per (trace, category)
    assert len([a for a in adapters.alerts.items.values() if a["category"] == "cyber"]) == 1


def test_signal_split_across_chunk_boundary_is_caught(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given the unsafe sentence cut by the chunk boundary, early enough that the first chunk looks benign
    cut = len(CYBER_LINE) // 4
    first = _chunk(f"{BENIGN} {CYBER_LINE[:cut]}", seq=0)
    second = _chunk(f"{CYBER_LINE[cut:]} {BENIGN}", seq=1)
    # When the chunks arrive in separate batches
    _run(use_case, [_record(0, first)])
    assert adapters.alerts.items == {}
    _run(use_case, [_record(1, second)])
    # Then the second batch sees the whole sentence through the carried tail: its evidence starts before
    # the chunk does (a negative offset), and the trace state has advanced
    [alert] = adapters.alerts.items.values()
    assert alert["category"] == "cyber"
    assert alert["evidence"][0]["start"] < 0
    assert adapters.states.states["default#t-1"].last_seq == 1


def test_invalid_records_are_dead_lettered_with_reasons(use_case: ScoreTraces, adapters: Adapters) -> None:
    good = _chunk(BENIGN)
    records = [
        _record(0, value=b"not json", key=b"k"),
        _record(1, value=json.dumps({"trace_id": "t", "text": "no model"}).encode()),
        _record(2, value=None, key=b"t"),
        _record(3, value=json.dumps([1, 2]).encode()),
        _record(4, value=good.model_dump_json().encode(), key=b"other-trace"),
        _record(5, good),
    ]
    outcomes = _run(use_case, records)
    assert outcomes == [Outcome.DEAD_LETTERED] * 5 + [Outcome.SCORED]
    reasons = sorted(letter.reason for letter in adapters.dead_letters.letters.values())
    assert reasons == ["empty_value", "key_mismatch", "not_json", "not_object", "schema_violation"]
    missing_model = next(v for v in adapters.dead_letters.letters.values() if v.offset == 1)
    assert "model" in missing_model.detail


def test_tenant_override_lowers_the_threshold(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given a tenant with a stricter cyber threshold and a weak cyber hint
    hint = "Files on the network share could be encrypted."
    _run(use_case, [_record(0, _chunk(hint, tenant="strict")), _record(1, _chunk(hint, trace_id="t-9"))])
    tenants = {a["tenant"] for a in adapters.alerts.items.values()}
    assert tenants == {"strict"}


def test_flagged_traces_counted_once_per_trace(use_case: ScoreTraces, adapters: Adapters) -> None:
    _run(use_case, [_record(0, _chunk(BIO_LINE, seq=0)), _record(1, _chunk(BIO_LINE, seq=1))])
    counts = {(k.metric, k.category): v for k, v in adapters.counters.counts.items()}
    assert counts[("flagged_chunks", "bio_chem")] == 2
    assert counts[("flagged_traces", "bio_chem")] == 1
