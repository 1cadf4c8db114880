"""Run a function's handler in this process, the way one warm Lambda container would.

Locally there is no Lambda service, so :class:`LocalInvoker` plays its part for ``functions/<name>/app.py``:

* the handler module is imported from its file under a unique module name, once per invoker (the
  "container"); that import is the cold start and its duration is reported as Lambda's *Init Duration*;
* the function's environment (computed by the caller, e.g. from ``template.yaml``) is applied around the
  import and every invocation, on top of the variables the Lambda runtime itself sets;
* every invocation gets a fresh :class:`LocalLambdaContext` whose remaining time counts down from the
  function's timeout, and a ``REPORT``-style log line.

Folder names are snake_case (``score_traces``); template logical ids are CamelCase + ``Function``
(``ScoreTracesFunction``), and where a logical id breaks that convention (``RollupFunction`` for
``functions/rollup_counters/``) the function is found by its ``CodeUri`` or ``Dockerfile``. ``Handler``,
``MemorySize`` and ``Timeout`` come from the template (parameter defaults behind ``!Ref``); an image function
has no ``Handler``, so its ``ImageConfig.Command``, else its Dockerfile's ``CMD``, else ``app.lambda_handler``
is used.

Deviations from Lambda: the handler runs in this interpreter (no memory limit, no isolation between
functions beyond module names; sibling modules of different functions share ``sys.modules``), and a timeout
cannot pre-empt it - an invocation that overran is reported as failed once it returns.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

from pydantic import BaseModel, ConfigDict

from cotwatch_local import LOCAL_ACCOUNT_ID, LOCAL_REGION, LocalStackError
from cotwatch_local import repo_root as find_repo_root
from cotwatch_local.cloudformation import function_ids, load_template, resolve_parameters

logger = logging.getLogger(__name__)

DEFAULT_HANDLER = "app.lambda_handler"
# Lambda's own defaults when neither the function nor Globals set them.
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_S = 3


def _default_repo_root() -> Path:
    try:
        return find_repo_root()
    except LocalStackError:  # not a checkout with infra/: this file sits at <root>/local/cotwatch_local/
        return Path(__file__).resolve().parents[2]


class LambdaContextLike(Protocol):
    """What handlers (and powertools) read from Lambda's context object."""

    @property
    def function_name(self) -> str: ...

    @property
    def function_version(self) -> str: ...

    @property
    def invoked_function_arn(self) -> str: ...

    @property
    def memory_limit_in_mb(self) -> int: ...

    @property
    def aws_request_id(self) -> str: ...

    @property
    def log_group_name(self) -> str: ...

    @property
    def log_stream_name(self) -> str: ...

    def get_remaining_time_in_millis(self) -> int: ...


Handler = Callable[[dict[str, Any], LambdaContextLike], dict[str, Any] | None]


@dataclass
class LocalLambdaContext:
    """A Lambda context for one invocation; the deadline starts when it is created."""

    function_name: str
    memory_limit_in_mb: int = DEFAULT_MEMORY_MB
    timeout_s: float = DEFAULT_TIMEOUT_S
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"
            )
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionSpec(BaseModel):
    """Where a function's code lives and how Lambda would run it, as read from the template."""

    model_config = ConfigDict(frozen=True)

    name: str
    logical_id: str
    code_dir: Path
    handler: str
    memory_mb: int
    timeout_s: int
    package_type: str = "Zip"


class InvocationReport(BaseModel):
    """What Lambda's ``REPORT`` line says about one invocation."""

    function_name: str
    request_id: str
    duration_ms: float
    init_duration_ms: float | None = None
    error: str | None = None


class FunctionTimeoutError(RuntimeError):
    """The handler ran longer than the function's timeout (Lambda would have killed it)."""


class FunctionNotFoundError(LookupError):
    """No handler file for the function, or the handler attribute is missing."""


