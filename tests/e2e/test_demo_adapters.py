"""The adapters demo on real parts: the bundled demo traces produced through TraceWriter and the OpenAI
stream tee (openai SDK, loopback SSE server) into the Kafka broker, drained by the local poller into the
scorer (real model) on moto; the alerts meet the demo's expectations as the JSONL demo's do."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from cotwatch.producer import KafkaChunkSink
from cotwatch_local.adapter_demo import OPENAI_CHAT, TRACE_WRITER, produce_via_adapters
from cotwatch_local.cloudformation import LocalNames, create_kafka_topic
from cotwatch_local.demo import SCORER, check_expectations, load_documents, read_back
from cotwatch_local.invoker import LocalInvoker
from cotwatch_local.poller import EventSourcePoller, PollerConfig, S3Destination

pytestmark = [pytest.mark.e2e, pytest.mark.model, pytest.mark.timeout(900)]


class _Info:
    """What read_back needs of the stack: its names."""

    def __init__(self, names: LocalNames) -> None:
        self.names = names


def test_the_demo_traces_through_the_adapters_alert_as_expected(
    local_names: LocalNames,
    kafka_bootstrap: str,
    local_aws_env: dict[str, str],
    local_function_env: Callable[[str], dict[str, str]],
) -> None:
    # Given the demo traces produced through the adapters onto a topic of their own
    docs = load_documents()
    topic = f"demo-adapters-{uuid.uuid4().hex[:6]}"
    create_kafka_topic(kafka_bootstrap, topic, 3)
    sink = KafkaChunkSink(kafka_bootstrap, topic, max_block_s=30)
    try:
        sent, paths = produce_via_adapters(docs, sink)
    finally:
        sink.close()
    assert paths[TRACE_WRITER] > 0 and paths[OPENAI_CHAT] > 0 and sent >= len(docs)
    env = {
        **local_function_env(SCORER),
        "TENANT_BINDINGS": f"{topic}=*",  # a topic of its own: unbound, every record would be tenant_mismatch
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
    destination = S3Destination(local_names.name("DataBucket"))
    config = PollerConfig(
        bootstrap_servers=kafka_bootstrap,
        topics=(topic,),
        function_name="score_traces",
        group_id=f"demo-adapters-{uuid.uuid4().hex[:6]}",
        batch_size=50,
    )

    # When the poller drains the topic into the scorer, as the demo does
    invoker = LocalInvoker(environments={SCORER: env})
    with EventSourcePoller(config, invoker.handler(SCORER), on_failure=destination) as poller:
        stats = poller.run_until_drained(idle_timeout_s=2.0, max_duration_s=800)

    # Then every chunk was delivered and none failed
    assert stats.drained and stats.records_delivered >= sent and destination.keys == []
    # And every unsafe demo trace alerted its expected categories, no benign one alerted
    alerts, _counters, _dead, _failed = read_back(_Info(local_names))  # type: ignore[arg-type]
    ids = {(d.tenant, d.trace_id) for d in docs}
    ours = [a for a in alerts if (a.get("tenant"), a.get("trace_id")) in ids]
    assert any(d.expect for d in docs) and ours
    assert check_expectations(docs, ours) == []
