"""The preparedness counters (``cotwatch.tracking``) from the scorer use case: they answer for the alerts the
store holds, and stay exact when Lambda redelivers batches or single records."""

from __future__ import annotations

from collections import Counter

from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk
from cotwatch.tracking import SCORE_BUCKETS, bucket_bounds, score_bucket

from .conftest import BIO_LINE, CYBER_LINE, Adapters

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values."
WEAK = f"{BENIGN} Maybe ransomware that encrypts files is relevant here."
STRONG = f"{CYBER_LINE}\n{CYBER_LINE}\n{CYBER_LINE}"


def _record(offset: int, chunk: TraceChunk) -> KafkaRecord:
    return KafkaRecord(
        topic="traces", partition=0, offset=offset, key=chunk.trace_id.encode(), value=chunk.model_dump_json().encode()
    )


def _chunk(text: str, trace_id: str, seq: int = 0, model: str = "m", tenant: str = "acme") -> TraceChunk:
    return TraceChunk(trace_id=trace_id, seq=seq, model=model, tenant=tenant, text=text)


def _run(use_case: ScoreTraces, records: list[KafkaRecord]) -> None:
    use_case.process_batch(KafkaBatch(event_source="SelfManagedKafka", records=records))


def _by(adapters: Adapters, prefix: str) -> Counter[tuple[str, str]]:
    """Counter cells whose metric starts with ``prefix``, summed over hours and models, zeros dropped."""
    out: Counter[tuple[str, str]] = Counter()
    for key, n in adapters.counters.counts.items():
        if key.metric.startswith(prefix):
            out[(key.metric.removeprefix(prefix), key.category)] += n
    return +out


def _store_alerts(adapters: Adapters) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    items = adapters.alerts.items.values()
    severities = Counter((str(a["severity"]), str(a["category"])) for a in items)
    dispositions = Counter((str(a["disposition"]), str(a["category"])) for a in items)
    return severities, dispositions


def _workload() -> list[list[KafkaRecord]]:
    """Three batches: a weak mention (tenant "strict": low cyber threshold) escalated later, a strong trace,
    benign traces on two models."""
    return [
        [
            _record(0, _chunk(WEAK, "t-escalates", 0, tenant="strict")),
            _record(1, _chunk(BENIGN, "t-benign", 0, model="m2")),
            _record(2, _chunk(BIO_LINE, "t-bio", 0)),
        ],
        [
            _record(3, _chunk(STRONG, "t-escalates", 1, tenant="strict")),
            _record(4, _chunk(BENIGN, "t-benign", 1, model="m2")),
        ],
        [_record(5, _chunk(STRONG, "t-strong", 0)), _record(6, _chunk(BIO_LINE, "t-bio", 1))],
    ]


def test_alert_counters_match_the_alert_store_after_escalation(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given a workload where one alert is raised weakly and escalated by a later chunk
    batches = _workload()
    # When it is scored batch by batch
    for batch in batches:
        _run(use_case, batch)
    assert [e.value for a, e in adapters.publisher.published if a.trace_id == "t-escalates"] == [
        "created",
        "escalated",
    ]
    # Then the counters of alerts by severity and disposition are exactly the alert store's tallies
    severities, dispositions = _store_alerts(adapters)
    assert sum(severities.values()) == 3  # t-escalates/cyber, t-bio/bio_chem, t-strong/cyber
    assert _by(adapters, "alerts_severity_") == severities
    assert +Counter({k: v for k, v in _by(adapters, "alerts_").items() if not k[0].startswith("severity")}) == (
        dispositions
    )
    # And traces, chunks and tokens (a word count: the hashing embedder has no tokenizer) are exact
    chunks = [TraceChunk.model_validate_json(r.value or b"") for batch in batches for r in batch]
    assert _by(adapters, "traces")[("", "-")] == 4
    assert _by(adapters, "chunks")[("", "-")] == len(chunks)
    assert _by(adapters, "tokens")[("", "-")] == sum(len(c.text.split()) for c in chunks)
    # And every chunk lands in exactly one score bucket per category
    histogram = _by(adapters, "score_bucket_")
    assert sum(histogram.values()) == len(chunks) * 2
    assert {category for _, category in histogram} == {"cyber", "bio_chem"}


def test_counters_exact_when_batches_and_records_are_redelivered(use_case: ScoreTraces, adapters: Adapters) -> None:
    # Given the workload scored once
    batches = _workload()
    for batch in batches:
        _run(use_case, batch)
    once = dict(adapters.counters.counts)
    # When every batch is redelivered whole, then every record alone, in reverse order
    for batch in batches:
        _run(use_case, batch)
    for record in reversed([r for batch in batches for r in batch]):
        _run(use_case, [record])
    # Then not one counter moved
    assert dict(adapters.counters.counts) == once


def test_score_buckets_cover_zero_to_one() -> None:
    # Given the bucket edges; Then 0 is in the first bucket, 1.0 in the last, and 0.5 starts a bucket
    assert score_bucket(0.0) == 0
    assert score_bucket(1.0) == SCORE_BUCKETS - 1
    assert bucket_bounds(f"score_bucket_{score_bucket(0.5):02d}")[0] == 0.5
