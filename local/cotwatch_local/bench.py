"""``cotwatch bench``: the scorer's throughput, cost and latency, as one JSON object (docs/performance.md).

What is measured, all in one run so the ratios compare like with like on a shared machine:

* **pipeline**: the scorer handler (``functions/score_traces/app.py``) in-process through the local invoker,
  on Lambda-shaped Kafka events, its alerts, counters and trace state going to a moto server over HTTP;
  per-stage seconds from the hooks in :mod:`cotwatch.stages` (tokenization, inside the encoder call, is
  measured on its own on the same windows and taken out of ``embed``);
* **raw encode**: plain encoding of exactly the windows the pipeline cut, with the scorer's own embedder
  (same ``EMBEDDING_BACKEND``, model and batch size, built by the same ``build_embedder`` call);
  ``pipeline_vs_raw_ratio`` is the share of the model's speed the whole pipeline keeps. Pipeline and raw
  passes alternate (``--rounds``) and each side keeps its best pass, so a neighbour's burst of CPU does not
  land on one side only;
* **ONNX against torch**: torch, onnx and onnx-int8 raw encode of the same windows in turn;
  ``onnx_vs_torch_ratio`` is the configured ONNX variant's (the template ships onnx-int8);
* **moto's share of persist**: one more pass on a moto server whose transactions copy only the items they
  touch (``--no-moto-compare`` skips it);
* **cold start** and **peak RSS** of a scorer process of its own (a subprocess: interpreter start, handler
  import and model load, first record scored; then the whole workload, for the peak; it never loads the
  baseline's backends, and reports which runtimes it holds);
* **latency**, produce to alert in DynamoDB, on a private local stack (Kafka broker + moto server + the
  event-source poller) at a steady produce rate (``--no-latency`` skips it: the broker takes ~20 s to start).

The workload is generated here (cotwatch's own written demo traces and the training package's synthetic
reasoning), never rows of an evaluation set: short single-chunk traces and 5-20k-character traces cut into
chunks, with unsafe passages set into some of them so alerts are raised and written.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import math
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cotwatch.detection.embedding import build_embedder
from cotwatch.detection.windowing import cut_windows, tail_of
from cotwatch.kafka_event import KafkaRecord, build_kafka_event
from cotwatch.trace import TraceChunk, TraceDocument

SCORER = "ScoreTracesFunction"
# AWS Lambda x86 on-demand prices, us-east-1, late 2026 (arm64 is 20% less per GB-s).
USD_PER_GB_S = 0.0000166667
USD_PER_REQUEST = 0.20 / 1_000_000
MB_PER_VCPU = 1769  # Lambda: 1,769 MB of memory buys one vCPU
SHORT_MAX_CHARS = 2500
# The encoder's batch: build_embedder's default, which the scorer's factory keeps (it passes none).
TOKENIZE_BATCH = int(inspect.signature(build_embedder).parameters["batch_size"].default)
QUIET_ENV = {"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}


@dataclass(frozen=True)
class Workload:
    """Chunks in production order (trace by trace, ``seq`` ascending) and the windows the monitor cuts of them."""

    chunks: list[TraceChunk]
    windows: list[str]
    short_traces: int
    long_traces: int

    @property
    def chars(self) -> int:
        return sum(len(c.text) for c in self.chunks)


def build_workload(traces: int, *, chunk_chars: int = 1500, seed: int = 16) -> Workload:
    """``traces`` traces, alternately short (a demo trace's reasoning or answer, one chunk) and long (5-20k
    characters of synthetic reasoning with demo passages set in, unsafe ones in a third of them)."""
    from cotwatch_local.demo import load_documents
    from cotwatch_training.synth import benign_trace, embed_in_trace

    rng = random.Random(seed)
    docs = load_documents()
    unsafe = [d for d in docs if d.expect] or docs
    documents: list[TraceDocument] = []
    short = long = 0
    for i in range(traces):
        source = docs[i % len(docs)]
        if i % 2 == 0:
            short += 1
            text = source.reasoning if rng.random() < 0.7 else (source.answer or source.reasoning)
            documents.append(
                TraceDocument(trace_id=f"bench-s{i}", model=source.model, reasoning=text[:SHORT_MAX_CHARS])
            )
            continue
        long += 1
        text = benign_trace(rng, min_chars=5000, max_chars=20000)
        for passage in rng.sample(docs, 2):
            text, _, _ = embed_in_trace(text, passage.reasoning[:800], rng)
        if i % 3 == 0:
            text, _, _ = embed_in_trace(text, rng.choice(unsafe).reasoning[:600], rng)
        documents.append(TraceDocument(trace_id=f"bench-l{i}", model=source.model, reasoning=text[:20000]))
    chunks = [c for doc in documents for c in doc.to_chunks(chunk_chars)]
    return Workload(chunks=chunks, windows=windows_of(chunks), short_traces=short, long_traces=long)


def windows_of(chunks: Sequence[TraceChunk]) -> list[str]:
    """The windows the monitor cuts, the previous chunk's tail carried into the next as it does."""
    texts: list[str] = []
    tails: dict[str, tuple[int, str, str]] = {}
    for chunk in chunks:
        last_seq, segment, tail = tails.get(chunk.trace_key, (-1, chunk.segment.value, ""))
        carried = tail if last_seq == chunk.seq - 1 and segment == chunk.segment.value else ""
        texts.extend(w.text for w in cut_windows(chunk.text, tail=carried))
        tails[chunk.trace_key] = (chunk.seq, chunk.segment.value, tail_of(chunk.text))
    return texts


