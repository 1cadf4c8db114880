"""The ``score_traces`` Lambda handler around the :class:`~cotwatch.score_traces.ScoreTraces` use case.

``functions/score_traces/app.py`` builds the use case from settings once per container and calls
:func:`make_handler`; unit tests call it with fakes and the hashing embedder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cotwatch import observability as obs
from cotwatch import stages
from cotwatch.kafka_event import parse_kafka_event
from cotwatch.redaction import install_log_redaction
from cotwatch.score_traces import BatchReport, Outcome, ScoreTraces

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def batch_metrics(report: BatchReport) -> dict[str, int]:
    """One data point per metric and batch: EMF caps a metric at 100 values per document."""
    return {
        obs.RECORDS_RECEIVED: report.received,
        obs.RECORDS_SCORED: report.scored,
        obs.RECORDS_DEAD_LETTERED: report.dead_lettered,
        obs.RECORDS_FAILED: len(report.failed),
        obs.RECORDS_DEDUPLICATED: report.deduplicated,
        obs.WINDOWS_SCORED: report.windows_scored,
        obs.ALERTS_RAISED: report.alerts_raised,
        obs.ALERTS_ESCALATED: report.alerts_escalated,
        obs.SPANS_SKIPPED: report.spans_skipped,
    }


def make_handler(use_case: ScoreTraces, *, logger: Logger | None = None, metrics: Metrics | None = None) -> Handler:
    # Every line is redacted (trace text in an exception or extra must not reach CloudWatch).
    logger = install_log_redaction(logger or Logger(service=obs.SERVICE))
    metrics = metrics or Metrics(namespace=obs.NAMESPACE, service=obs.SERVICE)

    @logger.inject_lambda_context
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        with stages.CLOCK.stage(stages.DECODE):
            batch = parse_kafka_event(event)  # a malformed envelope fails the whole batch: Lambda retries it
        report = use_case.process_batch(batch, remaining_ms=context.get_remaining_time_in_millis)
        for record in report.records:
            if record.outcome is Outcome.DEAD_LETTERED:
                logger.warning(
                    "dead-lettered record",
                    extra={"record": record.record.record_id, "to": record.dead_letter_location},
                )
            elif record.outcome is Outcome.FAILED:
                logger.error("record failed", extra={"record": record.record.record_id, "error": record.error})
        for name, value in batch_metrics(report).items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return {"batchItemFailures": report.batch_item_failures()}

    handler: Handler = lambda_handler
    return handler