def to_logical_id(function_name: str) -> str:
    """``score_traces`` -> ``ScoreTracesFunction``; a logical id is returned unchanged."""
    if function_name.endswith("Function") and "_" not in function_name and function_name[:1].isupper():
        return function_name
    return "".join(part.capitalize() for part in function_name.split("_") if part) + "Function"


def to_function_name(logical_id: str) -> str:
    """``ScoreTracesFunction`` -> ``score_traces``; a snake_case name is returned unchanged."""
    if "_" in logical_id or logical_id.islower():
        return logical_id
    stem = logical_id.removesuffix("Function")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def _norm(path: str) -> str:
    return path.strip().removeprefix("./").rstrip("/")


def _dockerfile_cmd(dockerfile: Path) -> str | None:
    """The handler an image would run: the first element of its last exec-form ``CMD``."""
    if not dockerfile.is_file():
        return None
    handler = None
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.strip().upper().startswith("CMD"):
            try:
                command = json.loads(line.strip()[3:].strip())
            except ValueError:
                continue
            if isinstance(command, list) and command and isinstance(command[0], str):
                handler = command[0]
    return handler


def _find_function(template: Mapping[str, Any], function_name: str) -> str | None:
    """The logical id for a folder name or logical id: exact id, naming convention, then CodeUri/Dockerfile."""
    ids = function_ids(template)
    for candidate in (function_name, to_logical_id(function_name)):
        if candidate in ids:
            return candidate
    folder = f"functions/{to_function_name(function_name)}"
    for logical_id in ids:
        resource = template["Resources"][logical_id]
        props = resource.get("Properties") or {}
        metadata = resource.get("Metadata") or {}
        code_uri = props.get("CodeUri")
        dockerfile = metadata.get("Dockerfile")
        if isinstance(code_uri, str) and _norm(code_uri) == folder:
            return logical_id
        if isinstance(dockerfile, str) and _norm(str(Path(_norm(dockerfile)).parent)) == folder:
            return logical_id
    return None


