"""moto's server (DynamoDB, S3, SNS, SQS, ... over real HTTP) as a detached local process.

State (pidfile, port, log) lives under ``<repo>/.cotwatch/moto/`` so ``cotwatch local status|down`` from
another process finds it. moto keeps everything in memory: a restarted server is an empty account, which
is why :class:`cotwatch.local.stack.LocalStack` recreates the template's resources on every ``up``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from cotwatch.local import (
    LocalStackError,
    default_state_root,
    file_lock,
    find_free_port,
    pid_alive,
    read_json,
    tail,
    terminate_pid,
    write_json,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 15000


class MotoStatus(BaseModel):
    running: bool
    pid: int | None = None
    endpoint_url: str | None = None
    port: int | None = None
    state_dir: str
    log_file: str
    started_at: float | None = None
    start_seconds: float | None = None


def moto_answers(endpoint_url: str, timeout: float = 1.0) -> bool:
    """Whether a moto server answers at ``endpoint_url`` (its management API, which every version has)."""
    try:
        with urllib.request.urlopen(f"{endpoint_url.rstrip('/')}/moto-api/config", timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _moto_command() -> list[str]:
    # Prefer the console script next to this interpreter (the venv's), not whichever one PATH finds first.
    beside = Path(sys.executable).with_name("moto_server")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


class MotoServer:
    """Start, probe and stop ``moto_server`` on loopback.

    ``port`` is preferred (``0`` = any free port); when taken, a free one is used and recorded, so read
    :attr:`endpoint_url` rather than assuming the default.
    """

    def __init__(self, *, state_dir: Path | None = None, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        self.state_dir = (state_dir or default_state_root() / "moto").resolve()
        self.host = host
        self._port_pref = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "moto.pid"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "moto.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "moto.log"

    def _state(self) -> dict[str, Any]:
        return read_json(self.state_file) or {}

    def _live_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        port = self._state().get("port")
        # Our command line carries "-p <port>": that tells our server from a reused pid.
        return pid if port and pid_alive(pid, f"-p {port}") else None

    def is_running(self) -> bool:
        return self._live_pid() is not None

    @property
    def endpoint_url(self) -> str:
        url = self._state().get("endpoint_url")
        if not url:
            raise LocalStackError(f"no moto server has been started from {self.state_dir}")
        return str(url)

    def status(self) -> MotoStatus:
        state = self._state()
        pid = self._live_pid()
        running = pid is not None
        return MotoStatus(
            running=running,
            pid=pid,
            endpoint_url=state.get("endpoint_url") if running else None,
            port=state.get("port") if running else None,
            state_dir=str(self.state_dir),
            log_file=str(self.log_file),
            started_at=state.get("started_at"),
            start_seconds=state.get("start_seconds"),
        )

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> MotoStatus:
        """Launch ``moto_server`` detached; a no-op when it already runs."""
        with file_lock(self.state_dir / "start.lock"):
            if self.is_running():
                if wait:
                    self.wait_ready(timeout)
                return self.status()
            started = time.monotonic()
            port = find_free_port(self._port_pref or None, self.host)
            cmd = [*_moto_command(), "-H", self.host, "-p", str(port)]
            self.state_dir.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            with self.log_file.open("wb") as out:
                # Own session: survives the CLI that started it and ignores the terminal's Ctrl-C.
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env=env,
                    cwd=self.state_dir,
                )
            self.pid_file.write_text(f"{self._proc.pid}\n")
            state: dict[str, Any] = {
                "pid": self._proc.pid,
                "port": port,
                "endpoint_url": f"http://{self.host}:{port}",
                "started_at": time.time(),
                "command": cmd,
            }
            write_json(self.state_file, state)
            if wait:
                try:
                    self.wait_ready(timeout)
                except LocalStackError:
                    self.stop()
                    raise
                log.info("moto server ready at %s in %.1fs", state["endpoint_url"], time.monotonic() - started)
            return self.status()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise LocalStackError(f"moto server exited during start-up:\n{tail(self.log_file)}")
            if moto_answers(self.endpoint_url):
                state = self._state()
                if "start_seconds" not in state and "started_at" in state:
                    # First readiness after a launch (possibly a detached one: start(wait=False)).
                    state["start_seconds"] = round(time.time() - float(state["started_at"]), 3)
                    write_json(self.state_file, state)
                return
            time.sleep(0.1)
        raise LocalStackError(f"moto server not answering after {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self._live_pid()
        stopped = False
        if pid is not None:
            if not terminate_pid(pid, timeout=timeout):
                raise LocalStackError(f"moto server pid {pid} survived SIGKILL")
            stopped = True
            log.info("stopped moto server pid %s", pid)
        if self._proc is not None:
            self._proc.wait(timeout=5)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return stopped

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def threaded_moto_server(port: int = 0, host: str = "127.0.0.1") -> Iterator[str]:
    """An in-process moto server on a background thread (no subprocess); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        bound_host, bound_port = server.get_host_and_port()
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.stop()


def endpoint_from_env() -> str | None:
    """``AWS_ENDPOINT_URL`` when set: an externally managed endpoint to use instead of our moto server."""
    value = os.environ.get("AWS_ENDPOINT_URL", "").strip()
    return value or None


def main(argv: list[str] | None = None) -> int:
    """``python -m cotwatch.local.moto_server start|stop|status`` (used by infra/scripts)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cotwatch.local.moto_server", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="preferred port (0 = any free port)")
    parser.add_argument("--state-dir", type=Path, default=None, help="default: <repo>/.cotwatch/moto")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    server = MotoServer(state_dir=args.state_dir, port=args.port)
    try:
        if args.command == "start":
            print(server.start(timeout=args.timeout).endpoint_url)
        elif args.command == "stop":
            server.stop()
        else:
            status = server.status()
            print(status.model_dump_json(indent=2))
            return 0 if status.running else 3
    except LocalStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
