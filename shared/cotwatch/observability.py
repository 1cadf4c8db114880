"""Names shared by the code that emits logs and metrics and the template that alarms on them.

Metrics go out in CloudWatch embedded metric format (powertools ``Metrics``) in namespace ``NAMESPACE`` with
exactly one dimension, ``service`` = ``SERVICE`` (what powertools adds for ``service=``). The alarms and the
dashboard in template.yaml select that dimension set, so a metric emitted with extra dimensions (a
``function_name`` default dimension, say) is invisible to them.

YAML cannot import this module: tests/template checks that template.yaml uses these exact strings.
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "cotwatch"
SERVICE: Final = "cotwatch"
SERVICE_DIMENSION: Final = "service"

# EMF metric names (namespace NAMESPACE, dimension service=SERVICE).
RECORDS_RECEIVED: Final = "RecordsReceived"
RECORDS_SCORED: Final = "RecordsScored"
RECORDS_DEAD_LETTERED: Final = "RecordsDeadLettered"  # alarmed: DeadLettersAlarm
RECORDS_FAILED: Final = "RecordsFailed"  # reported to Lambda as batch item failures, then retried
RECORDS_DEDUPLICATED: Final = "RecordsDeduplicated"  # producer retries of a chunk already scored
ALERTS_RAISED: Final = "AlertsRaised"  # alarmed: AlertRateAlarm (alert-rate spike)
ALERTS_ESCALATED: Final = "AlertsEscalated"
WINDOWS_SCORED: Final = "WindowsScored"
SPANS_SKIPPED: Final = "SpansSkipped"  # OTLP spans that are not GenAI spans or carry no text: counted, not errors
ROLLUP_ROWS_WRITTEN: Final = "RollupRowsWritten"

METRICS: Final = frozenset(
    {
        RECORDS_RECEIVED,
        RECORDS_SCORED,
        RECORDS_DEAD_LETTERED,
        RECORDS_FAILED,
        RECORDS_DEDUPLICATED,
        ALERTS_RAISED,
        ALERTS_ESCALATED,
        WINDOWS_SCORED,
        SPANS_SKIPPED,
        ROLLUP_ROWS_WRITTEN,
    }
)
"""Every custom metric name; the dashboard shows each of them (a test checks)."""
