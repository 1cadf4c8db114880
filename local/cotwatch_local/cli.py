"""The ``cotwatch`` command line: demo, produce, invoke, poll, local up|down|status, report, bench, schema,
replay, eval, calibrate.

``eval`` and ``calibrate`` hand all their arguments to :mod:`cotwatch_training.commands`.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cotwatch.trace import TraceChunk

SCHEMA_PATH = Path(str(importlib.resources.files("cotwatch") / "data" / "trace_chunk.schema.json"))


def _stack_info() -> Any:
    from cotwatch_local.stack import LocalStack

    info = LocalStack().info()
    if info is None:
        raise SystemExit("the local stack is not up: run `cotwatch local up` first")
    return info


def read_chunks(path: Path, chunk_chars: int) -> list[TraceChunk]:
    """Lines are whole traces (``reasoning``/``answer``) or ready chunks (``text``); errors name the line."""
    from cotwatch_local.produce import BadLineError, parse_line

    chunks: list[TraceChunk] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            chunks.extend(parse_line(path, number, line, chunk_chars))
        except BadLineError as exc:
            raise SystemExit(str(exc)) from exc
    return chunks


def _produce_target(args: argparse.Namespace) -> tuple[str, str]:
    bootstrap, topic = args.bootstrap_servers, args.topic
    if not (bootstrap and topic):
        info = _stack_info()
        bootstrap, topic = bootstrap or info.kafka_bootstrap_servers, topic or info.names.kafka_topic
    return str(bootstrap), str(topic)


def cmd_produce(args: argparse.Namespace) -> int:
    from cotwatch_local.adapters.kafka_producer import TraceProducer

    if (args.file is None) == (args.from_otlp is None):
        raise SystemExit("give a JSONL file or --from-otlp FILE (one of them)")
    if args.from_otlp is not None:
        return _produce_otlp(args)
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"no such file: {args.file}")
    if args.follow:
        return _produce_follow(args, path)
    if args.idle_exit is not None:
        raise SystemExit("--idle-exit goes with --follow")
    chunks = read_chunks(path, args.chunk_chars)
    bootstrap, topic = _produce_target(args)
    with TraceProducer(bootstrap, topic) as producer:
        sent = producer.send(chunks)
    print(f"published {sent} chunks of {len({c.trace_key for c in chunks})} traces to {topic} at {bootstrap}")
    return 0


def _produce_follow(args: argparse.Namespace, path: Path) -> int:
    import signal
    import threading

    from cotwatch_local.adapters.kafka_producer import TraceProducer
    from cotwatch_local.produce import follow_jsonl

    if args.idle_exit is not None and args.idle_exit <= 0:
        raise SystemExit("--idle-exit must be a positive number of seconds")
    stop = threading.Event()
    bootstrap, topic = _produce_target(args)
    # SIGINT ends the tail between lines: what was read is published and the producer flushed.
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with TraceProducer(bootstrap, topic) as producer:
            stats = follow_jsonl(
                path,
                producer.send,
                chunk_chars=args.chunk_chars,
                stop=stop,
                idle_exit_s=args.idle_exit,
                on_bad_line=lambda message: print(message, file=sys.stderr),
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    print(
        f"published {stats.chunks} chunks of {len(stats.traces)} traces from {stats.lines} lines "
        f"to {topic} at {bootstrap}" + (f"; {len(stats.bad_lines)} bad lines skipped" if stats.bad_lines else "")
    )
    return 1 if stats.bad_lines else 0


def _produce_otlp(args: argparse.Namespace) -> int:
    from cotwatch_local.adapters.kafka_producer import TraceProducer
    from cotwatch_local.produce import read_otlp_exports

    if args.follow or args.idle_exit is not None:
        raise SystemExit("--follow and --idle-exit go with a JSONL file, not --from-otlp")
    exports = read_otlp_exports(Path(args.from_otlp), args.otlp_encoding)
    bootstrap, topic = _produce_target(args)
    with TraceProducer(bootstrap, topic) as producer:
        for export in exports:
            producer.send_raw(export.value, headers=export.headers)
    spans, skipped = sum(e.spans for e in exports), sum(e.skipped for e in exports)
    print(
        f"published {len(exports)} {exports[0].encoding} exports ({spans} spans, {spans - skipped} with GenAI text) "
        f"to {topic} at {bootstrap}"
    )
    return 0


def _invoker_for(function: str, use_stack: bool) -> Any:
    from cotwatch_local.invoker import LocalInvoker

    invoker = LocalInvoker()
    if use_stack:
        logical_id = invoker.spec(function).logical_id
        invoker.set_environment(logical_id, _stack_info().env_for(logical_id))
    return invoker


def cmd_invoke(args: argparse.Namespace) -> int:
    try:
        event = json.loads(Path(args.event).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"cannot read event {args.event}: {exc}") from exc
    invoker = _invoker_for(args.function, use_stack=not args.env_from_shell)
    response = invoker.invoke(args.function, event)
    print(json.dumps(response, indent=2, default=str))
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from cotwatch_local.poller import EventSourcePoller, PollerConfig, S3Destination

    info = _stack_info()
    invoker = _invoker_for(args.function, use_stack=True)
    config = PollerConfig(
        bootstrap_servers=info.kafka_bootstrap_servers,
        topics=(info.names.kafka_topic,),
        function_name=args.function,
        batch_size=args.batch_size,
        batching_window_ms=args.batching_window_ms,
        maximum_record_age_s=args.maximum_record_age_s,
        bisect_batch_on_function_error=args.bisect,
    )
    from cotwatch_local.invoker import patched_environ

    with patched_environ(info.aws_env):
        destination = S3Destination(info.names.name("DataBucket"))
        with EventSourcePoller(config, invoker.handler(args.function), on_failure=destination) as poller:
            stats = poller.run_until_drained(idle_timeout_s=args.idle_s) if args.drain else poller.run_forever()
    print(stats.model_dump_json(indent=2, exclude={"invocation_ms"}))
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from cotwatch_local.stack import LocalStack, export_lines

    stack = LocalStack()
    if args.action == "up":
        info = stack.up()
        if args.exports:
            print(export_lines({**info.aws_env, "KAFKA_BOOTSTRAP_SERVERS": info.kafka_bootstrap_servers}))
        else:
            print(f"kafka  {info.kafka_bootstrap_servers}  topic {info.names.kafka_topic}")
            print(f"moto   {info.aws_endpoint_url}")
            for logical_id, resource in sorted(info.names.resources.items()):
                print(f"  {logical_id:<18} {resource.ref}")
        return 0
    status = stack.down() if args.action == "down" else stack.status()
    for service in (status.kafka, status.moto):
        state = "running" if service.running else "stopped"
        origin = "started by cotwatch" if service.managed else "external"
        print(f"{service.name:<6} {state:<8} {service.address or '-':<24} ({origin})")
    return 0 if args.action == "down" or status.up else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from cotwatch_local.demo import render, run_demo

    report = run_demo(
        traces=Path(args.traces) if args.traces else None,
        chunk_chars=args.chunk_chars,
        keep_running=args.keep_running,
        via_adapters=args.via_adapters,
        cooldown_seconds=None if args.stack_cooldown else args.cooldown_seconds,
        out=sys.stdout,
    )
    render(report, sys.stdout)
    return 0 if report.drained and not report.failed_batches else 1


def cmd_report(args: argparse.Namespace) -> int:
    from cotwatch_local.report import inputs_from_snapshot, inputs_from_stack, parse_span, render
    from cotwatch_local.stack import LocalStack

    try:
        since = parse_span(args.since)
    except ValueError as exc:
        raise SystemExit(f"--since: {exc}") from exc
    stack = LocalStack()
    info = stack.info() if stack.status().up else None
    if info is not None:
        from cotwatch_local.invoker import patched_environ

        with patched_environ(info.aws_env):
            rows, alerts = inputs_from_stack(info.names.name("DataBucket"), info.names.name("AlertsTable"))
        source = "roll-ups on the running local stack"
    else:
        folder = stack.state_root / "tracking"
        try:
            rows, alerts = inputs_from_snapshot(folder)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        source = f"roll-up snapshot of the last demo ({folder})"
    from cotwatch_local.patterns import summary as pattern_summary

    patterns = pattern_summary(since, args.tenant)
    html = render(rows, alerts, since=since, tenant=args.tenant, source=source, patterns=patterns)
    Path(args.out).write_text(html, encoding="utf-8")
    print(f"wrote {args.out} from the {source}: {len(rows)} counter cells, {len(alerts)} alerts")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cotwatch_local.bench import run

    return run(args)


def cmd_schema(args: argparse.Namespace) -> int:
    if args.kind == "alert":
        from cotwatch.contract import alert_schema

        text = json.dumps(alert_schema(), indent=2) + "\n"  # the shipped file: the contract, not a rendering
    else:
        text = json.dumps(TraceChunk.model_json_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Logic in :mod:`cotwatch_local.replay`; here only where the settings and records come from."""
    from contextlib import nullcontext

    from cotwatch_local.invoker import patched_environ
    from cotwatch_local.replay import ReplayError, function_environment

    bootstrap = getattr(args, "bootstrap_servers", None)
    if args.env_from_shell or args.function_name:
        env = function_environment(args.function_name) if args.function_name else {}
        context: Any = patched_environ(env) if env else nullcontext()
    else:
        info = _stack_info()
        context = patched_environ({**info.aws_env, **info.env_for("ScoreTracesFunction")})
        bootstrap = bootstrap or info.kafka_bootstrap_servers
    try:
        with context:
            return _replay(args, bootstrap)
    except ReplayError as exc:
        raise SystemExit(f"replay: {exc}") from exc


