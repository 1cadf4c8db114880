"""``cotwatch produce --follow`` on the real broker: lines appended while it runs arrive, keyed and in order."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from cotwatch.trace import TraceChunk
from cotwatch_local.cli import main
from cotwatch_local.cloudformation import create_kafka_topic

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def line(trace_id: str, seq: int, final: bool = False) -> str:
    chunk = {"trace_id": trace_id, "seq": seq, "model": "m", "text": f"Step {seq}.", "final": final}
    return json.dumps(chunk) + "\n"


def test_follow_publishes_lines_written_while_it_runs_then_exits_when_idle(
    tmp_path: Path, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a topic and a JSONL file with the first chunk of a trace
    topic = f"follow-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(kafka_bootstrap, topic, 2)
    path = tmp_path / "live.jsonl"
    path.write_text(line("live-1", 0))

    def writer() -> None:  # a serving process appending as it goes, the last line in two writes
        time.sleep(0.5)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line("live-2", 0))
            handle.flush()
            time.sleep(0.3)
            last = line("live-1", 1, final=True)
            handle.write(last[:15])
            handle.flush()
            time.sleep(0.3)
            handle.write(last[15:])

    thread = threading.Thread(target=writer)
    thread.start()
    # When `cotwatch produce --follow --idle-exit 2` runs on it
    started = time.monotonic()
    code = main(
        ["produce", str(path), "--follow", "--idle-exit", "2", "--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    )
    thread.join()
    # Then it stopped on its own once the file was idle, reporting what it published
    assert code == 0 and time.monotonic() - started < 30
    assert "published 3 chunks of 2 traces from 3 lines" in capsys.readouterr().out
    # And the broker has every chunk, keyed by trace id, each trace in order
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        records = [(r.key, TraceChunk.model_validate_json(r.value)) for r in consumer]
    finally:
        consumer.close()
    assert sorted((k, c.trace_id, c.seq) for k, c in records) == [
        (b"live-1", "live-1", 0),
        (b"live-1", "live-1", 1),
        (b"live-2", "live-2", 0),
    ]
    assert [c.seq for _, c in records if c.trace_id == "live-1"] == [0, 1]
