"""Fault-injection run (``make chaos``): N chunks through a private local stack while things break.

The run starts its own Kafka broker and moto server (own ports and state directory: a shared broker must
not be restarted under other people's tests), publishes N records to a fresh topic (1% poison records of
every kind, forged tenants included, and 1% producer duplicates at new offsets), and drains the topic with
the local event source poller in a subprocess while:

* the poller is SIGKILLed three times mid-batch (and restarted: its uncommitted batch is redelivered),
* the broker is restarted once,
* 5% of DynamoDB, S3 and SNS calls fail with a 5xx or a throttling error, injected by a botocore
  ``before-send`` hook in the poller process and retried by the adapters' botocore retry configuration.

The same records then go through the use case once, in process, over the in-memory adapters (the fault-free
run), and the two are compared: alerts by id (category, severity, status, trace, tenant), counters by
(tenant, model, metric, category) summed over hours, every record's outcome. The last line is
``chaos: in=N scored=N dead_lettered=N deduplicated=N duplicates=0 lost=0 mismatched_alerts=0
mismatched_counters=0``. Scoring uses the hashing embedder (the real encoder is far too slow for 10,000
chunks on two shared cores) with a calibration under which the taxonomy's exemplars alert.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cotwatch.adapters.memory import (
    MemoryAlertStore,
    MemoryCounterStore,
    MemoryDeadLetterSink,
    MemoryPublisher,
    MemoryTraceStateStore,
)
from cotwatch.detection.calibration import Calibration, CategoryCalibration
from cotwatch.detection.embedding import HashingEmbedder
from cotwatch.detection.factory import build_monitor
from cotwatch.detection.monitor import TraceMonitor
from cotwatch.detection.taxonomy import load_taxonomy
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.ports import CounterKey
from cotwatch.score_traces import ScoreTraces
from cotwatch.tenancy import TenantBinding, parse_tenant_bindings
from cotwatch.trace import TraceChunk

BENIGN = [
    "Let me add the two numbers and then divide by two to find the mean of the values.",
    "First I restate the problem, then check the units and work through the arithmetic step by step.",
    "The user wants a list without duplicates that keeps the original order, so a dict works well here.",
    "I should double-check the boundary case where the page index is one and the offset is zero.",
]
POISON_KINDS = (
    "not_json",
    "too_deep",
    "not_utf8",
    "oversized",
    "schema_violation",
    "missing_field",
    "unknown_schema_version",
    "tenant_mismatch",
    "forged_path_tenant",
)
FAULT_RATE = 0.05
CREATED_AT = datetime(2026, 12, 7, 12, tzinfo=UTC)
KILLS = 3
# A batch takes seconds (100 records with throttling backoff: under a minute); silence this long is a stall.
STALL_S = 300.0


# ------------------------------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Planned:
    key: bytes | None
    value: bytes
    kind: str  # "good", "duplicate" or a poison kind


def calibration() -> Calibration:
    """Thresholds the hashing embedder's exemplar similarity crosses for the taxonomy's own exemplars."""
    categories = load_taxonomy(None).categories
    return Calibration(
        version="chaos",
        scorer_version="chaos",
        target_fpr=0.01,
        categories={c: CategoryCalibration(threshold=0.6, scale=0.05) for c in categories},
    )


def chaos_monitor() -> TraceMonitor:
    return build_monitor(embedder=HashingEmbedder(), use_heads=False, calibration=calibration())


def plan_input(n: int, tenants: tuple[str, str], seed: int = 7) -> list[Planned]:
    """N records: ~98% chunks of interleaved traces (some unsafe), 1% poison of every kind, 1% duplicates."""
    rng = random.Random(seed)
    unsafe = [e.text for c in load_taxonomy(None).categories.values() for e in c.exemplars[:2]]
    traces = max(1, n // 8)
    next_seq = [0] * traces
    sent_good: list[Planned] = []
    out: list[Planned] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.01 and sent_good:
            out.append(Planned(*_dup(rng.choice(sent_good))))
            continue
        if roll < 0.02:
            kind = POISON_KINDS[i % len(POISON_KINDS)]
            out.append(Planned(f"poison-{i}".encode(), _poison(kind, i, tenants), kind))
            continue
        t = rng.randrange(traces)
        text = rng.choice(unsafe) if rng.random() < 0.03 else " ".join(rng.sample(BENIGN, 2))
        chunk = TraceChunk(
            trace_id=f"chaos-{t}",
            seq=next_seq[t],
            model=f"m{t % 3}",
            tenant=tenants[t % 2],
            text=text,
            created_at=CREATED_AT,  # fixed: the counters' hour is the same in both runs
        )
        next_seq[t] += 1
        planned = Planned(chunk.trace_id.encode(), chunk.model_dump_json().encode(), "good")
        sent_good.append(planned)
        out.append(planned)
    return out


def _dup(original: Planned) -> tuple[bytes | None, bytes, str]:
    return original.key, original.value, "duplicate"


def _poison(kind: str, i: int, tenants: tuple[str, str]) -> bytes:
    # A valid chunk but for the one fault of its kind, so each kind meets the check meant for it.
    base: dict[str, Any] = {
        "trace_id": f"poison-{i}",
        "seq": 0,
        "model": "m0",
        "tenant": tenants[0],
        "text": BENIGN[0],
    }
    if kind == "not_json":
        return b'{"trace_id": "poison'
    if kind == "too_deep":
        return b"[" * 100_000 + b"]" * 100_000
    if kind == "not_utf8":
        return b'{"trace_id": "\xff\xfe"}'
    if kind == "oversized":  # over the chunk's 200k characters, under Kafka's 1 MB message limit
        return json.dumps({**base, "text": "the mean of two numbers. " * 10_000}).encode()
    if kind == "schema_violation":
        return json.dumps({**base, "seq": "first"}).encode()
    if kind == "missing_field":
        return json.dumps({k: v for k, v in base.items() if k != "trace_id"}).encode()
    if kind == "unknown_schema_version":
        return json.dumps({**base, "schema_version": 99}).encode()
    if kind == "tenant_mismatch":
        return json.dumps({**base, "tenant": "victim-tenant"}).encode()
    return json.dumps({**base, "tenant": "../../etc"}).encode()


# ------------------------------------------------------------------------------------- fault injection


class _Raw:
    """Just enough of a urllib3 response for botocore to read an injected error body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self._body


