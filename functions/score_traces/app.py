"""score_traces: a Kafka batch of reasoning-trace chunks in; alerts, counters and dead letters out.

Wiring only: the domain lives in ``cotwatch.score_traces``. The model loads once per container, at import.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from cotwatch import observability as obs
from cotwatch.config import ScorerSettings
from cotwatch.kafka_event import parse_kafka_event
from cotwatch.score_traces import Outcome, RecordResult
from cotwatch.wiring import build_score_traces

logger = Logger(service=obs.SERVICE)
metrics = Metrics(namespace=obs.NAMESPACE, service=obs.SERVICE)
use_case = build_score_traces(ScorerSettings())
processor = BatchProcessor(event_type=EventType.Kafka)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = parse_kafka_event(event)  # a malformed envelope fails the whole batch: Lambda retries it
    prepared = use_case.prepare(batch.records)
    records = {r.record_id: r for r in batch.records}
    results: list[RecordResult] = []

    def handle(record: KafkaEventRecord) -> None:  # powertools passes it as `record=`
        kafka_record = records[f"{record.topic}-{record.partition}@{record.offset}"]
        result = use_case.apply(prepared, kafka_record)
        if result.outcome is Outcome.DEAD_LETTERED:
            logger.warning(
                "dead-lettered record", extra={"record": kafka_record.record_id, "to": result.dead_letter_location}
            )
        results.append(result)

    response: dict[str, Any] = process_partial_response(event, handle, processor, context)  # type: ignore[assignment]
    # One data point per metric and batch: EMF caps a metric at 100 values per document.
    counts = {
        obs.RECORDS_RECEIVED: len(records),
        obs.RECORDS_SCORED: sum(r.outcome is Outcome.SCORED for r in results),
        obs.RECORDS_DEAD_LETTERED: sum(r.outcome is Outcome.DEAD_LETTERED for r in results),
        obs.RECORDS_FAILED: len(response.get("batchItemFailures", [])),
        obs.ALERTS_RAISED: sum(r.alerts_created for r in results),
        obs.ALERTS_ESCALATED: sum(r.alerts_escalated for r in results),
    }
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return response