def _replay(args: argparse.Namespace, bootstrap: str | None) -> int:
    from datetime import datetime

    from cotwatch_local.replay import (
        FAILED_BATCH_PREFIXES,
        Replayer,
        ReplayError,
        dead_letter_set,
        failed_batch_set,
        kafka_range_set,
    )

    if args.source == "kafka" and not bootstrap:  # argument errors before any client is built
        raise ReplayError("no Kafka broker: give --bootstrap-servers")
    if args.source == "kafka" and (args.topic is None or args.partition is None):
        raise ReplayError("kafka needs --topic and --partition")
    replayer = Replayer.from_environment()
    bucket = replayer.settings.data_bucket
    if args.source == "dead-letters":
        found = dead_letter_set(
            replayer.s3,
            bucket,
            replayer.settings.dead_letter_prefix,
            topic=args.topic,
            partition=args.partition,
            reasons=args.reason or (),
        )
    elif args.source == "failed-batches":
        found = failed_batch_set(
            replayer.s3, bucket, args.prefix or FAILED_BATCH_PREFIXES, topic=args.topic, partition=args.partition
        )
    else:
        assert bootstrap is not None and args.partition is not None  # checked above
        try:
            from_time = datetime.fromisoformat(args.from_time) if args.from_time else None
            to_time = datetime.fromisoformat(args.to_time) if args.to_time else None
        except ValueError as exc:
            raise ReplayError(f"--from-time/--to-time: {exc}") from exc
        found = kafka_range_set(
            bootstrap,
            args.topic,
            args.partition,
            from_offset=args.from_offset,
            to_offset=args.to_offset,
            from_time=from_time,
            to_time=to_time,
            consumer_config={"security_protocol": args.security_protocol},
        )
    if args.source != "dead-letters":  # archived dead letters never scored; other records may have, unclaimed
        replayer.set_aside_unclaimed_done(found)
    if args.dry_run:
        estimate = replayer.estimate(
            found, windows_per_second=args.windows_per_second, batch_size=args.batch_size, memory_mb=args.memory_mb
        )
        print(estimate.model_dump_json(indent=2) if args.json else estimate.render())
        return 0
    from cotwatch_local.replay import run_replay

    progress = None if args.json else (lambda line: print(line, file=sys.stderr))
    result = run_replay(found, replayer.use_case(found), batch_size=args.batch_size, progress=progress)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        for item in result.records:
            if item.outcome in ("dead_lettered", "failed"):
                print(f"  {item.record_id}: {item.outcome} {item.reason or item.error} ({item.origin})")
        for skipped in result.unreplayable:
            print(f"  {skipped['where']}: not replayable, {skipped['reason']}: {skipped['detail']}")
        print(result.summary())
    return 1 if result.outcomes.get("failed") else 0


