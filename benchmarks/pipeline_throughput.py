"""Pipeline throughput against plain model encoding of the same windows, plus the scorer's cold start.

The scorer handler runs in-process through the local invoker (as ``cotwatch invoke`` does) on Lambda-shaped
Kafka events, with its DynamoDB/S3/SNS effects going to a moto server over HTTP. The baseline is the same
encoder's ``encode`` on exactly the windows the pipeline cuts, measured in the same run, so the ratio says
how much the rest of the pipeline (parsing, scoring, state, alerts, counters) costs on top of the model.

    .venv/bin/python benchmarks/pipeline_throughput.py [--traces 48] [--batch-size 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from cotwatch.detection.embedding import SentenceTransformerEmbedder
from cotwatch.detection.windowing import cut_windows, tail_of
from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch.trace import TraceChunk
from cotwatch_local.cloudformation import deploy_stack, function_environment, load_template
from cotwatch_local.demo import load_documents
from cotwatch_local.invoker import LocalInvoker, patched_environ
from cotwatch_local.moto_server import MotoServer
from cotwatch_local.stack import aws_env

SCORER = "ScoreTracesFunction"
GB_SECOND_USD = 0.0000166667


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def make_chunks(n_traces: int, chunk_chars: int) -> list[TraceChunk]:
    docs = load_documents()
    chunks: list[TraceChunk] = []
    for i in range(n_traces):
        doc = docs[i % len(docs)].model_copy(update={"trace_id": f"bench-{i}-{docs[i % len(docs)].trace_id}"})
        chunks.extend(doc.to_chunks(chunk_chars))
    return chunks


def windows_of(chunks: list[TraceChunk]) -> list[str]:
    """The windows the monitor cuts, with the previous chunk's tail carried as it does."""
    texts: list[str] = []
    tails: dict[str, tuple[int, str, str]] = {}
    for chunk in chunks:
        last_seq, segment, tail = tails.get(chunk.trace_key, (-1, chunk.segment.value, ""))
        carried = tail if last_seq == chunk.seq - 1 and segment == chunk.segment.value else ""
        texts.extend(w.text for w in cut_windows(chunk.text, tail=carried))
        tails[chunk.trace_key] = (chunk.seq, chunk.segment.value, tail_of(chunk.text))
    return texts


def events_for(chunks: list[TraceChunk], batch_size: int, topic: str) -> list[dict[str, Any]]:
    records = [
        KafkaRecord(topic=topic, partition=i % 3, offset=i, key=c.trace_id.encode(), value=c.model_dump_json().encode())
        for i, c in enumerate(chunks)
    ]
    return [build_kafka_event(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=72)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--chunk-chars", type=int, default=1500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    chunks = make_chunks(args.traces, args.chunk_chars)
    windows = windows_of(chunks)
    template = load_template()
    with tempfile.TemporaryDirectory() as state:
        server = MotoServer(state_dir=Path(state), port=0)
        server.start(timeout=60)
        try:
            names = deploy_stack(template, endpoint_url=server.endpoint_url, stack_name="bench")
            env = {
                **aws_env(server.endpoint_url),
                **function_environment(names, SCORER, server.endpoint_url),
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "ERROR",
            }
            with patched_environ(aws_env(server.endpoint_url)):
                invoker = LocalInvoker(environments={SCORER: env})
                started = time.perf_counter()
                invoker.load(SCORER)
                cold_ms = (time.perf_counter() - started) * 1000
                events = events_for(chunks, args.batch_size, names.kafka_topic)
                invoker.invoke(SCORER, events[0])  # warm-up: first-call allocations, not steady state
                durations: list[float] = []
                for event in events:
                    began = time.perf_counter()
                    response = invoker.invoke(SCORER, event)
                    durations.append(time.perf_counter() - began)
                    if response.get("batchItemFailures"):
                        raise SystemExit(f"benchmark batch had failures: {response}")
                pipeline_s = sum(durations)
        finally:
            server.stop()

    embedder = SentenceTransformerEmbedder()
    embedder.encode(windows[:64])
    started = time.perf_counter()
    embedder.encode(windows)
    encode_s = time.perf_counter() - started

    result = {
        "chunks": len(chunks),
        "windows": len(windows),
        "batches": len(events),
        "batch_size": args.batch_size,
        "chars": sum(len(c.text) for c in chunks),
        "cold_start_ms": round(cold_ms, 1),
        "pipeline_chunks_per_s": round(len(chunks) / pipeline_s, 2),
        "pipeline_windows_per_s": round(len(windows) / pipeline_s, 2),
        "batch_ms_p50": round(1000 * statistics.median(durations), 1),
        "batch_ms_p99": round(
            1000 * max(durations) if len(durations) < 100 else 1000 * statistics.quantiles(durations, n=100)[98], 1
        ),
        "threads": torch_threads(),
        "baseline_encode_windows_per_s": round(len(windows) / encode_s, 2),
        "pipeline_vs_encode_ratio": round((len(windows) / pipeline_s) / (len(windows) / encode_s), 3),
    }
    # Lambda x86 price per GB-second (us-east-1, late 2026): compute cost of the scorer per million chunks
    # at the template's default 3,008 MB, assuming the same per-vCPU speed as this machine (1 vCPU per
    # 1,769 MB, so 3,008 MB has 1.7 vCPUs against this machine's cores).
    vcpus_here = float(os.cpu_count() or 1)
    chunks_per_s_per_vcpu = result["pipeline_chunks_per_s"] / vcpus_here
    seconds_per_million = 1e6 / (chunks_per_s_per_vcpu * (3008 / 1769))
    result["chunks_per_s_per_vcpu"] = round(chunks_per_s_per_vcpu, 2)
    result["usd_per_million_chunks_at_3008mb"] = round(seconds_per_million * 3.008 * GB_SECOND_USD, 2)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