def renamed(chunks: Sequence[TraceChunk], run: str) -> list[TraceChunk]:
    """The same chunks under trace ids of their own: a second pass must be scored again, not deduplicated."""
    return [c.model_copy(update={"trace_id": f"{c.trace_id}@{run}"}) for c in chunks]


def events_for(chunks: Sequence[TraceChunk], batch_size: int, topic: str, partitions: int = 3) -> list[dict[str, Any]]:
    """Lambda Kafka events of ``batch_size`` records; a trace stays on one partition, as its key ensures."""
    offsets = [0] * partitions
    records: list[KafkaRecord] = []
    for chunk in chunks:
        partition = sum(chunk.trace_id.encode()) % partitions
        records.append(
            KafkaRecord(
                topic=topic,
                partition=partition,
                offset=offsets[partition],
                key=chunk.trace_id.encode(),
                value=chunk.model_dump_json().encode(),
            )
        )
        offsets[partition] += 1
    return [build_kafka_event(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return float(statistics.quantiles(ordered, n=100, method="inclusive")[int(q * 100) - 1])


# --- the stack --------------------------------------------------------------------------------------------


@dataclass
class AwsTarget:
    """A moto server with the template's stack on it, and the scorer's environment there."""

    endpoint_url: str
    names: Any  # cotwatch_local.cloudformation.LocalNames
    env: dict[str, str]
    aws_env: dict[str, str]

    @property
    def topic(self) -> str:
        return str(self.names.kafka_topic)


@contextlib.contextmanager
def aws_target(endpoint_url: str | None) -> Iterator[AwsTarget]:
    """The given moto server, or one started for the run (and stopped after it)."""
    from cotwatch_local.cloudformation import deploy_stack, function_environment, load_template
    from cotwatch_local.moto_server import MotoServer
    from cotwatch_local.stack import aws_env

    with contextlib.ExitStack() as stack:
        if endpoint_url is None:
            state = stack.enter_context(tempfile.TemporaryDirectory(prefix="cotwatch-bench-"))
            server = MotoServer(state_dir=Path(state), port=0)
            server.start(timeout=60)
            stack.callback(server.stop)
            endpoint_url = server.endpoint_url
        names = deploy_stack(load_template(), endpoint_url=endpoint_url, stack_name=f"bench-{uuid.uuid4().hex[:8]}")
        base = aws_env(endpoint_url)
        env = {**base, **function_environment(names, SCORER, endpoint_url), **QUIET_ENV}
        yield AwsTarget(endpoint_url=endpoint_url, names=names, env=env, aws_env=base)


# --- pipeline and raw encode --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelinePass:
    seconds: float
    batch_seconds: list[float]
    stages: dict[str, float]


class Pipeline:
    """The scorer handler loaded once (a warm container) and driven with events."""

    def __init__(self, target: AwsTarget) -> None:
        from cotwatch_local.invoker import LocalInvoker

        self._target = target
        self._invoker = LocalInvoker(environments={SCORER: target.env})
        self.memory_mb = self._invoker.spec(SCORER).memory_mb
        with self._quiet():
            self._invoker.load(SCORER)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """The handler's logs go to stdout, as on Lambda: off the benchmark's JSON."""
        from cotwatch_local.invoker import patched_environ

        with patched_environ(self._target.aws_env), contextlib.redirect_stdout(sys.stderr):
            yield

    def _context(self) -> Any:
        """Lambda's longest timeout behind Kafka (14 min), not the template's: on a loaded 2-core machine a
        100-record batch can outlast the template's 300 s, and the time budget would hand records back."""
        from cotwatch_local.invoker import LocalLambdaContext

        return LocalLambdaContext(function_name="score_traces", memory_limit_in_mb=self.memory_mb, timeout_s=840)

    def run(self, chunks: Sequence[TraceChunk], batch_size: int) -> PipelinePass:
        from cotwatch import stages

        events = events_for(chunks, batch_size, self._target.topic)
        durations: list[float] = []
        with self._quiet():
            stages.CLOCK.reset()
            for event in events:
                began = time.perf_counter()
                response = self._invoker.invoke(SCORER, event, self._context())
                durations.append(time.perf_counter() - began)
                if response.get("batchItemFailures"):
                    raise RuntimeError(f"a benchmark batch had failed records: {response['batchItemFailures'][:3]}")
            totals = stages.CLOCK.totals()
        return PipelinePass(seconds=sum(durations), batch_seconds=durations, stages=totals)


class RawEncoder:
    """The baseline: plain encoding with the scorer's own embedder. It is built by the same call the scorer's
    factory makes (``build_embedder(backend, model, onnx_path=...)``, so the same backend and batch size),
    from the scorer's environment, so the ratio compares the pipeline against its own model alone."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from cotwatch.detection.embedding import DEFAULT_MODEL, build_embedder

        self.backend = env.get("EMBEDDING_BACKEND") or "torch"
        self.model = env.get("EMBEDDING_MODEL") or DEFAULT_MODEL
        self.embedder = build_embedder(self.backend, self.model, onnx_path=env.get("EMBEDDING_ONNX_PATH") or None)
        self._truncating, self._plain = _tokenizers(self.model)

    def encode_seconds(self, windows: Sequence[str]) -> float:
        began = time.perf_counter()
        self.embedder.encode(list(windows))
        return time.perf_counter() - began

    def tokenize_seconds(self, windows: Sequence[str]) -> float:
        """The model's tokenizer alone (truncated at its ``max_seq_length``, padded per batch), on the batches
        the encoder forms (longest first, ``TOKENIZE_BATCH`` at a time). Both backends tokenize with this
        tokenizer: the ONNX embedder calls it directly, sentence-transformers through its fast wrapper."""
        ordered = sorted(windows, key=len, reverse=True)
        began = time.perf_counter()
        for i in range(0, len(ordered), TOKENIZE_BATCH):
            self._truncating.encode_batch(ordered[i : i + TOKENIZE_BATCH])
        return time.perf_counter() - began

    def tokens(self, texts: Sequence[str]) -> int:
        """Tokens of the trace text itself (no special tokens, no truncation): what ``tokens_per_s`` counts."""
        return sum(len(e.ids) for e in self._plain.encode_batch(list(texts), add_special_tokens=False))


def _tokenizers(model: str) -> tuple[Any, Any]:
    """The model folder's fast tokenizer twice: truncating and padding as the encoder does, and plain."""
    import tokenizers

    from cotwatch.detection.embedding import resolve_model_path

    folder = resolve_model_path(model)
    config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    truncating = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    truncating.enable_truncation(max_length=int(config["max_seq_length"]))
    truncating.enable_padding()
    plain = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    plain.no_truncation()
    plain.no_padding()
    return truncating, plain


@dataclass(frozen=True)
class BackendSpeeds:
    """Raw encode seconds per backend on the same windows, and why a backend could not be measured."""

    seconds: dict[str, float]
    unavailable: dict[str, str]

    def vs_torch(self, backend: str) -> float | None:
        torch_s, own_s = self.seconds.get("torch"), self.seconds.get(backend)
        return None if torch_s is None or own_s is None else torch_s / own_s


def backend_speeds(windows: Sequence[str], model: str, rounds: int) -> BackendSpeeds:
    """torch, onnx and onnx-int8 through ``build_embedder`` (batch size as the scorer's), in turn for ``rounds``
    rounds so other processes' load falls on each alike; each keeps its best pass. A missing export or
    runtime is a reason, never a guessed figure."""
    from cotwatch.detection.embedding import BACKENDS, Embedder, build_embedder

    embedders: dict[str, Embedder] = {}
    unavailable: dict[str, str] = {}
    for backend in BACKENDS:
        if backend != "torch" and importlib.util.find_spec("onnxruntime") is None:
            unavailable[backend] = "onnxruntime is not installed"
            continue
        try:
            embedders[backend] = build_embedder(backend, model)
        except (ValueError, ImportError, OSError) as exc:  # OnnxModelMissingError is a ValueError
            unavailable[backend] = f"{type(exc).__name__}: {exc}"[:300]
    for embedder in embedders.values():
        embedder.encode(list(windows[:TOKENIZE_BATCH]))  # warm-up, not timed
    seconds = dict.fromkeys(embedders, math.inf)
    for _ in range(rounds):
        for backend, embedder in embedders.items():
            began = time.perf_counter()
            embedder.encode(list(windows))
            seconds[backend] = min(seconds[backend], time.perf_counter() - began)
    return BackendSpeeds(seconds=seconds, unavailable=unavailable)


# --- cold start and peak RSS, in a process of its own -------------------------------------------------------


def _child(args: argparse.Namespace) -> int:
    """The scorer as a fresh container: load, score one record (announce it), then the workload; report RSS."""
    began = time.perf_counter()
    from cotwatch_local.invoker import LocalInvoker, patched_environ

    spec = json.loads(Path(args.child).read_text(encoding="utf-8"))
    invoker = LocalInvoker(environments={SCORER: spec["env"]})
    with patched_environ(spec["aws_env"]), contextlib.redirect_stdout(sys.stderr):
        invoker.load(SCORER)
        loaded = time.perf_counter()
        first, *rest = spec["events"]
        response = invoker.invoke(SCORER, first)
    if response.get("batchItemFailures"):
        raise SystemExit(f"the first record failed: {response}")
    first_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(
        json.dumps({"first_scored": True, "init_s": loaded - began, "rss_first_record_mb": first_kb / 1024}), flush=True
    )
    with patched_environ(spec["aws_env"]), contextlib.redirect_stdout(sys.stderr):
        for event in rest:
            invoker.invoke(SCORER, event)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Which runtimes the scorer's process really holds: the RSS is the configured backend's, nothing else's.
    loaded_modules = {name: name in sys.modules for name in ("torch", "sentence_transformers", "onnxruntime")}
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "rss_process_modules": loaded_modules}), flush=True)
    return 0


