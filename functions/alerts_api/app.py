"""alerts_api: the alerts and subscriptions API behind API Gateway (HTTP API, payload v2).

Wiring only: the routes are ``cotwatch.handlers.alerts_api``, the adapters ``cotwatch.adapters``.
"""

from __future__ import annotations

from cotwatch.config import AlertsApiSettings
from cotwatch.wiring import build_alerts_api

lambda_handler = build_alerts_api(AlertsApiSettings())
