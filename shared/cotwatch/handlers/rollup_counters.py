"""The ``rollup_counters`` Lambda handler around the :class:`~cotwatch.rollup.RollupCounters` use case.

Invoked by an EventBridge schedule (rolls up the hour before the event's ``time``; hour 23 also compacts its
day) or by hand with ``{"hour": "2026-11-26T15"}`` to backfill, or ``{"day": "2026-11-26"}`` to compact a day.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from cotwatch import observability as obs
from cotwatch.redaction import install_log_redaction
from cotwatch.rollup import RollupCounters, parse_day, parse_hour, previous_hour

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def make_handler(rollup: RollupCounters, *, logger: Logger | None = None, metrics: Metrics | None = None) -> Handler:
    # Every line is redacted (trace text in an exception or extra must not reach CloudWatch).
    logger = install_log_redaction(logger or Logger(service=obs.SERVICE))
    metrics = metrics or Metrics(namespace=obs.NAMESPACE, service=obs.SERVICE)

    @logger.inject_lambda_context
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if event.get("day"):
            day = parse_day(str(event["day"]))
            location, rows = rollup.compact(day)
            logger.info("compacted a day of roll-ups", extra={"day": day, "rows": rows, "location": location})
            return {"day": day, "rows": rows, "location": location}
        if event.get("hour"):
            hour = parse_hour(str(event["hour"]))
        else:
            when = event.get("time")
            hour = previous_hour(datetime.fromisoformat(when.replace("Z", "+00:00")) if when else datetime.now(UTC))
        location, rows = rollup.run(hour)
        metrics.add_metric(name=obs.ROLLUP_ROWS_WRITTEN, unit=MetricUnit.Count, value=rows)
        logger.info("rolled up counters", extra={"hour": hour, "rows": rows, "location": location})
        return {"hour": hour, "rows": rows, "location": location}

    handler: Handler = lambda_handler
    return handler
