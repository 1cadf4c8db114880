"""Limits and backpressure: chunks over the window budget are dead letters (never clipped), and a batch near
its deadline hands unprocessed records back as batch item failures instead of timing out."""

from __future__ import annotations

from typing import Any

from cotwatch.handlers import score_traces
from cotwatch.kafka_event import KafkaBatch, KafkaRecord, build_kafka_event
from cotwatch.score_traces import HANDED_BACK, Limits, Outcome, ScoreTraces
from cotwatch.trace import TraceChunk

from .conftest import Adapters

BENIGN = "Let me add the two numbers and then divide by two to find the mean of the values. "


def _rec(offset: int, text: str = BENIGN, trace: str | None = None) -> KafkaRecord:
    chunk = TraceChunk(trace_id=trace or f"t-{offset}", model="m", text=text)
    return KafkaRecord(
        topic="traces", partition=0, offset=offset, key=chunk.trace_id.encode(), value=chunk.model_dump_json().encode()
    )


class FakeContext:
    """A Lambda context whose clock loses ``step_ms`` at every look: the deadline arrives mid-batch."""

    function_name = "ScoreTracesFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:score"
    memory_limit_in_mb = 1024
    aws_request_id = "req-1"
    log_group_name = "/aws/lambda/score"
    log_stream_name = "stream"

    def __init__(self, remaining_ms: int, step_ms: int) -> None:
        self.remaining, self.step = remaining_ms, step_ms

    def get_remaining_time_in_millis(self) -> int:
        self.remaining -= self.step
        return max(self.remaining, 0)


def _use_case(monitor: Any, adapters: Adapters, limits: Limits) -> ScoreTraces:
    return ScoreTraces(
        monitor,
        adapters.alerts,
        adapters.publisher,
        adapters.states,
        adapters.counters,
        adapters.dead_letters,
        limits=limits,
    )


def test_chunks_over_the_limits_are_dead_lettered_not_clipped(monitor: Any, adapters: Adapters) -> None:
    # Given limits of 400 characters and 1 window per chunk
    use_case = _use_case(monitor, adapters, Limits(max_chunk_chars=400, max_windows_per_chunk=1))
    records = [_rec(0), _rec(1, BENIGN * 5), _rec(2, "A short step. " * 28)]
    # When processed
    report = use_case.process_batch(KafkaBatch(event_source="x", records=records))
    # Then the small chunk is scored and each oversized one is a dead letter saying which limit it broke
    assert [r.outcome for r in report.records] == [Outcome.SCORED, Outcome.DEAD_LETTERED, Outcome.DEAD_LETTERED]
    assert {d.offset: d.reason for d in adapters.dead_letters.letters.values()} == {
        1: "chunk_too_large",
        2: "too_many_windows",
    }
    # And nothing of them was counted as scored text
    assert sum(n for k, n in adapters.counters.counts.items() if k.metric == "chunks") == 1


def test_a_batch_near_its_deadline_hands_the_rest_back(monitor: Any, adapters: Adapters) -> None:
    # Given a handler whose context has 60 s left and loses 10 s per look, with a 10 s reserve
    use_case = _use_case(monitor, adapters, Limits(time_reserve_ms=10_000))
    handler = score_traces.make_handler(use_case)
    records = [_rec(i) for i in range(6)]
    # When the six-record batch is handled
    response = handler(build_kafka_event(records), FakeContext(remaining_ms=60_000, step_ms=10_000))  # type: ignore[arg-type]
    # Then the records started before the reserve are done, the rest are batch item failures, none marked done
    failed = [f["itemIdentifier"]["offset"] for f in response["batchItemFailures"]]
    assert failed == [3, 4, 5]
    assert adapters.counters.markers == {"traces-0@0", "traces-0@1", "traces-0@2"}


def test_no_time_to_assess_hands_back_every_record(monitor: Any, adapters: Adapters) -> None:
    # Given less time left than the reserve once decoded; When a batch arrives; Then all of it goes back
    use_case = _use_case(monitor, adapters, Limits(time_reserve_ms=10_000))
    report = use_case.process_batch(
        KafkaBatch(event_source="x", records=[_rec(0), _rec(1)]), remaining_ms=iter([40_000] + [9_000] * 9).__next__
    )
    assert [r.outcome for r in report.records] == [Outcome.FAILED, Outcome.FAILED]
    assert {r.error for r in report.records} == {HANDED_BACK}
    assert adapters.counters.markers == set() and adapters.states.states == {}
