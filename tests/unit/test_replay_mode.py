"""``process_batch(..., replay=True)``: what `cotwatch replay` relies on. Done work is deduplicated and moves no
counter; a record dead-lettered for a cause that is gone scores and counts once; poison stays poison."""

from __future__ import annotations

import copy
from collections import Counter

from cotwatch.detection.monitor import TraceMonitor
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import Outcome, ScoreTraces
from cotwatch.tenancy import TenantBinding
from cotwatch.trace import TraceChunk

from .conftest import CYBER_LINE, Adapters


def _record(offset: int, chunk: TraceChunk | None, topic: str = "traces", value: bytes | None = None) -> KafkaRecord:
    body = value if value is not None else chunk.model_dump_json().encode() if chunk else b"{"
    key = chunk.trace_id.encode() if chunk else None
    return KafkaRecord(topic=topic, partition=0, offset=offset, key=key, value=body)


def _batch(*records: KafkaRecord) -> KafkaBatch:
    return KafkaBatch(event_source="SelfManagedKafka", records=list(records))


def _chunks() -> list[TraceChunk]:
    return [
        TraceChunk(trace_id="t-1", seq=0, model="m", text=f"Let me plan this. {CYBER_LINE}", tenant="acme"),
        TraceChunk(trace_id="t-2", seq=0, model="m", text="Add the numbers and divide by two.", tenant="acme"),
    ]


def _use_case(monitor: TraceMonitor, adapters: Adapters, bindings: dict[str, frozenset[str]]) -> ScoreTraces:
    return ScoreTraces(
        monitor,
        adapters.alerts,
        adapters.publisher,
        adapters.states,
        adapters.counters,
        adapters.dead_letters,
        tenants=TenantBinding(bindings),
    )


def test_replaying_scored_chunks_deduplicates_them_and_changes_no_counter(
    monitor: TraceMonitor, adapters: Adapters
) -> None:
    # Given two chunks scored by the event source
    use_case = _use_case(monitor, adapters, {"traces": frozenset({"*"})})
    batch = _batch(*(_record(i, c) for i, c in enumerate(_chunks())))
    first = use_case.process_batch(batch)
    assert first.scored == 2
    counts = Counter(adapters.counters.counts)
    alerts = copy.deepcopy(vars(adapters.alerts))
    published = list(adapters.publisher.published)
    assert counts  # the scoring counted something to compare against

    # When the same records are replayed, twice
    replays = [use_case.process_batch(batch, replay=True) for _ in range(2)]

    # Then each replay reports both deduplicated, and no counter, alert or notification changed
    assert [[r.outcome for r in rep.records] for rep in replays] == [[Outcome.DEDUPLICATED] * 2] * 2
    assert adapters.counters.counts == counts
    assert vars(adapters.alerts) == alerts
    assert adapters.publisher.published == published


def test_a_dead_letter_whose_cause_is_gone_scores_once_on_replay(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given an unsafe chunk dead-lettered because its topic was not bound yet
    chunk = _chunks()[0]
    record = _record(7, chunk, topic="traces-new")
    before = _use_case(monitor, adapters, {"traces": frozenset({"*"})}).process_batch(_batch(record))
    assert before.records[0].decoded.reason == "unbound_topic"  # type: ignore[union-attr]
    dead_letters = Counter({k: v for k, v in adapters.counters.counts.items() if k.metric == "dead_letters"})

    # When the binding is added and the record is replayed twice
    fixed = _use_case(monitor, adapters, {"traces": frozenset({"*"}), "traces-new": frozenset({"acme"})})
    replays = [fixed.process_batch(_batch(record), replay=True) for _ in range(2)]

    # Then it scores on the first replay (alert raised, chunk counted once) and deduplicates on the second
    assert [rep.records[0].outcome for rep in replays] == [Outcome.SCORED, Outcome.DEDUPLICATED]
    assert replays[0].alerts_raised == 1 and len(adapters.publisher.published) == 1
    chunk_cells = {k: v for k, v in adapters.counters.counts.items() if k.metric == "chunks"}
    assert sum(chunk_cells.values()) == 1
    # And the dead-letter count of its first delivery is not changed by the replays
    assert Counter({k: v for k, v in adapters.counters.counts.items() if k.metric == "dead_letters"}) == dead_letters


def test_poison_stays_poison_on_replay_and_is_counted_once(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given a malformed record dead-lettered on delivery
    use_case = _use_case(monitor, adapters, {"traces": frozenset({"*"})})
    record = _record(3, None, value=b'{"trace_id": ')
    use_case.process_batch(_batch(record))
    counted = dict(adapters.counters.counts)

    # When it is replayed
    report = use_case.process_batch(_batch(record), replay=True)

    # Then it is dead-lettered again with its reason, at its own coordinates, and nothing is counted twice
    (item,) = report.records
    assert item.outcome is Outcome.DEAD_LETTERED
    assert item.decoded.reason == "not_json"  # type: ignore[union-attr]
    assert item.dead_letter_location == "memory://traces/0/3"
    assert dict(adapters.counters.counts) == counted
    assert sum(v for k, v in counted.items() if k.metric == "dead_letters") == 1


def test_a_failed_record_replayed_scores_under_a_replay_marker(monitor: TraceMonitor, adapters: Adapters) -> None:
    # Given a chunk never scored (its batch went to the on-failure destination)
    use_case = _use_case(monitor, adapters, {"traces": frozenset({"*"})})
    record = _record(11, _chunks()[1])
    # When it is replayed
    report = use_case.process_batch(_batch(record), replay=True)
    # Then it scores and its effects are marked as the replay's, not as the event source's delivery
    assert report.records[0].outcome is Outcome.SCORED and report.records[0].counted
    assert adapters.counters.markers == {"replay#traces-0@11"}
