"""On-failure destinations: where records go once their retries are spent."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch_local.poller.records import SELF_MANAGED_KAFKA

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)


class FailedRecords(BaseModel):
    """Records of one partition that the poller gave up on, with what is known about the failure."""

    model_config = ConfigDict(frozen=True)

    function_name: str
    function_arn: str
    condition: Literal["RetryAttemptsExhausted", "RecordAgeExceeded", "PayloadTooLarge"]
    topic: str
    partition: int
    attempts: int
    request_id: str | None = None
    error: str | None = None
    response: Any = None
    event_source: str = SELF_MANAGED_KAFKA
    bootstrap_servers: str = ""
    records: tuple[KafkaRecord, ...]
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def first_offset(self) -> int:
        return self.records[0].offset

    @property
    def last_offset(self) -> int:
        return self.records[-1].offset

    def to_document(self) -> dict[str, Any]:
        """A JSON document shaped like Lambda's on-failure invocation record, with the payload (as for S3)."""
        return {
            "version": "1.0",
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "requestContext": {
                "requestId": self.request_id,
                "functionArn": self.function_arn,
                "condition": self.condition,
                "approximateInvokeCount": self.attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if self.response is None and self.error else None,
            },
            "KafkaBatchInfo": {
                "batchSize": len(self.records),
                "topic": self.topic,
                "partition": self.partition,
                "bootstrapServers": self.bootstrap_servers,
                "firstOffset": self.first_offset,
                "lastOffset": self.last_offset,
                "offsets": [r.offset for r in self.records],
            },
            "error": self.error,
            "response": self.response,
            "payload": build_kafka_event(
                self.records, event_source=self.event_source, bootstrap_servers=self.bootstrap_servers
            ),
        }


class OnFailureDestination(Protocol):
    """Receives records the poller gives up on. Raising stops the poller before it commits past them."""

    def __call__(self, failure: FailedRecords) -> None: ...


class InMemoryDestination:
    """Keeps failures in a list (tests, local runs)."""

    def __init__(self) -> None:
        self.failures: list[FailedRecords] = []

    def __call__(self, failure: FailedRecords) -> None:
        self.failures.append(failure)

    @property
    def records(self) -> list[KafkaRecord]:
        return [rec for failure in self.failures for rec in failure.records]


class S3Destination:
    """Writes one JSON document per failed partition batch, like Lambda's S3 on-failure destination.

    Key: ``<prefix><topic>/<partition>/<first offset>.json``.
    """

    def __init__(self, bucket: str, *, prefix: str = "failed-batches/", client: S3Client | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client = client
        self.keys: list[str] = []

    def key_for(self, failure: FailedRecords) -> str:
        return f"{self.prefix}{failure.topic}/{failure.partition}/{failure.first_offset}.json"

    def __call__(self, failure: FailedRecords) -> None:
        key = self.key_for(failure)
        body = json.dumps(failure.to_document(), default=str).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        self.keys.append(key)
        logger.info("on-failure: wrote %d record(s) to s3://%s/%s", len(failure.records), self.bucket, key)
