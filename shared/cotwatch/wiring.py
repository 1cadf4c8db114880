"""Composition root: turn validated settings into use cases with their AWS adapters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cotwatch.adapters.aws import (
    DynamoAlertStore,
    DynamoCooldownStore,
    DynamoCounterStore,
    DynamoTraceStateStore,
    S3DeadLetterSink,
    S3PatternSink,
    SnsAlertPublisher,
)
from cotwatch.config import AlertsApiSettings, RollupSettings, ScorerSettings
from cotwatch.cooldown import CooldownPublisher
from cotwatch.detection.factory import build_monitor
from cotwatch.ports import DeadLetterSink
from cotwatch.rollup import RollupCounters, S3RollupWriter
from cotwatch.score_traces import Limits, ScoreTraces
from cotwatch.tenancy import TenantBinding
from cotwatch.tracking import model_token_counter

if TYPE_CHECKING:
    from cotwatch.handlers.alerts_api import Handler


def build_score_traces(settings: ScorerSettings, *, dead_letters: DeadLetterSink | None = None) -> ScoreTraces:
    """``dead_letters``: another sink (``cotwatch replay`` keeps archived letters as they first arrived)."""
    monitor = build_monitor(
        embedding_model=settings.embedding_model,
        embedding_backend=settings.embedding_backend,
        embedding_onnx_path=settings.embedding_onnx_path,
        taxonomy_path=settings.taxonomy_path,
        calibration_path=settings.calibration_path,
        hashed_tenants=settings.no_raw_text_tenants,
    )
    return ScoreTraces(
        monitor=monitor,
        alerts=DynamoAlertStore(settings.alerts_table, ttl_days=settings.alert_ttl_days),
        publisher=CooldownPublisher(
            SnsAlertPublisher(settings.alerts_topic_arn),
            DynamoCooldownStore(settings.counters_table),
            window_seconds=settings.alert_cooldown_seconds,
        ),
        states=DynamoTraceStateStore(settings.trace_state_table, ttl_days=settings.trace_state_ttl_days),
        counters=DynamoCounterStore(settings.counters_table, ttl_days=settings.counter_ttl_days),
        dead_letters=dead_letters or S3DeadLetterSink(settings.data_bucket, prefix=settings.dead_letter_prefix),
        count_tokens=model_token_counter(settings.embedding_model),
        otlp_topics=settings.otlp_topics,
        tenants=TenantBinding(settings.tenant_bindings),
        limits=scorer_limits(settings),
        no_raw_text_tenants=settings.no_raw_text_tenants,
        patterns=S3PatternSink(settings.data_bucket),
    )


def scorer_limits(settings: ScorerSettings) -> Limits:
    return Limits(
        max_chunk_chars=settings.max_chunk_chars,
        max_windows_per_chunk=settings.max_windows_per_chunk,
        time_reserve_ms=settings.batch_time_reserve_ms,
    )


def build_rollup(settings: RollupSettings) -> RollupCounters:
    return RollupCounters(
        counters=DynamoCounterStore(settings.counters_table),
        writer=S3RollupWriter(settings.data_bucket, prefix=settings.rollup_prefix),
    )


def build_alerts_api(settings: AlertsApiSettings) -> Handler:
    from cotwatch.adapters.aws_alerts_api import DynamoAlertQuery, SnsSubscriptions
    from cotwatch.adapters.aws_chat import DynamoChatSubscriptions, RoutedSubscriptions
    from cotwatch.handlers.alerts_api import make_handler

    subscriptions = RoutedSubscriptions(
        SnsSubscriptions(settings.alerts_topic_arn),
        DynamoChatSubscriptions(settings.chat_subscriptions_table),
        allow_loopback_http=settings.allow_loopback_webhooks,
    )
    return make_handler(
        DynamoAlertStore(settings.alerts_table, counters_table=settings.counters_table),
        DynamoAlertQuery(settings.alerts_table),
        subscriptions,
        settings.tenant_claim,
    )