def function_spec(
    function_name: str,
    *,
    template_path: Path | None = None,
    repo_root: Path | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
) -> FunctionSpec:
    """Resolve a function's code folder, handler, memory and timeout from the template (if any).

    ``function_name`` is the folder name (``score_traces``) or the logical id (``ScoreTracesFunction``);
    ``!Ref`` to parameters resolves to their defaults (or ``parameter_overrides``).
    """
    root = repo_root or _default_repo_root()
    template_file = template_path or root / "template.yaml"
    template: dict[str, Any] = load_template(template_file) if template_file.is_file() else {"Resources": {}}
    base = template_file.parent if template_file.is_file() else root
    logical_id = _find_function(template, function_name)

    def setting(section: Mapping[str, Any], key: str) -> Any:
        if key not in section:
            return None
        value = resolve_parameters(template, section[key], parameter_overrides)
        # Any other intrinsic (a !GetAtt, an !If) cannot be known without a stack: no setting.
        intrinsic = isinstance(value, dict) and len(value) == 1 and str(next(iter(value))).startswith(("Ref", "Fn::"))
        return None if intrinsic else value

    resource = template["Resources"].get(logical_id, {}) if logical_id else {}
    props: Mapping[str, Any] = resource.get("Properties") or {}
    metadata: Mapping[str, Any] = resource.get("Metadata") or {}
    globals_fn: Mapping[str, Any] = (template.get("Globals") or {}).get("Function") or {}

    def prop(key: str) -> Any:
        value = setting(props, key)
        return value if value is not None else setting(globals_fn, key)

    package_type = str(prop("PackageType") or "Zip")
    code_uri = setting(props, "CodeUri")
    dockerfile = metadata.get("Dockerfile")
    name = to_function_name(function_name)
    if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
        code_dir = base / code_uri
        name = Path(_norm(code_uri)).name
    elif package_type == "Image" and isinstance(dockerfile, str):
        # The Dockerfile sits next to the handler it copies into the image.
        code_dir = (base / str(metadata.get("DockerContext", ".")) / dockerfile).parent
        name = code_dir.name
    else:
        code_dir = root / "functions" / name
    handler = prop("Handler")
    if not handler and package_type == "Image":
        command = (setting(props, "ImageConfig") or {}).get("Command") or []
        handler = command[0] if command else None
        if not handler and isinstance(dockerfile, str):
            handler = _dockerfile_cmd(base / str(metadata.get("DockerContext", ".")) / dockerfile)
    return FunctionSpec(
        name=name,
        logical_id=logical_id or to_logical_id(function_name),
        code_dir=code_dir.resolve(),
        handler=str(handler or DEFAULT_HANDLER),
        memory_mb=int(prop("MemorySize") or DEFAULT_MEMORY_MB),
        timeout_s=int(prop("Timeout") or DEFAULT_TIMEOUT_S),
        package_type=package_type,
    )


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set variables for the duration of the block and restore the previous values afterwards.

    Process-wide, like the environment itself: do not invoke two functions concurrently from threads.
    """
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: str(value) for key, value in values.items()})
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@dataclass
class LoadedFunction:
    spec: FunctionSpec
    module: ModuleType
    handler: Callable[..., Any]
    init_duration_ms: float
    invocations: int = 0


_module_counter = itertools.count(1)


class LocalInvoker:
    """Loads handlers once (cold start) and invokes them in-process with Lambda's context and env."""

    def __init__(
        self,
        *,
        repo_root: Path | None = None,
        template_path: Path | None = None,
        environments: Mapping[str, Mapping[str, str]] | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        enforce_timeout: bool = True,
    ) -> None:
        self.repo_root = (repo_root or _default_repo_root()).resolve()
        self.template_path = template_path or self.repo_root / "template.yaml"
        self.parameter_overrides = dict(parameter_overrides or {})
        self.enforce_timeout = enforce_timeout
        self._environments: dict[str, dict[str, str]] = {}
        for name, env in (environments or {}).items():
            self.set_environment(name, env)
        self._specs: dict[str, FunctionSpec] = {}
        self._loaded: dict[str, LoadedFunction] = {}
        self.reports: list[InvocationReport] = []

    def set_environment(self, function_name: str, environment: Mapping[str, str]) -> None:
        """Environment for a function, by folder name or logical id (applies from its next load/invoke)."""
        self._environments[function_name] = {k: str(v) for k, v in environment.items()}

    def spec(self, function_name: str) -> FunctionSpec:
        """The function's spec, by folder name (``score_traces``) or logical id (``ScoreTracesFunction``)."""
        if function_name not in self._specs:
            self._specs[function_name] = function_spec(
                function_name,
                template_path=self.template_path,
                repo_root=self.repo_root,
                parameter_overrides=self.parameter_overrides,
            )
        return self._specs[function_name]

    def environment(self, function_name: str) -> dict[str, str]:
        """The runtime's own variables (as ``sam local`` sets them) overlaid by the caller's."""
        spec = self.spec(function_name)
        runtime = {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            # Makes powertools' Tracer disable itself, as it does under `sam local`.
            "AWS_SAM_LOCAL": "true",
        }
        caller = self._environments.get(spec.name) or self._environments.get(spec.logical_id) or {}
        return {**runtime, **caller}

    def load(self, function_name: str) -> LoadedFunction:
        """Import the handler module once; later calls return the warm instance."""
        spec = self.spec(function_name)
        name = spec.name
        if name in self._loaded:
            return self._loaded[name]
        module_path, _, attr = spec.handler.rpartition(".")
        if not module_path or not attr:
            raise FunctionNotFoundError(f"{name}: handler {spec.handler!r} is not '<module>.<function>'")
        file = spec.code_dir / (module_path.replace(".", "/") + ".py")
        if not file.is_file():
            raise FunctionNotFoundError(f"{name}: no handler file {file}")
        self._ensure_import_paths(spec.code_dir)
        # A unique name per load keeps two invokers (or a reload) from sharing module state.
        module_name = f"cotwatch_local_fn_{name}_{module_path.replace('.', '_')}_{next(_module_counter)}"
        import_spec = importlib.util.spec_from_file_location(module_name, file)
        if import_spec is None or import_spec.loader is None:
            raise FunctionNotFoundError(f"{name}: cannot import {file}")
        module = importlib.util.module_from_spec(import_spec)
        sys.modules[module_name] = module
        started = time.perf_counter()
        try:
            with patched_environ(self.environment(name)):
                import_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        init_ms = (time.perf_counter() - started) * 1000
        handler = getattr(module, attr, None)
        if not callable(handler):
            sys.modules.pop(module_name, None)
            raise FunctionNotFoundError(f"{name}: {file} has no callable {attr!r}")
        loaded = LoadedFunction(spec=spec, module=module, handler=handler, init_duration_ms=init_ms)
        self._loaded[name] = loaded
        logger.info("INIT %s: imported %s in %.1f ms", name, file, init_ms)
        return loaded

    def unload(self, function_name: str) -> None:
        """Forget the warm module, so the next invocation is a cold start again."""
        loaded = self._loaded.pop(self.spec(function_name).name, None)
        if loaded is not None:
            sys.modules.pop(loaded.module.__name__, None)

    def cold_start_ms(self, function_name: str) -> float | None:
        """Init duration of the loaded function, or None if it has not been loaded yet."""
        loaded = self._loaded.get(self.spec(function_name).name)
        return loaded.init_duration_ms if loaded else None

    def new_context(self, function_name: str) -> LocalLambdaContext:
        spec = self.spec(function_name)
        return LocalLambdaContext(function_name=spec.name, memory_limit_in_mb=spec.memory_mb, timeout_s=spec.timeout_s)

    def invoke(self, function_name: str, event: Any, context: LambdaContextLike | None = None) -> Any:
        """Invoke the handler synchronously; its exceptions propagate like a function error."""
        cold = self.spec(function_name).name not in self._loaded
        loaded = self.load(function_name)
        spec = loaded.spec
        ctx: LambdaContextLike = context if context is not None else self.new_context(spec.name)
        report = InvocationReport(
            function_name=spec.name,
            request_id=ctx.aws_request_id,
            duration_ms=0.0,
            init_duration_ms=loaded.init_duration_ms if cold else None,
        )
        started = time.perf_counter()
        try:
            with patched_environ(self.environment(spec.name)):
                response = loaded.handler(event, ctx)
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            report.duration_ms = (time.perf_counter() - started) * 1000
            loaded.invocations += 1
            self.reports.append(report)
            logger.info(
                "REPORT RequestId: %s Function: %s Duration: %.2f ms Memory Size: %d MB%s%s",
                report.request_id,
                spec.name,
                report.duration_ms,
                spec.memory_mb,
                f" Init Duration: {report.init_duration_ms:.2f} ms" if report.init_duration_ms is not None else "",
                f" Error: {report.error}" if report.error else "",
            )
        # Lambda would have stopped the handler at the deadline; in-process we can only discard the
        # result afterwards, which is what the caller observes (a failed invocation).
        if self.enforce_timeout and report.duration_ms > spec.timeout_s * 1000:
            report.error = f"Task timed out after {spec.timeout_s:.2f} seconds"
            raise FunctionTimeoutError(f"{spec.name}: {report.error}")
        return response

    def handler(self, function_name: str) -> Handler:
        """A ``(event, context) -> response`` callable for the event-source poller."""
        name = self.spec(function_name).name

        def _call(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any] | None:
            # Passed through untouched: the poller validates the shape, as Lambda does.
            return cast("dict[str, Any] | None", self.invoke(name, event, context))

        return _call

    def _ensure_import_paths(self, code_dir: Path) -> None:
        # Lambda puts the function's code root and the layer (/opt/python, here shared/) on sys.path.
        for folder in (self.repo_root / "shared", code_dir):
            if folder.is_dir() and str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