TRAINING_COMMANDS = {
    "eval": "score a labelled JSONL and report detection metrics (cotwatch_training; --help there)",
    "calibrate": "fit per-category thresholds on the benign rows of a JSONL (cotwatch_training; --help there)",
    "export-onnx": "export the encoder to ONNX, --quantize int8 for int8, into the cache (cotwatch_training)",
}


def cmd_training(args: argparse.Namespace) -> int:
    try:
        from cotwatch_training.commands import main as training_main
    except ImportError as exc:  # the training package's dependencies come with the train and ml extras
        raise SystemExit(f"cotwatch {args.command} needs the train and ml extras: {exc}") from exc
    return training_main([args.command, *args.training_args])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cotwatch", description="Chain-of-thought monitor for reasoning models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline locally on the bundled demo traces")
    demo.add_argument("--traces", help="JSONL of traces instead of the bundled demo set")
    demo.add_argument("--chunk-chars", type=int, default=1500)
    demo.add_argument("--keep-running", action="store_true", help="leave the stack up afterwards")
    demo.add_argument(
        "--via-adapters",
        action="store_true",
        help="produce the traces through TraceWriter and the OpenAI stream tee (loopback server), not JSONL chunks",
    )
    demo.add_argument(
        "--cooldown-seconds",
        type=int,
        default=0,
        help="the scorer's alert cooldown for this run (default 0: subscribers get every alert)",
    )
    demo.add_argument(
        "--stack-cooldown", action="store_true", help="use the stack's AlertCooldownSeconds (600) instead: digests"
    )
    demo.set_defaults(func=cmd_demo)

    produce = sub.add_parser("produce", help="publish traces (JSONL, or an OTLP export) to Kafka, split into chunks")
    produce.add_argument("file", nargs="?", help="JSONL: one trace or chunk per line")
    produce.add_argument("--follow", action="store_true", help="keep tailing the file, publishing lines as they come")
    produce.add_argument(
        "--idle-exit", type=float, metavar="S", help="with --follow: stop after S seconds without data"
    )
    produce.add_argument("--from-otlp", metavar="FILE", help="publish an OTLP trace export (otlp_proto or otlp_json)")
    produce.add_argument("--otlp-encoding", choices=["otlp_proto", "otlp_json"], help="default: from the content")
    produce.add_argument("--bootstrap-servers", help="default: the local stack's broker")
    produce.add_argument("--topic", help="default: the local stack's traces topic")
    produce.add_argument("--chunk-chars", type=int, default=1500)
    produce.set_defaults(func=cmd_produce)

    invoke = sub.add_parser("invoke", help="run one function's handler in-process on an event file")
    invoke.add_argument("function", help="folder name (score_traces) or logical id (ScoreTracesFunction)")
    invoke.add_argument("event", help="event JSON file, e.g. events/score_traces_msk.json")
    invoke.add_argument(
        "--env-from-shell", action="store_true", help="take settings from the environment, not the local stack"
    )
    invoke.set_defaults(func=cmd_invoke)

    poll = sub.add_parser("poll", help="run the local Kafka event-source poller for a function")
    poll.add_argument("--function", default="score_traces")
    poll.add_argument("--batch-size", type=int, default=100)
    poll.add_argument("--batching-window-ms", type=int, default=500)
    poll.add_argument(
        "--maximum-record-age-s",
        type=int,
        default=-1,
        help="records older than this go to the on-failure destination (-1: no limit; the template uses 86400)",
    )
    poll.add_argument("--bisect", action="store_true", help="split batches whose invocation raised (as the template)")
    poll.add_argument("--drain", action="store_true", help="stop once the topic is drained")
    poll.add_argument("--idle-s", type=float, default=3.0)
    poll.set_defaults(func=cmd_poll)

    local = sub.add_parser("local", help="the local stack: Kafka broker + moto server + resources")
    local.add_argument("action", choices=["up", "down", "status"])
    local.add_argument("--exports", action="store_true", help="with up: print shell exports for the endpoints")
    local.set_defaults(func=cmd_local)

    report = sub.add_parser("report", help="one self-contained HTML report (charts, tables) from the roll-ups")
    report.add_argument("--since", default="7d", help="window ending now: 36h, 7d, 2w (baseline: the one before)")
    report.add_argument("--tenant", help="only this tenant (default: all)")
    report.add_argument("--out", default="report.html")
    report.set_defaults(func=cmd_report)

    patterns = sub.add_parser("patterns", help="embedding drift and clusters of suspicious windows; promote one")
    from cotwatch_local.patterns import add_arguments as add_patterns_arguments

    add_patterns_arguments(patterns)

    bench = sub.add_parser("bench", help="scorer throughput against raw encoding, cold start, RSS, latency, cost")
    from cotwatch_local.bench import add_arguments as add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    schema = sub.add_parser("schema", help="print (or write) the JSON Schema of a trace chunk or of alert messages")
    schema.add_argument(
        "kind", nargs="?", choices=["trace", "alert"], default="trace", help="alert: SNS messages and API documents"
    )
    schema.add_argument("--out", help=f"write here, e.g. {SCHEMA_PATH}")
    schema.set_defaults(func=cmd_schema)

    replay = sub.add_parser(
        "replay", help="re-score dead letters, failed batches or a Kafka range (idempotent; --dry-run estimates)"
    )
    replay.add_argument("source", choices=["dead-letters", "failed-batches", "kafka"])
    replay.add_argument("--dry-run", action="store_true", help="estimate chunks, tokens, windows, time and cost only")
    replay.add_argument("--topic", help="only this topic (required for kafka)")
    replay.add_argument("--partition", type=int, help="only this partition (required for kafka)")
    replay.add_argument("--reason", action="append", help="dead-letters: only this reason (repeatable)")
    replay.add_argument(
        "--prefix", action="append", help="failed-batches: key prefix (default aws/lambda/ and failed-batches/)"
    )
    replay.add_argument("--from-offset", type=int, help="kafka: first offset (inclusive)")
    replay.add_argument("--to-offset", type=int, help="kafka: last offset (inclusive; default: the end)")
    replay.add_argument("--from-time", help="kafka: ISO time of the first record (instead of --from-offset)")
    replay.add_argument("--to-time", help="kafka: ISO time the range ends before (instead of --to-offset)")
    replay.add_argument("--bootstrap-servers", help="kafka: the brokers (default: the local stack's)")
    replay.add_argument("--security-protocol", default="PLAINTEXT", choices=["PLAINTEXT", "SSL"], help="kafka")
    replay.add_argument("--batch-size", type=int, default=100, help="records per use-case call (and invocation)")
    replay.add_argument("--windows-per-second", type=float, help="dry run: a measured rate (default: calibrate here)")
    replay.add_argument("--memory-mb", type=int, default=3008, help="dry run: the scorer's memory, for the cost")
    replay.add_argument("--env-from-shell", action="store_true", help="scorer settings and AWS from the environment")
    replay.add_argument("--function-name", help="scorer settings read from this deployed function's configuration")
    replay.add_argument("--json", action="store_true", help="print the estimate or the result as JSON")
    replay.set_defaults(func=cmd_replay)

    from cotwatch_local.alerts_cli import add_commands as add_alert_commands

    add_alert_commands(sub)  # alerts list|show|ack|resolve, subscribe, unsubscribe, subscriptions

    # eval and calibrate belong to cotwatch_training: every argument after the subcommand goes there
    # unchanged, so its flags can change without this parser knowing them.
    for name, summary in TRAINING_COMMANDS.items():
        training = sub.add_parser(name, help=summary, add_help=False, prefix_chars="\0")
        training.add_argument("training_args", nargs=argparse.REMAINDER)
        training.set_defaults(func=cmd_training)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:
        # kafka-python logs every refused connection while a broker starts; the stack reports real failures.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
