"""score_traces: a Kafka batch of reasoning-trace chunks in; alerts, counters and dead letters out.

Wiring only: the use case is ``cotwatch.score_traces``, the handler ``cotwatch.handlers.score_traces``.
The model loads once per container, at import.
"""

from __future__ import annotations

from cotwatch.config import ScorerSettings
from cotwatch.handlers.score_traces import make_handler
from cotwatch.wiring import build_score_traces

lambda_handler = make_handler(build_score_traces(ScorerSettings()))
