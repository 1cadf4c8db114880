"""The local stack: a real Kafka broker and a moto server, plus the resources of ``template.yaml``.

Modules:

- :mod:`cotwatch_local.kafka_broker` -- :class:`KafkaBroker`, a single-node KRaft broker from Maven jars.
- :mod:`cotwatch_local.moto_server` -- :class:`MotoServer`, ``moto_server`` as a detached process.
- :mod:`cotwatch_local.service` -- :class:`DetachedService`, the pidfile/state-file lifecycle those two share.
- :mod:`cotwatch_local.cloudformation` -- the template's stack through the SAM translator and moto's
  CloudFormation, names and function environments read back from it, and the Kafka topic.
- :mod:`cotwatch_local.stack` -- :class:`LocalStack` (``cotwatch local up|down|status``).

This module holds the small process and path helpers the others share (psutil for processes, filelock
for locks), never kafka-python or moto, so that importing :mod:`cotwatch_local.cloudformation` never needs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock
import psutil

__all__ = [
    "LOCAL_ACCOUNT_ID",
    "LOCAL_REGION",
    "LOCAL_STACK_NAME",
    "LocalStackError",
    "default_state_root",
    "file_lock",
    "find_free_port",
    "pid_alive",
    "port_is_free",
    "read_json",
    "repo_root",
    "tail",
    "terminate_pid",
    "write_json",
]

LOCAL_STACK_NAME = "cotwatch-local"
# moto's default account: ARNs we compute match the ones moto returns.
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"


class LocalStackError(RuntimeError):
    """A local service could not be set up, started or reached."""


def repo_root() -> Path:
    """The cotwatch checkout: ``$COTWATCH_REPO_ROOT``, else the folder above this package holding
    ``infra/kafka/pom.xml`` (editable install), else the nearest such folder above the working directory."""
    env = os.environ.get("COTWATCH_REPO_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "infra" / "kafka" / "pom.xml").is_file() and (candidate / "template.yaml").is_file():
                return candidate
    raise LocalStackError("cannot find the cotwatch repository; set COTWATCH_REPO_ROOT")


def default_state_root() -> Path:
    """Where pidfiles, logs and broker data live: ``<repo>/.cotwatch`` (git-ignored)."""
    return repo_root() / ".cotwatch"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # No SO_REUSEADDR: a port in TIME_WAIT from a broker we just stopped counts as taken, as the
        # JVM's own bind would see it.
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def find_free_port(preferred: int | None = None, host: str = "127.0.0.1", avoid: set[int] | None = None) -> int:
    """``preferred`` when it is free, otherwise one the kernel hands out."""
    avoid = avoid or set()
    if preferred and preferred not in avoid and port_is_free(preferred, host):
        return preferred
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise LocalStackError("no free TCP port on loopback")


def pid_alive(pid: int, cmdline_marker: str | None = None) -> bool:
    """Whether ``pid`` runs and is not a zombie; with ``cmdline_marker``, also that its command line
    contains it (a pidfile can outlive its process and the pid be reused by another program)."""
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return cmdline_marker is None or cmdline_marker in " ".join(process.cmdline())
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True  # another user's process: it exists, its command line is not ours to read


def terminate_pid(pid: int, *, timeout: float = 20.0, kill_timeout: float = 5.0) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. The process runs in its own session, so the whole
    process group is signalled. True when it is gone."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    for sig, limit in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
        if _exited(process, 0.0):
            return True
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):  # not a group leader: signal the process alone
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)
        if _exited(process, limit):
            return True
    return False


def _exited(process: psutil.Process, limit: float) -> bool:
    """Wait up to ``limit`` s for the process to end, reaping it when it is our child; a zombie that
    another parent must reap counts as ended."""
    deadline = time.monotonic() + limit
    while True:
        try:
            process.wait(timeout=0.1)
            return True
        except psutil.TimeoutExpired:
            if not pid_alive(process.pid):
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes do not start (or fetch jars for) the same service."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(path):
        yield


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a reader in another process never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
