"""No trace text, secrets or personal data leave the scorer through its logs, alerts, messages or dead letters.

The real handler (``make_handler``) runs over in-memory adapters and the hashing embedder with a batch of
unsafe traces that carry the corpus' secrets and personal data, poison records that carry them too, and a
publisher that fails (so the failure path logs). Every line the service logger writes (the powertools
handler, which also receives the ``cotwatch.*`` standard-library loggers) and everything on stdout/stderr
(EMF metrics) is captured and searched.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from cotwatch import observability as obs
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.handlers.score_traces import make_handler
from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch.score_traces import ScoreTraces
from cotwatch.trace import TraceChunk
from cotwatch_local.invoker import LocalLambdaContext

from .conftest import CYBER_LINE, Adapters
from .failing_adapters import DownPublisher
from .redaction_corpus import PERSONAL, SECRETS

SENSITIVE = SECRETS + PERSONAL
# Words of the traces' own text that must not be logged either (the reasoning is the guarded data).
TRACE_WORDS = ("ransomware that encrypts every file", "victim network share")


def _fragments(value: str) -> list[str]:
    return [value, *(line for line in value.splitlines() if line and not line.startswith("-----"))]


def _records() -> list[KafkaRecord]:
    records: list[KafkaRecord] = []
    for offset, (name, _, sentence) in enumerate(SENSITIVE):
        trace_id = f"t-{offset}"
        if offset % 3 == 2:
            # Poison: valid JSON, wrongly typed seq, the secret in the text and in a header
            value = json.dumps({"trace_id": trace_id, "seq": "first", "model": "m", "text": sentence}).encode()
            headers = [("note", sentence.encode())]
        else:
            chunk = TraceChunk(trace_id=trace_id, seq=0, model="m", text=f"{CYBER_LINE} {sentence} {CYBER_LINE}")
            value, headers = chunk.model_dump_json().encode(), []
        records.append(
            KafkaRecord(topic="traces", partition=0, offset=offset, key=trace_id.encode(), value=value, headers=headers)
        )
        del name
    # Malformed JSON that carries a secret
    records.append(
        KafkaRecord(topic="traces", partition=1, offset=0, key=b"k", value=b'{"text": "AKIAQX4J7T2M9RZ5WB3K" broken')
    )
    return records


@pytest.fixture
def captured_logs() -> Iterator[tuple[Logger, io.StringIO]]:
    """The service logger with its handler writing into a buffer, at DEBUG, restored afterwards."""
    logger = Logger(service=obs.SERVICE, level="DEBUG")
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    # Swapped directly: setStream would flush the previous stream, which may be a closed capture buffer.
    previous = handler.stream
    handler.stream = buffer
    previous_level = logging.getLogger(obs.SERVICE).level
    logging.getLogger(obs.SERVICE).setLevel(logging.DEBUG)
    try:
        yield logger, buffer
    finally:
        handler.stream = previous
        logging.getLogger(obs.SERVICE).setLevel(previous_level)


def _stored_text(adapters: Adapters, publisher: DownPublisher) -> str:
    """Everything the adapters hold, as text: alerts, published alerts and dead letters (values decoded)."""
    parts: list[str] = [json.dumps(vars(adapters.alerts), default=str)]
    parts += [alert.model_dump_json() for alert, _ in publisher.published]
    for letter in adapters.dead_letters.letters.values():
        parts.append(letter.model_dump_json())
        for b64 in (letter.value_b64, letter.key_b64, *(v for _, v in letter.headers)):
            if b64:
                parts.append(base64.b64decode(b64).decode("utf-8", "replace"))
    return "\n".join(parts)


def test_no_secret_or_trace_text_in_logs_alerts_messages_or_dead_letters(
    monitor: TraceMonitor,
    adapters: Adapters,
    captured_logs: tuple[Logger, io.StringIO],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the handler with a publisher that is down for some traces (so records fail and are logged)
    logger, buffer = captured_logs
    publisher = DownPublisher(down_for_traces={"t-0", "t-3"})
    use_case = ScoreTraces(
        monitor, adapters.alerts, publisher, adapters.states, adapters.counters, adapters.dead_letters
    )
    handler = make_handler(use_case, logger=logger)
    records = _records()

    # When a batch of unsafe traces and poison records carrying secrets and personal data is handled
    response: dict[str, Any] = handler(build_kafka_event(records), LocalLambdaContext("score-traces"))
    out = capsys.readouterr()
    logs = buffer.getvalue() + out.out + out.err
    stored = _stored_text(adapters, publisher)

    # Then the run did what the assertions below rely on: alerts with evidence, dead letters, failures, logs
    assert publisher.published and adapters.dead_letters.letters and response["batchItemFailures"]
    assert "dead-lettered record" in logs and "record failed" in logs
    evidence = [e for alert, _ in publisher.published for e in alert.evidence]
    assert evidence and any("[" in e.excerpt for e in evidence)
    # And no secret, personal datum or fragment of one is in any log line or anything stored or published
    for name, value, _ in SENSITIVE:
        for fragment in _fragments(value):
            assert fragment not in logs, f"{name} leaked into the logs"
            assert fragment not in stored, f"{name} leaked into alerts, messages or dead letters"
    # And the trace text itself is never logged
    for words in TRACE_WORDS:
        assert words not in logs
