"""The in-process Lambda invoker, with tiny handlers written into a temporary repository."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cotwatch_local.invoker import (
    DEFAULT_HANDLER,
    FunctionNotFoundError,
    FunctionTimeoutError,
    LocalInvoker,
    LocalLambdaContext,
    function_spec,
    to_function_name,
    to_logical_id,
)

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  FnMemory:
    Type: Number
    Default: 256
Globals:
  Function:
    Runtime: python3.11
    Timeout: 7
    Environment:
      Variables:
        TABLE: !Ref SomeTable
Resources:
  {logical}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/{name}/
      Handler: app.lambda_handler
      MemorySize: !Ref FnMemory
      Timeout: 1
      Layers: [!Ref SharedLayer]
      Description: !Sub "${{AWS::StackName}}-{name}"
  ScorerImageFunction:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      ImageConfig:
        Command: ["handler.main"]
    Metadata:
      DockerContext: functions/scorer_image
  PlainFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/plain/
  DockerScorerFunction:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      MemorySize: 2048
    Metadata:
      DockerContext: .
      Dockerfile: functions/docker_scorer/Dockerfile
"""

HANDLER = """\
import os
import time

from {helper} import double

INIT_GREETING = os.environ.get("GREETING", "unset")
COLD_STARTS = 0
COLD_STARTS += 1
time.sleep(0.01)


def lambda_handler(event, context):
    if event.get("raise"):
        raise ValueError("bad trace")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {{
        "doubled": double(event.get("n", 0)),
        "init_greeting": INIT_GREETING,
        "greeting": os.environ.get("GREETING"),
        "function_name_env": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "sam_local": os.environ.get("AWS_SAM_LOCAL"),
        "cold_starts": COLD_STARTS,
        "context": {{
            "function_name": context.function_name,
            "memory": context.memory_limit_in_mb,
            "arn": context.invoked_function_arn,
            "request_id": context.aws_request_id,
            "remaining": context.get_remaining_time_in_millis(),
            "log_group": context.log_group_name,
        }},
    }}
"""


