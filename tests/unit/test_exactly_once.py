"""Exactly once per chunk, not per offset: a producer retry that lands the same (tenant, trace_id, seq) at a
new offset is deduplicated (counted, no second effect); the same identity with other content is a dead letter."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import Outcome, ScoreTraces
from cotwatch.trace import TraceChunk

from .conftest import CYBER_LINE, Adapters
from .failing_adapters import DownPublisher
from .test_score_traces_properties import PROPERTY_SETTINGS, Stores, deliveries

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."


def _rec(offset: int, chunk: TraceChunk) -> KafkaRecord:
    return KafkaRecord(
        topic="traces", partition=0, offset=offset, key=chunk.trace_id.encode(), value=chunk.model_dump_json().encode()
    )


def _run(use_case: ScoreTraces, records: list[KafkaRecord]) -> list[Outcome | None]:
    return [r.outcome for r in use_case.process_batch(KafkaBatch(event_source="x", records=records)).records]


def test_a_producer_retry_at_a_new_offset_is_deduplicated(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given an unsafe chunk scored at offset 0
    chunk = TraceChunk(trace_id="t-1", model="m", text=CYBER_LINE)
    _run(use_case, [_rec(0, chunk)])
    counts = dict(adapters.counters.counts)
    # When the producer's retry lands the same chunk at offset 7, and again in one batch at offsets 8 and 9
    later = _run(use_case, [_rec(7, chunk)])
    same_batch = _run(use_case, [_rec(8, chunk), _rec(9, chunk)])
    # Then each is deduplicated: one alert, one notification, counters unchanged but for the dedup count
    assert later == [Outcome.DEDUPLICATED] and same_batch == [Outcome.DEDUPLICATED] * 2
    assert len(adapters.alerts.items) == 1 and len(adapters.publisher.published) == 1
    dedup = {k: n for k, n in adapters.counters.counts.items() if k.metric == "deduplicated"}
    assert sum(dedup.values()) == 3
    assert {k: n for k, n in adapters.counters.counts.items() if k.metric != "deduplicated"} == counts


def test_two_copies_in_one_fresh_batch_are_scored_once(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given a chunk and its retry in the same, first batch
    chunk = TraceChunk(trace_id="t-1", model="m", text=BENIGN)
    # When processed; Then the first is scored, the second deduplicated, and the chunk counted once
    assert _run(use_case, [_rec(0, chunk), _rec(1, chunk)]) == [Outcome.SCORED, Outcome.DEDUPLICATED]
    assert sum(n for k, n in adapters.counters.counts.items() if k.metric == "chunks") == 1


def test_same_identity_other_content_is_a_conflicting_duplicate(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given chunk (t-1, seq 0) scored; When another text claims (t-1, seq 0), later and within one batch
    first = TraceChunk(trace_id="t-1", model="m", text=BENIGN)
    other = TraceChunk(trace_id="t-1", model="m", text=CYBER_LINE)
    _run(use_case, [_rec(0, first)])
    assert _run(use_case, [_rec(5, other)]) == [Outcome.DEAD_LETTERED]
    fresh = TraceChunk(trace_id="t-2", model="m", text=BENIGN)
    forged = TraceChunk(trace_id="t-2", model="m", text=CYBER_LINE)
    assert _run(use_case, [_rec(6, fresh), _rec(7, forged)]) == [Outcome.SCORED, Outcome.DEAD_LETTERED]
    # Then both are dead letters with reason conflicting_duplicate and no alert was raised from them
    assert {d.offset: d.reason for d in adapters.dead_letters.letters.values()} == {
        5: "conflicting_duplicate",
        7: "conflicting_duplicate",
    }
    assert adapters.alerts.items == {}


def test_a_duplicate_of_a_failed_record_fails_too(monitor: Any, adapters: Adapters) -> None:
    # Given SNS down for t-1, and t-1's unsafe chunk twice in one batch
    publisher = DownPublisher(down_for_traces={"t-1"})
    use_case = ScoreTraces(
        monitor, adapters.alerts, publisher, adapters.states, adapters.counters, adapters.dead_letters
    )
    chunk = TraceChunk(trace_id="t-1", model="m", text=CYBER_LINE)
    # When processed; Then neither is marked done: both go back to Lambda
    assert _run(use_case, [_rec(0, chunk), _rec(1, chunk)]) == [Outcome.FAILED, Outcome.FAILED]
    assert adapters.counters.markers == set()


@st.composite
def with_producer_duplicates(draw: st.DrawFn) -> tuple[list[list[KafkaRecord]], list[list[KafkaRecord]], int]:
    """The same batches, and a copy where any subset of the good records is sent again at new offsets,
    into the batch that carried the original or any later one."""
    batches = draw(deliveries())
    copies = [list(b) for b in batches]
    offset, sent = 10_000, 0
    for i, batch in enumerate(batches):
        for record in batch:
            if record.value is None or not record.value.startswith(b'{"') or not draw(st.booleans()):
                continue
            target = draw(st.integers(i, len(batches) - 1))
            copies[target].append(record.model_copy(update={"offset": offset}))
            offset, sent = offset + 1, sent + 1
    return batches, copies, sent


@PROPERTY_SETTINGS
@given(with_producer_duplicates())
def test_redelivering_any_subset_at_new_offsets_changes_nothing(
    case: tuple[list[list[KafkaRecord]], list[list[KafkaRecord]], int],
) -> None:
    batches, with_duplicates, sent = case
    # Given the batches processed as sent, and the same batches with producer duplicates mixed in
    clean, noisy = Stores(), Stores()
    for batch in batches:
        clean.process(batch)
    for batch in with_duplicates:
        noisy.process(batch)

    # Then alerts, notifications, trace state, dead letters and counters are the same, bar the dedup count
    def effects(stores: Stores) -> dict[str, Any]:
        snap = stores.snapshot()
        snap.pop("markers")
        # Wall-clock stamps differ between any two runs; what was decided must not.
        stamps = {"created_at", "updated_at"}
        snap["alerts"] = {
            k: {**{f: v for f, v in a.items() if f not in stamps}, "audit": [e["action"] for e in a["audit"]]}
            for k, a in snap["alerts"].items()
        }
        snap["counts"] = {k: n for k, n in snap["counts"].items() if k.metric != "deduplicated"}
        return snap

    assert effects(noisy) == effects(clean)
    assert sum(n for k, n in noisy.counters.counts.items() if k.metric == "deduplicated") == sent