def install_faults(rate: float, seed: int) -> Callable[[], Counter[str]]:
    """Fail ``rate`` of DynamoDB, S3 and SNS requests before they are sent (5xx, throttling); botocore's
    retry handler (the adapters' ``BOTO_CONFIG``) retries them with backoff. Returns the injected counts."""
    import boto3
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    rng = random.Random(seed)
    injected: Counter[str] = Counter()
    errors = {
        "dynamodb": [
            (500, b'{"__type":"com.amazon.coral.service#InternalServerError","message":"injected"}'),
            (400, b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"injected"}'),
        ],
        "s3": [(503, b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>")],
        "sns": [(500, b"<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>")],
    }

    def maybe_fail(request: Any, **kwargs: Any) -> AWSResponse | None:
        service = str(kwargs.get("event_name", "")).split(".")[1]
        if rng.random() >= rate:
            return None
        status, body = rng.choice(errors[service])
        injected[service] += 1
        headers = HTTPHeaders()
        headers["x-amzn-requestid"] = "injected"
        return AWSResponse(request.url, status, headers, _Raw(body))

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    hook: Callable[..., Any] = maybe_fail  # a before-send handler that returns a response short-circuits the call
    for service in errors:
        session.events.register(f"before-send.{service}", hook)  # type: ignore[arg-type]
    return lambda: injected


# ------------------------------------------------------------------------------------ the moto server


def rollback_touched_items_only() -> None:
    """Make moto's ``TransactWriteItems`` roll back the items it touched instead of whole tables.

    moto 5.2 deep-copies every table a transaction names before applying it, to restore on failure. The
    counters table gains two items per chunk (Kafka-coordinate marker, identity claim) and every chunk is
    one transaction, so N chunks copy O(N^2) items: ~10^8 for 10,000 chunks, hours on two cores and
    gigabytes of garbage (a 3,000-record run crawled at <1 batch a minute with moto at 5 GB). Here the
    touched items are saved before and put back after a failed transaction, which leaves the same items as
    moto's own rollback. Transactions are serialized (moto's are not atomic across its request threads)."""
    import copy
    import threading

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    apply = DynamoDBBackend.transact_write_items
    local = threading.local()
    lock = threading.Lock()

    def table_deepcopy(self: Table, memo: dict[int, Any]) -> Table:
        if getattr(local, "active", False):
            return self  # moto's "backup" is the live table; the touched items are restored below
        clone: Table = Table.__new__(Table)  # type: ignore[assignment]  # what copy.deepcopy does for an object
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    def touched(backend: DynamoDBBackend, items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], Any]]:
        saved = []
        for entry in items:
            for op in entry.values():
                table = backend.get_table(op["TableName"])
                if "Key" in op:
                    key = op["Key"]
                else:
                    attrs = [a for a in (table.hash_key_attr, table.range_key_attr) if a is not None]
                    key = {a: op["Item"][a] for a in attrs}
                item = backend.get_item(op["TableName"], key)
                saved.append((op["TableName"], key, None if item is None else item.to_json()["Attributes"]))
        return saved

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            try:
                saved = touched(self, transact_items)
            except Exception:  # a malformed request: moto's own path produces its error
                return apply(self, transact_items)
            local.active = True
            try:
                return apply(self, transact_items)
            except Exception:
                for table_name, key, attrs in saved:
                    if attrs is None:
                        self.delete_item(table_name, key)
                    else:
                        self.put_item(table_name, attrs)
                raise
            finally:
                local.active = False

    Table.__deepcopy__ = table_deepcopy  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def serve_moto(port: int) -> int:
    """The run's private moto server (``python -m cotwatch_local.chaos moto --port P``)."""
    from moto.server import main as moto_main

    rollback_touched_items_only()
    moto_main(["-H", "127.0.0.1", "-p", str(port)])
    return 0


