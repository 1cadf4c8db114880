"""A small fault-injection run: the whole of ``make chaos`` (private broker and moto server, poller
SIGKILLed three times mid-batch, broker restarted, 5% of AWS calls failing, poison and duplicate records)
with a few hundred chunks instead of 10,000; and the poller living through a broker restart on its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cotwatch_local.chaos import _restart_broker_keeping_data, run_chaos
from cotwatch_local.cloudformation import create_kafka_topic
from cotwatch_local.kafka_broker import KafkaBroker
from cotwatch_local.poller import EventSourcePoller, PollerConfig, PollerStats

pytestmark = [pytest.mark.e2e]


def test_small_chaos_run_loses_nothing_and_counts_nothing_twice() -> None:
    # Given 300 records (1% poison of every kind, 1% producer duplicates) and every fault of make chaos
    # When they are drained through the local stack and compared with a fault-free run of the same input
    outcome = run_chaos(300, batch_size=20)
    # Then every record has exactly one outcome and the effects are those of the fault-free run
    assert outcome.scored + outcome.dead_lettered + outcome.deduplicated == outcome.n == 300
    assert (outcome.duplicates, outcome.lost) == (0, 0)
    assert (outcome.mismatched_alerts, outcome.mismatched_counters) == (0, 0)
    assert outcome.dead_lettered > 0 and outcome.deduplicated > 0
    # And every poison record's dead letter is at its own coordinates with the fault-free run's reason
    assert outcome.misfiled_dead_letters == 0


def test_one_poller_drains_the_topic_across_a_broker_restart(tmp_path: Path) -> None:
    # Given a private broker (the session's must not be restarted) with 600 records on three partitions
    broker = KafkaBroker(state_dir=tmp_path / "kafka", port=0)
    broker.start(timeout=180)
    try:
        bootstrap = broker.bootstrap_servers
        create_kafka_topic(bootstrap, "restart", 3)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for i in range(600):
            producer.send("restart", key=f"trace-{i % 40}".encode(), value=b"{}")
        producer.flush()
        producer.close()
        delivered: set[tuple[int, int]] = set()
        batches = threading.Event()
        started = [0]

        def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
            started[0] += 1
            if started[0] >= 5:
                batches.set()
            delivered.update((r["partition"], r["offset"]) for rs in event["records"].values() for r in rs)
            time.sleep(0.2)  # the restart lands while batches are in flight
            return {"batchItemFailures": []}

        config = PollerConfig(
            bootstrap_servers=bootstrap,
            topics=("restart",),
            group_id="restart",
            batch_size=20,
            batching_window_ms=100,
            consumer_config={"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000},
        )
        result: list[PollerStats] = []
        with EventSourcePoller(config, handler) as poller:
            runner = threading.Thread(target=lambda: result.append(poller.run_until_drained(8, max_duration_s=150)))
            runner.start()
            # When the broker is stopped and started again (same ports and data) mid-drain
            assert batches.wait(60)
            _restart_broker_keeping_data(broker)
            runner.join(180)
        # Then the same poller reconnects, rejoins its group and drains everything, committed to the end
        assert result and result[0].drained
        assert delivered == {(p, o) for p in range(3) for o in range(_end(bootstrap, p))}
        assert len(delivered) == 600
        committed = _committed(bootstrap)
        assert committed == {p: _end(bootstrap, p) for p in range(3)}
    finally:
        broker.stop()


def _end(bootstrap: str, partition: int) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return int(consumer.end_offsets([TopicPartition("restart", partition)])[TopicPartition("restart", partition)])
    finally:
        consumer.close()


def _committed(bootstrap: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="restart", enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition("restart", p)) for p in range(3)}
    finally:
        consumer.close(autocommit=False)
