"""The local rig's part of the notification path: what SNS and EventBridge do for the notifiers on AWS.

moto has no model for ``AWS::SNS::Subscription`` (the template's subscription of the chat notifier to the
alert topic is skipped) and runs no Lambda code, so locally:

* :func:`ensure_chat_feed` subscribes a queue of the rig's own to the alert topic, without raw delivery, so
  every message is kept with its SNS envelope (message id, attributes) exactly as SNS hands it to a Lambda
  subscriber;
* :func:`deliver_chat` drains that queue into ``functions/chat_notifier/app.py`` (in-process, with the
  stack's environment), one SNS event per message, as SNS invokes the function;
* :func:`flush_digests` invokes ``functions/flush_digests/app.py`` once, as the schedule does every minute.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3

from cotwatch_local.invoker import LocalInvoker

if TYPE_CHECKING:
    from cotwatch_local.cloudformation import LocalNames

CHAT_NOTIFIER = "ChatNotifierFunction"
DIGEST_FLUSH = "DigestFlushFunction"
QUIET = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}


def chat_feed_name(names: LocalNames) -> str:
    return f"{names.stack_name}-local-chat-feed"


def ensure_chat_feed(names: LocalNames) -> str:
    """The feed queue's URL; created and subscribed to the alert topic once (idempotent)."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName=chat_feed_name(names))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = names.arn("AlertsTopic")
    pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
    if not any(s["Endpoint"] == arn for page in pages for s in page.get("Subscriptions", [])):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)  # the envelope, not raw delivery
    return str(url)


def sns_record(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """One record of the SNS event Lambda receives, from the envelope SNS wrote to the queue."""
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": envelope.get("Type", "Notification"),
            "MessageId": envelope.get("MessageId"),
            "TopicArn": envelope.get("TopicArn"),
            "Subject": envelope.get("Subject"),
            "Message": envelope.get("Message", ""),
            "Timestamp": envelope.get("Timestamp"),
            "MessageAttributes": envelope.get("MessageAttributes") or {},
        },
    }


def deliver_chat(names: LocalNames, environment: dict[str, str]) -> dict[str, int]:
    """Drain the feed into the chat notifier (``environment``: the function's, as the stack gives it); the
    totals of its answers (delivered, dead_lettered)."""
    url = ensure_chat_feed(names)
    invoker = LocalInvoker(environments={CHAT_NOTIFIER: {**environment, **QUIET}})
    sqs = boto3.client("sqs")
    subscription = f"{names.arn('AlertsTopic')}:local-chat-feed"
    totals = {"messages": 0, "delivered": 0, "dead_lettered": 0}
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not batch:
            return totals
        for message in batch:
            # SNS invokes a Lambda subscriber with one record per event.
            event = {"Records": [sns_record(json.loads(message["Body"]), subscription)]}
            answer = invoker.invoke(CHAT_NOTIFIER, event)
            totals["messages"] += 1
            totals["delivered"] += int(answer["delivered"])
            totals["dead_lettered"] += int(answer["dead_lettered"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def flush_digests(environment: dict[str, str]) -> dict[str, int]:
    """One run of the digest flush (``environment``: the function's), as the every-minute schedule invokes it."""
    env = {**environment, **QUIET}
    event = {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": {},
    }
    answer: dict[str, int] = LocalInvoker(environments={DIGEST_FLUSH: env}).invoke(DIGEST_FLUSH, event)
    return answer