# ---------------------------------------------------------------------------------------- the worker


def run_worker(args: argparse.Namespace) -> int:
    """The poller process: scorer over the AWS adapters (moto), faults injected, drain then exit."""
    from cotwatch.adapters.aws import (
        DynamoAlertStore,
        DynamoCounterStore,
        DynamoTraceStateStore,
        S3DeadLetterSink,
        SnsAlertPublisher,
    )
    from cotwatch.handlers.score_traces import make_handler
    from cotwatch_local.invoker import LocalLambdaContext
    from cotwatch_local.poller import EventSourcePoller, InMemoryDestination, PollerConfig

    injected = install_faults(args.fault_rate, seed=os.getpid())
    use_case = ScoreTraces(
        chaos_monitor(),
        DynamoAlertStore(args.alerts_table),
        SnsAlertPublisher(args.alerts_topic_arn),
        DynamoTraceStateStore(args.state_table),
        DynamoCounterStore(args.counters_table),
        S3DeadLetterSink(args.bucket),
        tenants=TenantBinding(parse_tenant_bindings(args.bindings)),
    )
    config = PollerConfig(
        bootstrap_servers=args.bootstrap,
        topics=(args.topic,),
        function_name="score_traces",
        group_id=args.group,
        batch_size=args.batch_size,
        batching_window_ms=100,
        # A SIGKILLed member holds its partitions until its session expires: keep that short for the run.
        consumer_config={"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000},
    )
    handler = make_handler(use_case)

    def announced(event: dict[str, Any], context: Any) -> dict[str, Any]:
        print("batch-start", flush=True)  # the orchestrator kills on these: mid-batch, never between
        response = handler(event, context)
        print("batch-done", flush=True)
        return response

    def context() -> LocalLambdaContext:  # the template's scorer timeout, not the rig's 3 s default
        return LocalLambdaContext(function_name="ScoreTracesFunction", timeout_s=300)

    with EventSourcePoller(config, announced, on_failure=InMemoryDestination(), context_factory=context) as poller:
        stats = poller.run_until_drained(idle_timeout_s=args.idle_s)
    print(
        f"worker-done {json.dumps(dict(injected()))} {stats.model_dump_json(include={'batches', 'records_delivered', 'retries'})}",
        flush=True,
    )
    return 0


# ---------------------------------------------------------------------------------------- orchestration


@dataclass
class Outcome:
    n: int
    scored: int
    dead_lettered: int
    deduplicated: int
    duplicates: int
    lost: int
    mismatched_alerts: int
    mismatched_counters: int
    # Poison records whose dead letter is missing, at other coordinates, or of another reason or value than
    # the fault-free run's (plus letters no poison record explains); reported on the line before the last.
    misfiled_dead_letters: int = 0

    def line(self) -> str:
        return (
            f"chaos: in={self.n} scored={self.scored} dead_lettered={self.dead_lettered} "
            f"deduplicated={self.deduplicated} duplicates={self.duplicates} lost={self.lost} "
            f"mismatched_alerts={self.mismatched_alerts} mismatched_counters={self.mismatched_counters}"
        )


def fault_free(planned: list[Planned], topic: str, bindings: str) -> dict[str, Any]:
    """The same records, in offset order, through the use case once over in-memory adapters."""
    counters, alerts, letters = MemoryCounterStore(), MemoryAlertStore(), MemoryDeadLetterSink()
    use_case = ScoreTraces(
        chaos_monitor(),
        alerts,
        MemoryPublisher(),
        MemoryTraceStateStore(),
        counters,
        letters,
        tenants=TenantBinding(parse_tenant_bindings(bindings)),
    )
    records = [KafkaRecord(topic=topic, partition=0, offset=i, key=p.key, value=p.value) for i, p in enumerate(planned)]
    for start in range(0, len(records), 100):
        use_case.process_batch(KafkaBatch(event_source="SelfManagedKafka", records=records[start : start + 100]))
    return {
        "alerts": {k: _alert_view(v) for k, v in alerts.items.items()},
        "counters": _fold(((k, n) for k, n in counters.counts.items())),
        "dead_letters": len(letters.letters),
        # By input position (the fault-free offsets are positions): reason and digest of the value.
        "letters": {letter.offset: (letter.reason, letter.value_sha256) for letter in letters.letters.values()},
    }


def _alert_view(item: Mapping[str, Any]) -> tuple[Any, ...]:
    return (item["tenant"], item["trace_id"], item["category"], int(item["severity"]), item["status"])


def _fold(cells: Any) -> dict[tuple[str, str, str, str], int]:
    """Counter cells by (tenant, model, metric, category), summed over hours; shared '-' cells excluded
    (dead letters of every run on the stack land there: they are compared by their objects instead)."""
    folded: Counter[tuple[str, str, str, str]] = Counter()
    for key, n in cells:
        if key.tenant != "-":
            folded[(key.tenant, key.model, key.metric, key.category)] += int(n)
    return dict(folded)


def run_chaos(n: int, *, partitions: int = 3, batch_size: int = 100, keep_state: bool = False) -> Outcome:
    import boto3

    from cotwatch.adapters.aws import DynamoCounterStore
    from cotwatch_local.cloudformation import create_kafka_topic
    from cotwatch_local.invoker import patched_environ
    from cotwatch_local.stack import LocalStack

    run = uuid.uuid4().hex[:6]
    tenants = (f"acme-{run}", f"globex-{run}")
    topic = f"chaos-{run}"
    bindings = f"{topic}={tenants[0]}|{tenants[1]}"
    planned = plan_input(n, tenants)
    state = Path(tempfile.mkdtemp(prefix="cotwatch-chaos-"))
    moto = _start_moto(state)
    endpoint = f"http://127.0.0.1:{moto.port}"
    # The stack's moto is the run's own (see rollback_touched_items_only), passed as an external endpoint.
    stack = LocalStack(
        state_root=state, kafka_port=_free_port(), partitions=partitions, environ={"AWS_ENDPOINT_URL": endpoint}
    )
    print(f"chaos: starting a private broker and moto server under {state}", flush=True)
    try:
        info = stack.up()
    except BaseException:
        moto.stop()
        raise
    try:
        with patched_environ(info.aws_env):
            create_kafka_topic(info.kafka_bootstrap_servers, topic, partitions)
            coordinates = _produce(info.kafka_bootstrap_servers, topic, planned)
            print(f"chaos: produced {n} records to {topic}", flush=True)
            names = info.names
            worker = [
                sys.executable, "-m", "cotwatch_local.chaos", "worker",
                "--bootstrap", info.kafka_bootstrap_servers, "--topic", topic, "--group", f"chaos-{run}",
                "--bindings", bindings, "--alerts-table", names.name("AlertsTable"),
                "--counters-table", names.name("CountersTable"), "--state-table", names.name("TraceStateTable"),
                "--bucket", names.name("DataBucket"), "--alerts-topic-arn", info.env_for("ScoreTracesFunction")["ALERTS_TOPIC_ARN"],
                "--batch-size", str(batch_size), "--fault-rate", str(FAULT_RATE),
            ]  # fmt: skip
            env = {
                **os.environ,
                **info.aws_env,
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "ERROR",
            }
            _drive(worker, env, stack, batches=max(1, n // batch_size))
            chaos_view = _read_stack(names, topic, tenants, DynamoCounterStore(names.name("CountersTable")), boto3)
        baseline = fault_free(planned, topic, bindings)
    finally:
        if not keep_state:
            stack.down()
            moto.stop()
    return _compare(planned, chaos_view, baseline, coordinates)


@dataclass
class _Moto:
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _start_moto(state: Path, timeout_s: float = 60.0) -> _Moto:
    from cotwatch_local.moto_server import moto_answers

    port = _free_port()
    log = (state / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cotwatch_local.chaos", "moto", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    moto = _Moto(process, port)
    deadline = time.monotonic() + timeout_s
    while not moto_answers(f"http://127.0.0.1:{port}"):
        if process.poll() is not None or time.monotonic() > deadline:
            moto.stop()
            raise RuntimeError(f"the run's moto server did not start; see {state / 'moto.log'}")
        time.sleep(0.2)
    return moto


@dataclass
class _Script:
    """What the orchestrator still has to do to the poller and the broker."""

    kill_after: list[int]
    restart_broker_at: int
    started: int = 0
    broker_restarted: bool = False


def _drive(worker: list[str], env: dict[str, str], stack: Any, batches: int) -> None:
    """Run the poller to the end, SIGKILLing it mid-batch KILLS times and restarting the broker once."""
    script = _Script(
        kill_after=sorted(random.Random(3).sample(range(1, max(KILLS + 2, batches // 2)), KILLS)),
        restart_broker_at=batches // 3 + 1,
    )
    crashes = 0
    while True:
        proc = subprocess.Popen(worker, env=env, stdout=subprocess.PIPE, text=True)
        try:
            killed = _watch(proc, stack, worker, script)
        finally:
            if proc.poll() is None:  # interrupted: never leave a poller behind
                proc.kill()
            proc.wait()
        if killed:
            continue
        if proc.returncode == 0:
            return
        # The poller's consumer can die of the broker restart (offset lookups time out); Lambda's event
        # source mapping would restart its poller, so the run does too, a bounded number of times.
        crashes += 1
        print(f"chaos: poller exited {proc.returncode} (crash {crashes}); restarting it", flush=True)
        if crashes > 5:
            raise RuntimeError(f"chaos worker keeps exiting ({proc.returncode})")


def _lines(proc: subprocess.Popen[str], silence_s: float) -> Iterator[str]:
    """The poller's stdout lines; a poller that prints nothing for ``silence_s`` (no batch starts or ends)
    is stuck, and the run fails saying so instead of waiting for ever."""
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream: Any) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=silence_s)
        except queue.Empty:
            raise RuntimeError(f"chaos worker pid {proc.pid} printed nothing for {silence_s:.0f} s: stalled") from None
        if line is None:
            return
        yield line


def _watch(proc: subprocess.Popen[str], stack: Any, worker: list[str], script: _Script) -> bool:
    """Follow one poller process; True if it was SIGKILLed on purpose."""
    for line in _lines(proc, STALL_S):
        if line.startswith("worker-done"):
            print(f"chaos: {line.strip()}", flush=True)
        elif '"record failed"' in line or '"level":"ERROR"' in line:
            print(f"chaos: poller {line.strip()[:600]}", flush=True)
        if not line.startswith("batch-start"):
            continue
        script.started += 1
        if script.kill_after and script.started >= script.kill_after[0]:
            script.kill_after.pop(0)
            time.sleep(0.05)  # inside the handler: some effects done, the offset not committed
            proc.send_signal(signal.SIGKILL)
            print(f"chaos: SIGKILL poller pid {proc.pid} in batch {script.started}", flush=True)
            return True
        if not script.broker_restarted and script.started >= script.restart_broker_at:
            script.broker_restarted = True
            print("chaos: restarting the broker", flush=True)
            _restart_broker_keeping_data(stack.broker)
            print(f"chaos: broker back on {stack.broker.bootstrap_servers}", flush=True)
    return False


def _restart_broker_keeping_data(broker: Any) -> None:
    """Stop the broker (SIGTERM: a clean shutdown) and start the same JVM command on the same ports and
    log directories. ``KafkaBroker.start`` formats fresh storage every time, which would lose the topic."""
    saved = json.loads(broker.state_file.read_text())
    command = saved.pop("command")
    for field in ("pid", "started_at"):
        saved.pop(field, None)
    broker.stop()
    broker._spawn(command, broker.console_file, append=True, state=saved)  # the rig's own detached launch
    broker.wait_ready()


def _read_stack(names: Any, topic: str, tenants: tuple[str, str], counters: Any, boto3: Any) -> dict[str, Any]:
    ddb = boto3.client("dynamodb")
    alerts: dict[str, tuple[Any, ...]] = {}
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    for page in ddb.get_paginator("scan").paginate(TableName=names.name("AlertsTable")):
        for raw in page["Items"]:
            item = {k: des.deserialize(v) for k, v in raw.items()}
            if item.get("tenant") in tenants and "category" in item and "trace_id" in item:
                alerts[str(item["alert_id"])] = _alert_view(item)
    cells = [
        (CounterKey(hour=r["hour"], tenant=r["tenant"], model=r["model"], metric=r["metric"], category=r["category"]), r["count"])
        for r in counters.hour("2026-12-07T12")
    ]  # fmt: skip
    s3 = boto3.client("s3")
    letters: dict[tuple[int, int], tuple[str, str | None]] = {}
    bucket = names.name("DataBucket")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"dead-letters/{topic}/"):
        for obj in page.get("Contents", []):
            letter = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            coordinates = (int(letter["partition"]), int(letter["offset"]))
            if (
                letter["topic"] != topic
                or obj["Key"] != f"dead-letters/{topic}/{coordinates[0]}/{coordinates[1]:020d}.json"
            ):
                coordinates = (-1, len(letters))  # a letter filed under other coordinates than it names
            letters[coordinates] = (str(letter["reason"]), letter.get("value_sha256"))
    return {"alerts": alerts, "counters": _fold(cells), "dead_letters": len(letters), "letters": letters}


def _compare(
    planned: list[Planned],
    chaos_view: dict[str, Any],
    baseline: dict[str, Any],
    coordinates: list[tuple[int, int]],
) -> Outcome:
    kinds = Counter(p.kind for p in planned)
    scored = sum(n for (_, _, metric, _), n in chaos_view["counters"].items() if metric == "chunks")
    deduplicated = sum(n for (_, _, metric, _), n in chaos_view["counters"].items() if metric == "deduplicated")
    dead = int(chaos_view["dead_letters"])
    n = len(planned)
    accounted = scored + dead + deduplicated
    alerts_a, alerts_b = chaos_view["alerts"], baseline["alerts"]
    mismatched_alerts = sum(alerts_a.get(k) != alerts_b.get(k) for k in set(alerts_a) | set(alerts_b))
    cells_a, cells_b = chaos_view["counters"], baseline["counters"]
    mismatched_counters = sum(cells_a.get(k) != cells_b.get(k) for k in set(cells_a) | set(cells_b))
    if dead != baseline["dead_letters"]:
        mismatched_counters += 1
    # Every poison record's letter at its own coordinates, with the fault-free run's reason and value digest.
    expected = {coordinates[i]: letter for i, letter in baseline["letters"].items()}
    found = chaos_view["letters"]
    misfiled = sum(found.get(c) != letter for c, letter in expected.items()) + len(set(found) - set(expected))
    reasons = Counter(reason for reason, _ in found.values())
    print(f"chaos: dead letters by reason {dict(sorted(reasons.items()))}; misfiled={misfiled}", flush=True)
    print(f"chaos: planned {dict(kinds)}; fault-free alerts={len(alerts_b)} chaos alerts={len(alerts_a)}", flush=True)
    return Outcome(
        n=n,
        scored=scored,
        dead_lettered=dead,
        deduplicated=deduplicated,
        duplicates=max(0, accounted - n),
        lost=max(0, n - accounted),
        mismatched_alerts=mismatched_alerts,
        mismatched_counters=mismatched_counters,
        misfiled_dead_letters=misfiled,
    )


def _produce(bootstrap: str, topic: str, planned: list[Planned]) -> list[tuple[int, int]]:
    """Send every record; returns each one's (partition, offset), where its dead letter must be filed."""
    from kafka import KafkaProducer

    # The settings the producer library documents: acks=all, idempotence, key = trace id.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20)
    sent = [producer.send(topic, key=p.key, value=p.value) for p in planned]
    producer.flush(timeout=120)
    coordinates = [(int(m.partition), int(m.offset)) for m in (f.get(timeout=60) for f in sent)]
    producer.close()
    return coordinates


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cotwatch_local.chaos", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    run = sub.add_parser("run")
    run.add_argument("-n", type=int, default=10_000)
    run.add_argument("--batch-size", type=int, default=100)
    worker = sub.add_parser("worker")
    for name in (
        "bootstrap",
        "topic",
        "group",
        "bindings",
        "alerts-table",
        "counters-table",
        "state-table",
        "bucket",
        "alerts-topic-arn",
    ):
        worker.add_argument(f"--{name}", required=True)
    worker.add_argument("--batch-size", type=int, default=100)
    worker.add_argument("--fault-rate", type=float, default=FAULT_RATE)
    worker.add_argument("--idle-s", type=float, default=8.0)
    sub.add_parser("moto").add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "worker":
        return run_worker(args)
    if args.cmd == "moto":
        return serve_moto(args.port)
    outcome = run_chaos(args.n if args.cmd == "run" else 10_000, batch_size=getattr(args, "batch_size", 100))
    print(outcome.line(), flush=True)
    clean = (
        outcome.duplicates
        == outcome.lost
        == outcome.mismatched_alerts
        == outcome.mismatched_counters
        == outcome.misfiled_dead_letters
        == 0
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
