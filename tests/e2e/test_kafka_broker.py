"""The real Kafka broker: lifecycle of :class:`KafkaBroker`, the traces topic, a keyed round trip."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from cotwatch_local import pid_alive, port_is_free
from cotwatch_local.cloudformation import LocalNames, create_kafka_topic
from cotwatch_local.kafka_broker import KafkaBroker, probe_kafka

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e


def test_broker_lifecycle_with_a_taken_port(tmp_path: Path) -> None:
    # Given the preferred port is already taken by someone else
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    taken = squatter.getsockname()[1]
    broker = KafkaBroker(state_dir=tmp_path, port=taken)
    try:
        # When the broker starts
        began = time.monotonic()
        status = broker.start(timeout=180)
        elapsed = time.monotonic() - began
        # Then it runs on another free port, recorded in the state dir, and serves metadata
        assert status.running and status.pid is not None
        assert status.port is not None and status.port != taken
        assert broker.bootstrap_servers == f"127.0.0.1:{status.port}"
        assert json.loads((tmp_path / "broker.json").read_text())["bootstrap_servers"] == broker.bootstrap_servers
        assert (tmp_path / "broker.pid").read_text().strip() == str(status.pid)
        probe_kafka(broker.bootstrap_servers)
        assert status.start_seconds is not None and status.start_seconds <= elapsed + 0.5
        # And a second handle on the same state dir (as `cotwatch local status` in another process) sees it
        other = KafkaBroker(state_dir=tmp_path, port=taken)
        assert other.status().running
        assert other.bootstrap_servers == broker.bootstrap_servers
        # And starting again is a no-op: same process
        assert other.start().pid == status.pid
        # When it is stopped from that other handle
        assert other.stop() is True
        # Then the JVM is gone, its port is free again and status says so
        assert not pid_alive(status.pid)
        assert port_is_free(status.port)
        assert not broker.status().running
        assert not (tmp_path / "broker.pid").exists()
        # And the broker logged to its file, not to the console
        assert "Kafka Server started" in (tmp_path / "logs" / "server.log").read_text()
        # And stopping again is harmless
        assert broker.stop() is False
    finally:
        broker.stop()
        squatter.close()


def test_the_traces_topic_has_three_partitions(local_names: LocalNames, kafka_bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = admin.describe_topics([local_names.kafka_topic])
    finally:
        admin.close()
    # The topic from the template's parameter (unique per session) exists with 3 led partitions
    assert local_names.kafka_partitions == 3
    (topic,) = described
    assert topic["name"] == local_names.kafka_topic
    assert sorted(p["partition_index"] for p in topic["partitions"]) == [0, 1, 2]
    assert all(p["leader_id"] >= 0 for p in topic["partitions"])
    # And creating it again changes nothing
    assert create_kafka_topic(kafka_bootstrap, local_names.kafka_topic, 3) is False


def test_a_keyed_record_round_trips_and_a_key_sticks_to_one_partition(
    local_names: LocalNames, kafka_bootstrap: str
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    # Given a trace chunk keyed by its trace id
    trace_id = f"trace-{uuid.uuid4().hex}"
    chunk = {"trace_id": trace_id, "seq": 0, "text": "Let me think about this step by step."}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        # When it is produced twice (two chunks of one trace)
        first = producer.send(local_names.kafka_topic, key=trace_id.encode(), value=json.dumps(chunk).encode()).get(30)
        chunk2 = {**chunk, "seq": 1}
        second = producer.send(local_names.kafka_topic, key=trace_id.encode(), value=json.dumps(chunk2).encode()).get(
            30
        )
    finally:
        producer.close()
    # Then both chunks land on the same partition, in order (the ordering the scorer relies on)
    assert first.partition == second.partition
    assert second.offset == first.offset + 1
    # And a consumer group reads them back with key and value intact
    consumer = KafkaConsumer(
        local_names.kafka_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"e2e-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    try:
        mine = []
        for record in consumer:
            if record.key == trace_id.encode():
                mine.append(record)
            if len(mine) == 2:
                break
    finally:
        consumer.close()
    assert [json.loads(r.value)["seq"] for r in mine] == [0, 1]
    assert {r.partition for r in mine} == {first.partition}
    assert [r.offset for r in mine] == [first.offset, second.offset]


def test_auto_topic_creation_is_off(kafka_bootstrap: str) -> None:
    # Producing to a topic nobody created must fail rather than silently create it
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("an external broker's settings are not ours to assert")
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=1500)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(f"typo-{uuid.uuid4().hex[:8]}", value=b"x").get(10)
    finally:
        producer.close()


# -- the whole local stack ------------------------------------------------------------------------------


def test_local_stack_up_status_down_with_its_own_services(tmp_path: Path) -> None:
    from cotwatch_local.stack import LocalStack

    # Given no services in the environment (so the stack starts its own, on free ports)
    stack = LocalStack(
        state_root=tmp_path, stack_name=f"ls-{uuid.uuid4().hex[:8]}", kafka_port=0, moto_port=0, environ={}
    )
    try:
        # When it comes up
        info = stack.up(timeout=180)
        # Then both services run, managed by the stack, and the resources exist under the stack's names
        assert info.status.up and info.status.kafka.managed and info.status.moto.managed
        probe_kafka(info.kafka_bootstrap_servers)
        assert info.names.stack_name == stack.stack_name
        # And the scorer's environment carries the local names, the broker and the dummy AWS settings
        env = info.env_for("ScoreTracesFunction")
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == info.kafka_bootstrap_servers
        assert env["AWS_ENDPOINT_URL"] == info.aws_endpoint_url
        assert env["AWS_ACCESS_KEY_ID"] == "testing"
        assert env["AWS_ACCOUNT_ID_ENDPOINT_MODE"] == "disabled"
        assert info.names.name("AlertsTable") in env.values()
        # And another process's view (a new LocalStack on the same state) reports the same stack
        seen = LocalStack(state_root=tmp_path, kafka_port=0, moto_port=0, environ={}).status()
        assert seen.up and seen.names == info.names
        # And `up` again is idempotent and keeps the same processes
        again = stack.up(timeout=60)
        assert again.status.kafka.pid == info.status.kafka.pid
        assert again.status.moto.pid == info.status.moto.pid
        assert again.names == info.names
    finally:
        # When it goes down
        down = stack.down()
    # Then nothing runs any more
    assert not down.kafka.running and not down.moto.running and down.names is None
    for pid in (info.status.kafka.pid, info.status.moto.pid):
        assert pid is not None and not pid_alive(pid)


def test_local_stack_uses_services_from_the_environment_and_leaves_them_running(
    tmp_path: Path, kafka_bootstrap: str, moto_endpoint: str
) -> None:
    from cotwatch_local.moto_server import moto_answers
    from cotwatch_local.stack import LocalStack

    # Given a broker and an endpoint named by the environment
    environ = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "AWS_ENDPOINT_URL": moto_endpoint}
    stack = LocalStack(state_root=tmp_path, stack_name=f"ext-{uuid.uuid4().hex[:8]}", environ=environ)
    # When the stack comes up
    info = stack.up(timeout=60)
    # Then it uses them and starts nothing of its own
    assert info.kafka_bootstrap_servers == kafka_bootstrap
    assert info.aws_endpoint_url == moto_endpoint
    assert not info.status.kafka.managed and not info.status.moto.managed
    assert not (tmp_path / "kafka" / "broker.pid").exists()
    assert not (tmp_path / "moto" / "moto.pid").exists()
    # And the traces topic was created on that broker
    assert create_kafka_topic(kafka_bootstrap, info.names.kafka_topic, 3) is False
    # When it goes down, the external services keep running
    stack.down()
    probe_kafka(kafka_bootstrap)
    assert moto_answers(moto_endpoint)
