"""Composition root of the notification functions: the chat notifier and the digest flush."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3

from cotwatch.adapters.aws import BOTO_CONFIG, DynamoCooldownStore, SnsAlertPublisher
from cotwatch.config import ChatNotifierSettings, DigestFlushSettings
from cotwatch.cooldown import FlushDigests

if TYPE_CHECKING:
    from cotwatch.handlers.chat_notifier import Handler as ChatHandler
    from cotwatch.handlers.flush_digests import Handler as FlushHandler


def default_webhook(secret_arn: str | None) -> str | None:
    """The default webhook URL from its secret (read once per container; never logged)."""
    if secret_arn is None:
        return None
    value = boto3.client("secretsmanager", config=BOTO_CONFIG).get_secret_value(SecretId=secret_arn)["SecretString"]
    return value.strip() or None


def build_chat_notifier(settings: ChatNotifierSettings) -> ChatHandler:
    from cotwatch.adapters.aws_chat import DynamoChatSubscriptions
    from cotwatch.chat import WebhookSender
    from cotwatch.handlers.chat_notifier import make_handler

    sqs = boto3.client("sqs", config=BOTO_CONFIG)

    def dead_letter(letter: dict[str, Any]) -> None:
        sqs.send_message(QueueUrl=settings.dead_letter_queue_url, MessageBody=json.dumps(letter, default=str))

    return make_handler(
        WebhookSender(),
        default_webhook(settings.webhook_secret_arn),
        dead_letter,
        routes=DynamoChatSubscriptions(settings.chat_subscriptions_table).routes,
        alert_base_url=settings.alert_link_base_url,
    )


def build_digest_flush(settings: DigestFlushSettings) -> FlushHandler:
    from cotwatch.handlers.flush_digests import make_handler

    return make_handler(
        FlushDigests(
            DynamoCooldownStore(settings.counters_table),
            SnsAlertPublisher(settings.alerts_topic_arn),
            window_seconds=settings.alert_cooldown_seconds,
        )
    )
