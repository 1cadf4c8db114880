"""The command line's argument handling and its clear errors on bad input (no stack needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotwatch.trace import TraceChunk
from cotwatch_local.cli import build_parser, main, read_chunks


def test_every_documented_command_is_there() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"demo", "produce", "invoke", "poll", "local", "schema", "eval", "calibrate"} <= set(commands)


def test_schema_command_writes_the_packaged_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == TraceChunk.model_json_schema()


def test_read_chunks_takes_whole_traces_and_ready_chunks(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"trace_id": "a", "model": "m", "reasoning": "x. " * 400, "answer": "done"})
        + "\n\n"
        + json.dumps({"trace_id": "b", "model": "m", "text": "one chunk"})
        + "\n"
    )
    chunks = read_chunks(path, chunk_chars=500)
    assert {c.trace_id for c in chunks} == {"a", "b"}
    assert [c.seq for c in chunks if c.trace_id == "a"] == list(range(len(chunks) - 1))


def test_read_chunks_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"trace_id": "a", "model": "m", "text": "ok"}) + "\n{not json\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: not a trace or chunk"):
        read_chunks(path, chunk_chars=500)


def test_invoke_with_a_missing_event_file_says_so() -> None:
    with pytest.raises(SystemExit, match="cannot read event"):
        main(["invoke", "score_traces", "/nonexistent/event.json", "--env-from-shell"])


def test_eval_hands_every_argument_to_the_training_package_unchanged() -> None:
    # Given flags the CLI itself does not define, including one the training package may add later
    argv = ["eval", "--data", "dev.jsonl", "--cv", "source", "--json", "--a-future-flag", "x"]

    # When the CLI parses them
    args = build_parser().parse_args(argv)

    # Then they all reach cotwatch_training.commands as given
    assert args.training_args == argv[1:]


def test_calibrate_runs_the_training_command_with_its_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a calibration data file that does not exist
    missing = tmp_path / "missing.jsonl"

    # When calibrate runs through the CLI
    code = main(["calibrate", "--data", str(missing), "--target-fpr", "0.02"])

    # Then the training command itself read the path and reports it
    err = capsys.readouterr().err
    assert code != 0
    assert f"cotwatch calibrate: [Errno 2] No such file or directory: '{missing}'" in err


def test_schema_alert_prints_the_shipped_alert_contract(capsys: pytest.CaptureFixture[str]) -> None:
    # When the alert schema is asked for
    assert main(["schema", "alert"]) == 0

    # Then it is the versioned contract, with the message kinds and the API document
    printed = json.loads(capsys.readouterr().out)
    assert printed["$id"].endswith("alert.v1.schema.json")
    assert {"alert_message", "digest_message", "alert_document"} <= set(printed["$defs"])
