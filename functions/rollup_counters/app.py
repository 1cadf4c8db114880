"""rollup_counters: every hour, copy the last complete hour of counters from DynamoDB to S3 for Athena.

Wiring only: the use case is ``cotwatch.rollup``, the handler ``cotwatch.handlers.rollup_counters``.
"""

from __future__ import annotations

from cotwatch.config import RollupSettings
from cotwatch.handlers.rollup_counters import make_handler
from cotwatch.wiring import build_rollup

lambda_handler = make_handler(build_rollup(RollupSettings()))
