"""The poller's settings (an event source mapping's) and its running counts."""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from cotwatch_local import LOCAL_ACCOUNT_ID, LOCAL_REGION
from cotwatch_local.poller.records import MAX_PAYLOAD_BYTES, SELF_MANAGED_KAFKA


class PollerConfig(BaseModel):
    """Event source mapping settings (names follow Lambda's where one exists)."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = Field(min_length=1, description="Comma-separated host:port list.")
    topics: tuple[str, ...] = Field(min_length=1)
    function_name: str = "local-function"
    group_id: str | None = None  # Lambda defaults the consumer group id to the mapping's UUID
    batch_size: int = Field(default=100, ge=1, le=10_000)
    batching_window_ms: int = Field(default=500, ge=0, le=300_000)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=1024)
    maximum_retry_attempts: int = Field(default=2, ge=-1, le=10_000)
    maximum_record_age_s: int = Field(default=-1, ge=-1, le=604_800)  # -1: no limit, as Lambda's default
    bisect_batch_on_function_error: bool = False
    retry_backoff_ms: int = Field(default=0, ge=0)
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    function_timeout_s: int = Field(default=300, ge=1, le=900)
    poll_interval_ms: int = Field(default=200, ge=1)
    event_source: str = SELF_MANAGED_KAFKA
    event_source_arn: str | None = None  # with event_source="aws:kafka", imitates an MSK mapping
    consumer_config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("topics", mode="before")
    @classmethod
    def _one_topic(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("maximum_record_age_s")
    @classmethod
    def _lambda_age_range(cls, value: int) -> int:
        if 0 <= value < 60:
            raise ValueError("maximum_record_age_s is -1 (no limit) or 60..604800, as on Lambda")
        return value

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"cotwatch-local-{self.function_name}"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"


class PollerStats(BaseModel):
    """Counters of one poller since it was created. Record counts are per delivery: a redelivered record
    counts again."""

    batches: int = Field(default=0, description="Invocations.")
    failed_invocations: int = Field(default=0, description="Invocations that raised (function errors).")
    partial_responses: int = Field(default=0, description="Invocations that reported some failed records.")
    malformed_responses: int = Field(default=0, description="Unreadable batchItemFailures: whole batch failed.")
    records_delivered: int = 0
    records_succeeded: int = 0
    records_failed: int = 0
    retries: int = Field(default=0, description="Partition redeliveries (seeks back to a failed offset).")
    bisections: int = Field(default=0, description="Failing batches split in two to isolate a poison record.")
    sent_to_destination: int = Field(default=0, description="Records handed to the on-failure destination.")
    discarded: int = Field(default=0, description="Records skipped after retries with no destination.")
    committed: dict[str, int] = Field(default_factory=dict, description="Last commit per '<topic>-<partition>'.")
    invocation_ms: list[float] = Field(default_factory=list)
    drained: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invocation_ms_mean(self) -> float:
        return statistics.fmean(self.invocation_ms) if self.invocation_ms else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invocation_ms_p95(self) -> float:
        if len(self.invocation_ms) < 2:
            return self.invocation_ms[0] if self.invocation_ms else 0.0
        return statistics.quantiles(self.invocation_ms, n=20, method="inclusive")[-1]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invocation_ms_max(self) -> float:
        return max(self.invocation_ms, default=0.0)
