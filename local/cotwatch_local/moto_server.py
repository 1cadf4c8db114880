"""moto's server (DynamoDB, S3, SNS, SQS, ... over real HTTP) as a detached local process.

State (pidfile, port, log) lives under ``<repo>/.cotwatch/moto/`` so ``cotwatch local status|down`` from
another process finds it. moto keeps everything in memory: a restarted server is an empty account, which
is why :class:`cotwatch_local.stack.LocalStack` recreates the template's resources on every ``up``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from cotwatch_local import (
    LocalStackError,
    default_state_root,
    find_free_port,
    tail,
    write_json,
)
from cotwatch_local.service import DetachedService, cli_args

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


class MotoServer(DetachedService[MotoStatus]):
    """Start, probe and stop ``moto_server`` on loopback.

    ``port`` is preferred (``0`` = any free port); when taken, a free one is used and recorded, so read
    :attr:`endpoint_url` rather than assuming the default.
    """

    name = "moto server"
    file_stem = "moto"
    address_field = "endpoint_url"
    status_model = MotoStatus

    def __init__(self, *, state_dir: Path | None = None, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        super().__init__(state_dir or default_state_root() / "moto", port)
        self.host = host

    @property
    def log_file(self) -> Path:
        return self.state_dir / "moto.log"

    def _pid_marker(self) -> str | None:
        port = self._state().get("port")
        # Our command line carries "-p <port>": that tells our server from a reused pid.
        return f"-p {port}" if port else None

    @property
    def endpoint_url(self) -> str:
        return self._address()

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> MotoStatus:
        """Launch ``moto_server`` detached; a no-op when it already runs."""
        return self._start(wait=wait, timeout=timeout)

    def _start_locked(self, *, wait: bool, timeout: float) -> None:
        started = time.monotonic()
        port = find_free_port(self._port_pref or None, self.host)
        endpoint_url = f"http://{self.host}:{port}"
        self._spawn(
            [*_moto_command(), "-H", self.host, "-p", str(port)],
            self.log_file,
            append=False,
            state={"port": port, "endpoint_url": endpoint_url},
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait:
            try:
                self.wait_ready(timeout)
            except LocalStackError:
                self.stop()
                raise
            log.info("moto server ready at %s in %.1fs", endpoint_url, time.monotonic() - started)

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
        return self._stop(timeout)


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
    """``python -m cotwatch_local.moto_server start|stop|status`` (used by infra/scripts)."""
    args = cli_args(
        argv, module="cotwatch_local.moto_server", doc=__doc__, state_name="moto", port=DEFAULT_PORT, timeout=60.0
    )
    return MotoServer(state_dir=args.state_dir, port=args.port).cli(args.command, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
