"""chat_notifier: alert-topic messages (SNS) to Slack-compatible webhooks; what cannot be posted to the DLQ.

Wiring only: the handler is ``cotwatch.handlers.chat_notifier``, the formatting and delivery ``cotwatch.chat``.
"""

from __future__ import annotations

from cotwatch.config import ChatNotifierSettings
from cotwatch.wiring_notify import build_chat_notifier

lambda_handler = build_chat_notifier(ChatNotifierSettings())
