"""Regenerate the sample events in this folder from the demo traces.

    .venv/bin/python events/generate.py           # rewrite the JSON files
    .venv/bin/python events/generate.py --check   # exit 1 if a committed file differs from what would be written

The output is deterministic (fixed timestamps, offsets and ids), so regenerating after a change to the demo
traces or to ``build_kafka_event`` shows up as a reviewable diff. The two score_traces events carry the same
records and differ only in the envelope, MSK versus self-managed Kafka:

* partition 0 - ``demo-u05-hospital-ransomware`` (unsafe, cyber), every chunk, keyed by trace id;
* partition 1 - ``demo-b04-kill-hung-process`` (benign look-alike), every chunk, keyed by trace id;
* partition 2 - the reasoning of ``demo-b01-cyclist-round-trip`` as one final chunk from a producer that sets
  no key (a null key is legal: ``decode_chunk`` only compares keys that are present), then one record whose
  value is JSON cut off mid-string, which the scorer must dead-letter with reason ``not_json``.

Every record has a ``content-type`` header, a ``producer`` header and a ``content-sha256`` header holding the
raw 32-byte digest of the value, so the signed-byte header encoding includes negative bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cotwatch.kafka_event import MSK_SOURCE, KafkaRecord, build_kafka_event
from cotwatch.trace import TraceChunk, TraceDocument

EVENTS_DIR = Path(__file__).resolve().parent
TOPIC = "cotwatch-traces"
MAX_CHUNK_CHARS = 1500

UNSAFE_TRACE = "demo-u05-hospital-ransomware"
BENIGN_TRACE = "demo-b04-kill-hung-process"
UNKEYED_TRACE = "demo-b01-cyclist-round-trip"
TRUNCATED_TRACE = "demo-x01-truncated-payload"
MALFORMED_REASON = "not_json"  # what cotwatch.score_traces.decode_chunk must say about the truncated record

# When the chunks were produced, and when Kafka appended them (CREATE_TIME is the producer's clock).
PRODUCED_AT = datetime(2026, 11, 26, 15, 12, 4, tzinfo=UTC)
FIRST_OFFSET = {0: 4182, 1: 3907, 2: 4455}

MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/cotwatch-msk/6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f-2"
MSK_BOOTSTRAP = (
    "b-1.cotwatchmsk.x7k2p9.c2.kafka.us-east-1.amazonaws.com:9098,"
    "b-2.cotwatchmsk.x7k2p9.c2.kafka.us-east-1.amazonaws.com:9098"
)
SELF_MANAGED_BOOTSTRAP = "kafka-1.cotwatch.internal:9092,kafka-2.cotwatch.internal:9092,kafka-3.cotwatch.internal:9092"

# The hourly rollup: EventBridge fires a few seconds after the hour and the function rolls up the hour before.
SCHEDULE_TIME = "2026-11-26T16:00:07Z"
BACKFILL_HOUR = "2026-11-26T15"


def load_demo_documents() -> dict[str, TraceDocument]:
    path = importlib.resources.files("cotwatch_local") / "data" / "demo_traces.jsonl"
    docs = [TraceDocument.model_validate_json(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return {d.trace_id: d for d in docs}


def _chunks(doc: TraceDocument, created_at: datetime) -> list[TraceChunk]:
    return doc.to_chunks(MAX_CHUNK_CHARS, created_at=created_at)


def _value(chunk: TraceChunk) -> bytes:
    return chunk.model_dump_json().encode("utf-8")


def _headers(value: bytes, producer: str) -> dict[str, bytes]:
    return {
        "content-type": b"application/json",
        "producer": producer.encode("utf-8"),
        "content-sha256": hashlib.sha256(value).digest(),
    }


def _truncated_value(docs: dict[str, TraceDocument]) -> bytes:
    """A chunk a producer cut off at a byte limit: valid JSON up to the cut, then nothing."""
    source = docs[UNSAFE_TRACE]
    whole = TraceChunk(
        trace_id=TRUNCATED_TRACE,
        seq=0,
        final=True,
        model=source.model,
        tenant=source.tenant,
        text=source.reasoning,
        created_at=PRODUCED_AT + timedelta(seconds=9),
    )
    encoded = _value(whole)
    return encoded[: encoded.index(b'"text":') + 120]


def build_records(docs: dict[str, TraceDocument] | None = None) -> list[KafkaRecord]:
    """The records both score_traces events carry, partition by partition."""
    docs = docs or load_demo_documents()
    records: list[KafkaRecord] = []

    def add(partition: int, key: bytes | None, value: bytes, producer: str, at: datetime) -> None:
        offset = FIRST_OFFSET[partition] + sum(1 for r in records if r.partition == partition)
        records.append(
            KafkaRecord(
                topic=TOPIC,
                partition=partition,
                offset=offset,
                timestamp_ms=int(at.timestamp() * 1000) + 37,
                timestamp_type="CREATE_TIME",
                key=key,
                value=value,
                headers=_headers(value, producer),
            )
        )

    for partition, trace_id, started in (
        (0, UNSAFE_TRACE, PRODUCED_AT),
        (1, BENIGN_TRACE, PRODUCED_AT + timedelta(seconds=2)),
    ):
        for chunk in _chunks(docs[trace_id], started):
            add(
                partition,
                trace_id.encode(),
                _value(chunk),
                "model-gateway/2.4.1",
                started + timedelta(seconds=chunk.seq),
            )

    unkeyed_at = PRODUCED_AT + timedelta(seconds=5)
    reasoning_only = docs[UNKEYED_TRACE].model_copy(update={"answer": ""})
    (only,) = _chunks(reasoning_only, unkeyed_at)
    add(2, None, _value(only), "batch-replayer/0.9.0", unkeyed_at)
    add(2, TRUNCATED_TRACE.encode(), _truncated_value(docs), "model-gateway/2.4.1", PRODUCED_AT + timedelta(seconds=9))
    return records


def build_events(docs: dict[str, TraceDocument] | None = None) -> dict[str, dict[str, Any]]:
    """File name -> event, for every sample event in this folder."""
    records = build_records(docs)
    return {
        "score_traces_msk.json": build_kafka_event(
            records, event_source=MSK_SOURCE, bootstrap_servers=MSK_BOOTSTRAP, event_source_arn=MSK_ARN
        ),
        "score_traces_self_managed.json": build_kafka_event(
            records, event_source="SelfManagedKafka", bootstrap_servers=SELF_MANAGED_BOOTSTRAP
        ),
        "rollup_counters_schedule.json": {
            "version": "0",
            "id": "9b1f7c2e-3d4a-4e5f-8a6b-7c8d9e0f1a2b",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": SCHEDULE_TIME,
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/cotwatch-rollup-hourly"],
            "detail": {},
        },
        "rollup_counters_backfill.json": {"hour": BACKFILL_HOUR},
    }


_INT_LIST = re.compile(r"\[\s*-?\d+(?:,\s*-?\d+)*\s*\]")
_HEADER_ENTRY = re.compile(r"\{\s*(\"[^\"]+\": \[[-\d, ]*\])\s*\}")


def render(event: dict[str, Any]) -> str:
    """Indented JSON, except that each header (name and byte array) stays on one line."""
    text = json.dumps(event, indent=2, ensure_ascii=False)
    text = _INT_LIST.sub(lambda m: "[" + ", ".join(n.strip() for n in m.group(0)[1:-1].split(",")) + "]", text)
    return _HEADER_ENTRY.sub(r"{\1}", text) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args(argv)
    stale: list[str] = []
    for name, event in build_events().items():
        path = EVENTS_DIR / name
        text = render(event)
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(EVENTS_DIR.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run events/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