@pytest.fixture
def fn_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository with one zip function whose handler imports a sibling module (unique per test)."""
    name = f"hello_{uuid.uuid4().hex[:8]}"
    logical = to_logical_id(name)
    helper = f"helper_{name}"
    code = tmp_path / "functions" / name
    code.mkdir(parents=True)
    (code / "app.py").write_text(HANDLER.format(helper=helper))
    (code / f"{helper}.py").write_text("def double(n):\n    return 2 * n\n")
    (tmp_path / "template.yaml").write_text(TEMPLATE.format(logical=logical, name=name))
    return tmp_path, name


def make_invoker(repo: Path, name: str, **kwargs: Any) -> LocalInvoker:
    return LocalInvoker(repo_root=repo, environments={name: {"GREETING": "hi"}}, **kwargs)


def test_names_map_between_folders_and_logical_ids() -> None:
    assert to_logical_id("score_traces") == "ScoreTracesFunction"
    assert to_logical_id("ScoreTracesFunction") == "ScoreTracesFunction"
    assert to_function_name("ScoreTracesFunction") == "score_traces"
    assert to_function_name("score_traces") == "score_traces"
    assert to_function_name(to_logical_id("alerts")) == "alerts"


def test_spec_is_read_from_the_template(fn_repo: tuple[Path, str]) -> None:
    repo, name = fn_repo
    spec = function_spec(name, repo_root=repo)
    assert spec.logical_id == to_logical_id(name)
    assert spec.code_dir == (repo / "functions" / name).resolve()
    assert (spec.handler, spec.memory_mb, spec.timeout_s, spec.package_type) == (DEFAULT_HANDLER, 256, 1, "Zip")
    # By logical id too, and Globals fill in what the function leaves out.
    plain = function_spec("PlainFunction", repo_root=repo)
    assert (plain.name, plain.handler, plain.memory_mb, plain.timeout_s) == ("plain", DEFAULT_HANDLER, 128, 7)


def test_image_functions_take_the_handler_from_the_image_command(fn_repo: tuple[Path, str]) -> None:
    repo, _ = fn_repo
    spec = function_spec("scorer_image", repo_root=repo)
    assert spec.package_type == "Image" and spec.handler == "handler.main"
    assert spec.code_dir == (repo / "functions" / "scorer_image").resolve()
    # No ImageConfig: the Dockerfile's CMD names the handler, and the Dockerfile's folder holds the code.
    docker = repo / "functions" / "docker_scorer"
    docker.mkdir(parents=True)
    (docker / "Dockerfile").write_text('FROM scratch\nCMD ["main.handle"]\n')
    spec = function_spec("docker_scorer", repo_root=repo)
    assert (spec.logical_id, spec.handler, spec.memory_mb) == ("DockerScorerFunction", "main.handle", 2048)
    assert spec.code_dir == docker.resolve()


def test_without_a_template_the_conventions_apply(tmp_path: Path) -> None:
    spec = function_spec("score_traces", repo_root=tmp_path)
    assert spec.handler == DEFAULT_HANDLER and spec.code_dir == (tmp_path / "functions" / "score_traces")
    assert (spec.memory_mb, spec.timeout_s) == (128, 3)


def test_the_project_template_resolves_its_functions() -> None:
    spec = function_spec("score_traces", repo_root=REPO)
    assert (spec.logical_id, spec.handler) == ("ScoreTracesFunction", DEFAULT_HANDLER)
    assert spec.code_dir == (REPO / "functions" / "score_traces").resolve()
    assert spec.timeout_s >= 30 and spec.memory_mb >= 1024  # parameter defaults behind !Ref
    assert function_spec("ScoreTracesFunction", repo_root=REPO) == spec
    # A folder whose logical id breaks the naming convention is found through its CodeUri.
    for folder in (REPO / "functions").iterdir():
        if (folder / "app.py").is_file():
            by_folder = function_spec(folder.name, repo_root=REPO)
            assert by_folder.name == folder.name
            assert function_spec(by_folder.logical_id, repo_root=REPO) == by_folder


def test_invoke_applies_environment_and_context(fn_repo: tuple[Path, str]) -> None:
    repo, name = fn_repo
    assert "GREETING" not in os.environ
    invoker = make_invoker(repo, name)
    out = invoker.invoke(name, {"n": 21})
    assert out["doubled"] == 42
    assert out["init_greeting"] == "hi" and out["greeting"] == "hi"  # at import and at invoke time
    assert out["function_name_env"] == name and out["sam_local"] == "true"
    assert out["task_root"] == str((repo / "functions" / name).resolve())
    ctx = out["context"]
    assert ctx["function_name"] == name and ctx["memory"] == 256
    assert ctx["arn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert ctx["log_group"] == f"/aws/lambda/{name}"
    assert 0 < ctx["remaining"] <= 1000
    uuid.UUID(ctx["request_id"])
    assert "GREETING" not in os.environ and os.environ.get("AWS_LAMBDA_FUNCTION_NAME") != name


def test_module_is_loaded_once_and_cold_start_reported(fn_repo: tuple[Path, str]) -> None:
    repo, name = fn_repo
    invoker = make_invoker(repo, name)
    assert invoker.cold_start_ms(name) is None
    first = invoker.invoke(name, {})
    second = invoker.invoke(to_logical_id(name), {})
    assert first["cold_starts"] == second["cold_starts"] == 1
    assert first["context"]["request_id"] != second["context"]["request_id"]
    cold = invoker.cold_start_ms(name)
    assert cold is not None and cold >= 10
    assert [r.init_duration_ms is not None for r in invoker.reports] == [True, False]
    assert invoker.reports[0].init_duration_ms == cold
    # Another invoker is another container: its own cold start, its own module state.
    other = make_invoker(repo, name)
    assert other.invoke(name, {})["cold_starts"] == 1
    assert other.load(name).module is not invoker.load(name).module
    invoker.unload(name)
    invoker.invoke(name, {})
    assert invoker.reports[-1].init_duration_ms is not None


def test_function_errors_propagate_and_are_reported(fn_repo: tuple[Path, str]) -> None:
    repo, name = fn_repo
    invoker = make_invoker(repo, name)
    with pytest.raises(ValueError, match="bad trace"):
        invoker.invoke(name, {"raise": True})
    assert invoker.reports[-1].error == "ValueError: bad trace"
    assert "GREETING" not in os.environ  # restored on the error path too


def test_running_past_the_timeout_fails_the_invocation(fn_repo: tuple[Path, str]) -> None:
    repo, name = fn_repo
    invoker = make_invoker(repo, name)
    with pytest.raises(FunctionTimeoutError, match=r"timed out after 1\.00 seconds"):
        invoker.invoke(name, {"sleep": 1.05})
    lenient = make_invoker(repo, name, enforce_timeout=False)
    assert lenient.invoke(name, {"sleep": 1.05})["doubled"] == 0


def test_missing_handlers_are_reported(tmp_path: Path, fn_repo: tuple[Path, str]) -> None:
    with pytest.raises(FunctionNotFoundError, match="no handler file"):
        LocalInvoker(repo_root=tmp_path).invoke("does_not_exist", {})
    repo, _ = fn_repo
    code = repo / "functions" / "plain"
    code.mkdir(parents=True)
    (code / "app.py").write_text("handler = 1\n")
    with pytest.raises(FunctionNotFoundError, match="no callable 'lambda_handler'"):
        LocalInvoker(repo_root=repo).invoke("plain", {})


def test_handler_adapter_uses_the_callers_context(fn_repo: tuple[Path, str]) -> None:
    repo, name = fn_repo
    invoker = make_invoker(repo, name)
    handler = invoker.handler(name)
    context = invoker.new_context(name)
    out = handler({"n": 1}, context)
    assert out is not None and out["context"]["request_id"] == context.aws_request_id


def test_context_counts_down_from_the_timeout() -> None:
    ctx = LocalLambdaContext(function_name="f", timeout_s=0.2)
    first = ctx.get_remaining_time_in_millis()
    assert 150 < first <= 200
    time.sleep(0.05)
    assert ctx.get_remaining_time_in_millis() < first
    time.sleep(0.2)
    assert ctx.get_remaining_time_in_millis() == 0