def cold_start(target: AwsTarget, chunks: Sequence[TraceChunk], batch_size: int) -> dict[str, Any]:
    """Seconds from process start to the first record scored, and the process's peak RSS over the workload."""
    run = uuid.uuid4().hex[:6]
    own = renamed(chunks, f"cold-{run}")
    events = [*events_for(own[:1], 1, target.topic), *events_for(own[1:], batch_size, target.topic)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as spec:
        json.dump({"env": target.env, "aws_env": target.aws_env, "events": events}, spec)
    try:
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cotwatch_local.bench", "--child", spec.name],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        )
        assert proc.stdout is not None
        lines: dict[str, Any] = {}
        for line in proc.stdout:
            message = json.loads(line)
            if message.pop("first_scored", False):
                lines["cold_start_s"] = time.perf_counter() - began
            lines.update(message)
        if proc.wait() != 0 or "cold_start_s" not in lines:
            raise RuntimeError(f"the cold-start process failed (exit {proc.returncode})")
    finally:
        Path(spec.name).unlink()
    return lines


# --- latency: produce -> alert in DynamoDB on the local stack ----------------------------------------------


def latency(chunks: Sequence[TraceChunk], *, rate: float, seconds: float, batch_size: int) -> dict[str, Any]:
    """Chunks produced at ``rate`` per second for ``seconds`` to a private broker while the event-source
    poller feeds the scorer; one in three is a one-chunk unsafe trace, whose alert's ``created_at`` (stamped
    just before the conditional write) less its send time is one latency sample."""
    import boto3
    from boto3.dynamodb.conditions import Attr

    from cotwatch_local.adapters.kafka_producer import TraceProducer
    from cotwatch_local.demo import load_documents
    from cotwatch_local.invoker import LocalInvoker, patched_environ
    from cotwatch_local.poller import EventSourcePoller, InMemoryDestination, PollerConfig
    from cotwatch_local.stack import LocalStack

    run = uuid.uuid4().hex[:6]
    unsafe = [d for d in load_documents() if d.expect]
    background = [c for c in chunks if len(c.text) >= 1000]
    n = max(3, int(rate * seconds))
    plan: list[TraceChunk] = []
    for i in range(n):
        if i % 3 == 0:
            doc = unsafe[(i // 3) % len(unsafe)]
            plan.append(TraceChunk(trace_id=f"lat-{run}-{i}", model=doc.model, text=doc.reasoning, final=True))
        else:
            plan.append(background[i % len(background)].model_copy(update={"trace_id": f"bg-{run}-{i}", "seq": 0}))
    state = Path(tempfile.mkdtemp(prefix="cotwatch-bench-lat-"))
    stack = LocalStack(state_root=state, kafka_port=_free_port(), moto_port=_free_port())
    info = stack.up()
    try:
        with patched_environ(info.aws_env), contextlib.redirect_stdout(sys.stderr):
            env = {**info.env_for(SCORER), **QUIET_ENV}
            invoker = LocalInvoker(environments={SCORER: env})
            invoker.load(SCORER)
            config = PollerConfig(
                bootstrap_servers=info.kafka_bootstrap_servers,
                topics=(info.names.kafka_topic,),
                function_name="score_traces",
                group_id=f"cotwatch-bench-{run}",
                batch_size=batch_size,
                batching_window_ms=1000,  # the template's MaximumBatchingWindowInSeconds default
            )
            sent_at: dict[str, float] = {}
            with (
                EventSourcePoller(config, invoker.handler(SCORER), on_failure=InMemoryDestination()) as poller,
                TraceProducer(info.kafka_bootstrap_servers, info.names.kafka_topic) as producer,
            ):
                worker = threading.Thread(target=poller.run_forever, daemon=True)
                worker.start()
                began = time.monotonic()
                for i, chunk in enumerate(plan):
                    time.sleep(max(0.0, began + i / rate - time.monotonic()))
                    sent_at[chunk.trace_id] = time.time()
                    producer.send([chunk])
                table = boto3.resource("dynamodb").Table(info.names.name("AlertsTable"))
                wanted = {c.trace_id for c in plan if c.trace_id.startswith("lat-")}
                created: dict[str, float] = {}
                deadline = time.monotonic() + 120
                while len(created) < len(wanted) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    scan = table.scan(FilterExpression=Attr("trace_id").begins_with(f"lat-{run}-"))
                    for item in scan["Items"]:
                        at = datetime.fromisoformat(str(item["created_at"])).timestamp()
                        created[str(item["trace_id"])] = min(at, created.get(str(item["trace_id"]), math.inf))
                poller.stop()
                worker.join(timeout=60)
        samples = [created[t] - sent_at[t] for t in created]
        return {
            "latency_p50_s": _quantile(samples, 0.50) if samples else None,
            "latency_p95_s": _quantile(samples, 0.95) if samples else None,
            "latency_samples": len(samples),
            "latency_alerts_missing": len(wanted) - len(samples),
            "latency_rate_chunks_per_s": round(rate, 3),
            "latency_batching_window_ms": config.batching_window_ms,
        }
    finally:
        stack.down()


STAGE_ORDER = ("decode", "window", "tokenize", "embed", "heads_cues", "persist", "publish", "other")


def stage_seconds(passed: PipelinePass, tokenize_s: float) -> dict[str, float]:
    """A pass's exclusive stage seconds in :data:`STAGE_ORDER`. The encoder call holds tokenization, which
    the raw side measured on the same windows: it is taken out of ``embed``."""
    stages = dict(passed.stages)
    embed_total = stages.get("embed", 0.0)
    stages["tokenize"] = min(tokenize_s, embed_total)
    stages["embed"] = embed_total - stages["tokenize"]
    stages["other"] = max(0.0, passed.seconds - sum(stages.values()))
    return {name: stages.get(name, 0.0) for name in STAGE_ORDER}


def encoder_threads(backend: str) -> int:
    """Compute threads the encoder uses: torch's setting, or onnxruntime's default (one per core here)."""
    if backend == "torch":
        import torch

        return int(torch.get_num_threads())
    return len(os.sched_getaffinity(0))


@contextlib.contextmanager
def touched_rollback_moto() -> Iterator[str]:
    """A moto server whose ``TransactWriteItems`` saves and restores only the items it touches
    (``python -m cotwatch_local.chaos moto``, docs/reliability.md) instead of deep-copying every table the
    transaction names: the same writes without that cost of moto's, which real DynamoDB does not have."""
    from cotwatch_local.moto_server import moto_answers

    port = _free_port()
    with (
        tempfile.TemporaryDirectory(prefix="cotwatch-bench-moto-") as state,
        (Path(state) / "moto.log").open("wb") as log,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "cotwatch_local.chaos", "moto", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not moto_answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the touched-rollback moto server did not start (exit {proc.poll()})")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def moto_comparison(chunks: Sequence[TraceChunk], batch_size: int, raw_s: float, windows: int) -> dict[str, Any]:
    """One more pass of the same workload through the same handler, on a moto server without the
    table-wide deep copy in transactions: what of ``persist`` is moto's, and what is left (ours plus moto's
    per-request cost)."""
    with touched_rollback_moto() as url, aws_target(url) as target:
        pipeline = Pipeline(target)
        pipeline.run(renamed(chunks[:batch_size], f"warm-{uuid.uuid4().hex[:6]}"), batch_size)
        passed = pipeline.run(renamed(chunks, uuid.uuid4().hex[:6]), batch_size)
        counters = _count_items(target, "CountersTable")
    stages = {name: round(passed.stages.get(name, 0.0), 3) for name in STAGE_ORDER if name not in ("tokenize", "other")}
    return {
        "pipeline_windows_per_s": round(windows / passed.seconds, 2),
        "pipeline_vs_raw_ratio": round(raw_s / passed.seconds, 3),
        "handler_s": round(passed.seconds, 3),
        "stages_s": stages,
        "counter_items": counters,
    }


def counter_write_probe(target: AwsTarget, transactions: int = 8) -> dict[str, Any]:
    """The scorer's counters transaction through its own adapter (``DynamoCounterStore.apply_once``) on the
    run's moto server, with and without a chunk's embedding summary (one item, an ADD of every sketch
    dimension): moto validates update expressions in time that grows with the square of their clauses,
    which real DynamoDB does not, so the difference is the part of ``persist`` that is moto's parser."""
    from cotwatch.adapters.aws import DynamoCounterStore
    from cotwatch.patterns import SKETCH_DIMS, EmbeddingSummary
    from cotwatch.ports import ChunkIdentity, CounterKey
    from cotwatch_local.invoker import patched_environ

    run = uuid.uuid4().hex[:6]
    key = CounterKey(hour="2000-01-01T00", tenant=f"bench-probe-{run}", model="probe", metric="chunks")
    summary = EmbeddingSummary(
        hour=key.hour,
        tenant=key.tenant,
        model=key.model,
        windows=8,
        sums=tuple(range(-SKETCH_DIMS // 2, SKETCH_DIMS // 2)),
        squares=tuple(range(SKETCH_DIMS)),
    )
    ms: dict[str, float] = {}
    with patched_environ(target.aws_env):
        store = DynamoCounterStore(target.names.name("CountersTable"))
        for label, embedding in (("without_embedding_summary", None), ("with_embedding_summary", summary)):
            began = time.perf_counter()
            for i in range(transactions):
                marker = f"probe-{run}-{label}-{i}"
                claim = ChunkIdentity(key=marker, fingerprint="probe")
                store.apply_once(marker, {key: 1}, claim, embedding=embedding)
            ms[label] = 1000 * (time.perf_counter() - began) / transactions
    return {**{f"{k}_ms": round(v, 1) for k, v in ms.items()}, "sketch_dims": SKETCH_DIMS, "transactions": transactions}


# --- the run --------------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    workload = build_workload(args.traces, chunk_chars=args.chunk_chars)
    windows = workload.windows
    result: dict[str, Any] = {}
    with aws_target(args.endpoint_url) as target:
        raw = RawEncoder(target.env)
        pipeline = Pipeline(target)
        # Warm-up, not timed: first-call allocations and the tables' first writes.
        pipeline.run(renamed(workload.chunks[: args.batch_size], f"warm-{uuid.uuid4().hex[:6]}"), args.batch_size)
        raw.encode_seconds(windows[:TOKENIZE_BATCH])
        best: PipelinePass | None = None
        raw_s = math.inf
        for _ in range(args.rounds):
            passed = pipeline.run(renamed(workload.chunks, uuid.uuid4().hex[:6]), args.batch_size)
            best = passed if best is None or passed.seconds < best.seconds else best
            raw_s = min(raw_s, raw.encode_seconds(windows))
        assert best is not None
        tokenize_s = raw.tokenize_seconds(windows)
        tokens = raw.tokens([c.text for c in workload.chunks])
        alerts = _count_items(target, "AlertsTable")
        counters = _count_items(target, "CountersTable")
        sweep = []
        for size in args.sweep:
            subset = workload.chunks[: args.sweep_chunks]
            passed = pipeline.run(renamed(subset, f"sweep{size}-{uuid.uuid4().hex[:6]}"), size)
            sweep.append(
                {
                    "batch_size": size,
                    "windows_per_s": round(len(windows_of(subset)) / passed.seconds, 2),
                    "chunks_per_s": round(len(subset) / passed.seconds, 2),
                    "batch_s_p50": round(statistics.median(passed.batch_seconds), 3),
                }
            )
        probe = counter_write_probe(target)
        # The scorer's RSS in a process of its own: this one also holds the torch baseline and a moto client.
        cold = cold_start(target, workload.chunks, args.batch_size) if not args.no_cold_start else {}
    compare = moto_comparison(workload.chunks, args.batch_size, raw_s, len(windows)) if args.moto_compare else None
    speeds = backend_speeds(windows, raw.model, args.rounds)
    shipped = raw.backend if raw.backend != "torch" else "onnx-int8"
    onnx_ratio = speeds.vs_torch(shipped)
    onnx_reason = speeds.unavailable.get(shipped)

    pipeline_wps = len(windows) / best.seconds
    raw_wps = len(windows) / raw_s
    stages = stage_seconds(best, tokenize_s)
    chunks_per_s = len(workload.chunks) / best.seconds
    vcpus = pipeline.memory_mb / MB_PER_VCPU
    threads = encoder_threads(raw.backend)
    # Lambda's speed per vCPU taken as this machine's per encoder thread, capped at what the threads here had.
    lambda_chunks_per_s = chunks_per_s * min(1.0, vcpus / threads)
    usd_per_million = (1e6 / lambda_chunks_per_s) * (pipeline.memory_mb / 1024) * USD_PER_GB_S + (
        1e6 / args.batch_size
    ) * USD_PER_REQUEST
    result.update(
        {
            "pipeline_windows_per_s": round(pipeline_wps, 2),
            "pipeline_tokens_per_s": round(tokens / best.seconds, 1),
            "pipeline_chunks_per_s": round(chunks_per_s, 2),
            "raw_encode_windows_per_s": round(raw_wps, 2),
            "pipeline_vs_raw_ratio": round(pipeline_wps / raw_wps, 3),
            "onnx_vs_torch_ratio": _rounded(onnx_ratio),
            **({"onnx_unavailable_reason": onnx_reason} if onnx_reason else {}),
            "onnx_variant": shipped,
            "onnx_vs_torch_by_variant": {b: _rounded(speeds.vs_torch(b)) for b in ("onnx", "onnx-int8")},
            "raw_encode_s_by_backend": {b: round(v, 3) for b, v in speeds.seconds.items()},
            "embedding_backend": raw.backend,
            "cold_start_s": _rounded(cold.get("cold_start_s")),
            "cold_start_init_s": _rounded(cold.get("init_s")),
            "peak_rss_mb": _rounded(cold.get("peak_rss_mb"), 1),
            "rss_first_record_mb": _rounded(cold.get("rss_first_record_mb"), 1),
            "rss_process_modules": cold.get("rss_process_modules"),
            "latency_p50_s": None,
            "latency_p95_s": None,
            "stages_s": {name: round(seconds, 3) for name, seconds in stages.items()},
            "stages_share": {name: round(seconds / best.seconds, 3) for name, seconds in stages.items()},
            "batch_s_p50": round(statistics.median(best.batch_seconds), 3),
            "batch_s_max": round(max(best.batch_seconds), 3),
            "by_batch_size": sweep,
            "usd_per_million_chunks": round(usd_per_million, 2),
            "cost_assumptions": {
                "usd_per_gb_s": USD_PER_GB_S,
                "usd_per_request": USD_PER_REQUEST,
                "memory_mb": pipeline.memory_mb,
                "lambda_vcpus": round(vcpus, 2),
                "lambda_chunks_per_s": round(lambda_chunks_per_s, 2),
            },
            "workload": {
                "traces": args.traces,
                "short_traces": workload.short_traces,
                "long_traces": workload.long_traces,
                "chunks": len(workload.chunks),
                "windows": len(windows),
                "distinct_windows": len(set(windows)),
                "chars": workload.chars,
                "tokens": tokens,
                "batch_size": args.batch_size,
                "batches": len(best.batch_seconds),
                "rounds": args.rounds,
                "encoder_threads": threads,
                "cpus": os.cpu_count(),
            },
            "written": {"alerts": alerts, "counter_items": counters},
        }
    )
    result["counters_transaction_probe"] = probe
    # What persist would be without moto's expression cost: each scored chunk's transaction less the
    # probe's difference (the embedding item itself stays one item of the same round trip on DynamoDB).
    expression_s = (
        len(workload.chunks)
        * max(0.0, probe["with_embedding_summary_ms"] - probe["without_embedding_summary_ms"])
        / 1000
    )
    result["persist_moto_expression_s_est"] = round(min(expression_s, stages["persist"]), 3)
    result["pipeline_vs_raw_ratio_without_moto_expression_est"] = round(
        raw_s / max(best.seconds - result["persist_moto_expression_s_est"], 1e-9), 3
    )
    if compare is not None:
        result["moto_touched_rollback"] = compare
    if not args.no_latency:
        result.update(
            latency(
                workload.chunks,
                # Below capacity, so the figure is the pipeline's latency rather than a growing queue's.
                rate=args.latency_rate or chunks_per_s / 2,
                seconds=args.latency_s,
                batch_size=args.batch_size,
            )
        )
    return result


def _count_items(target: AwsTarget, logical_id: str) -> int:
    import boto3

    from cotwatch_local.invoker import patched_environ

    with patched_environ(target.aws_env):
        table = boto3.resource("dynamodb").Table(target.names.name(logical_id))
        return int(table.scan(Select="COUNT")["Count"])


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"batch sizes are comma-separated integers: {value!r}") from exc
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("batch sizes are positive")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    parser.add_argument("--traces", type=int, default=16, help="traces in the workload, half short, half 5-20k chars")
    parser.add_argument("--chunk-chars", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=100, help="records per Lambda invocation")
    parser.add_argument("--rounds", type=int, default=2, help="alternating pipeline/raw passes; the best of each")
    parser.add_argument("--sweep", type=_sizes, default=[], help="batch sizes to time as well, e.g. 1,10,50,100,200")
    parser.add_argument("--sweep-chunks", type=int, default=200, help="chunks per sweep pass")
    parser.add_argument("--endpoint-url", help="a running moto server (default: one started for the run)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold-start and peak-RSS subprocess")
    parser.add_argument(
        "--no-moto-compare",
        dest="moto_compare",
        action="store_false",
        help="skip the extra pass on a moto server without the table-wide copy in transactions",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip produce-to-alert latency (needs a broker)")
    parser.add_argument(
        "--latency-rate", type=float, help="chunks per second produced (default: half the measured pipeline rate)"
    )
    parser.add_argument("--latency-s", type=float, default=30.0, help="seconds of producing")
    parser.add_argument("--plot", type=Path, help="with --sweep: write throughput against batch size (PNG)")


def run(args: argparse.Namespace) -> int:
    for name in ("traces", "batch_size", "rounds", "sweep_chunks"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    result = measure(args)
    if args.plot is not None:
        if not result["by_batch_size"]:
            raise SystemExit("--plot needs --sweep")
        plot_sweep(result["by_batch_size"], result["raw_encode_windows_per_s"], args.plot)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<28} {json.dumps(value)}")
    return 0


def plot_sweep(sweep: Sequence[Mapping[str, Any]], raw_wps: float, out: Path) -> Path:
    """Windows per second against batch size (plotly, drawn to PNG by headless Chromium)."""
    import plotly.graph_objects as go

    from cotwatch_local.browser import screenshot

    sizes = [row["batch_size"] for row in sweep]
    figure = go.Figure()
    figure.add_scatter(x=sizes, y=[row["windows_per_s"] for row in sweep], mode="lines+markers", name="pipeline")
    figure.add_scatter(x=sizes, y=[raw_wps] * len(sizes), mode="lines", name="raw encode", line={"dash": "dash"})
    figure.update_layout(
        title="Scorer throughput against Lambda batch size",
        xaxis={"title": "records per invocation", "type": "log"},
        yaxis={"title": "windows per second", "rangemode": "tozero"},
        width=900,
        height=500,
        margin={"l": 70, "r": 30, "t": 60, "b": 60},
    )
    with tempfile.TemporaryDirectory(prefix="cotwatch-plot-") as tmp:
        page = Path(tmp) / "sweep.html"
        page.write_text(figure.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, out, width=920, height=520)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cotwatch bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the cold-start process
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
