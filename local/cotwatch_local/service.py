"""The lifecycle both local services share: a detached process with a pidfile and a JSON state file.

:class:`~cotwatch_local.kafka_broker.KafkaBroker` and :class:`~cotwatch_local.moto_server.MotoServer`
supply the command line, the readiness probe and their own status fields.
"""

from __future__ import annotations

import abc
import argparse
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel

from cotwatch_local import LocalStackError, file_lock, pid_alive, read_json, terminate_pid, write_json

StatusT = TypeVar("StatusT", bound=BaseModel)


class DetachedService(abc.ABC, Generic[StatusT]):
    """Start (under a file lock), probe and stop one detached process whose state lives in ``state_dir``."""

    name: ClassVar[str]  # for messages: "kafka broker"
    file_stem: ClassVar[str]  # <state_dir>/<stem>.pid and <stem>.json
    address_field: ClassVar[str]  # the state key and status field holding the address clients use
    status_model: type[StatusT]

    def __init__(self, state_dir: Path, port: int) -> None:
        self.state_dir = state_dir.resolve()
        self._port_pref = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.file_stem}.pid"

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.file_stem}.json"

    @property
    @abc.abstractmethod
    def log_file(self) -> Path: ...

    @abc.abstractmethod
    def _pid_marker(self) -> str | None:
        """Text only our process's command line holds (None: cannot tell, so a pidfile alone is not trusted)."""

    def _status_fields(self, state: Mapping[str, Any], running: bool) -> dict[str, Any]:
        """Status fields beyond the common ones."""
        return {}

    @abc.abstractmethod
    def _start_locked(self, *, wait: bool, timeout: float) -> None:
        """Launch the process (and wait for it with ``wait``); called under the start lock when it is not running."""

    # Public entry points: subclasses keep their own defaults and docstrings and call _start/_stop.
    @abc.abstractmethod
    def start(self, *, wait: bool = ..., timeout: float = ...) -> StatusT: ...

    @abc.abstractmethod
    def stop(self, timeout: float = ...) -> bool: ...

    @abc.abstractmethod
    def wait_ready(self, timeout: float = ...) -> None: ...

    @property
    def _log(self) -> logging.Logger:
        # Log under the subclass's module, as before the base class existed.
        return logging.getLogger(type(self).__module__)

    def _state(self) -> dict[str, Any]:
        return read_json(self.state_file) or {}

    def _live_pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None and pid_alive(self._proc.pid):
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        # A pidfile can outlive its process and the pid be reused by another program.
        marker = self._pid_marker()
        return pid if marker is not None and pid_alive(pid, marker) else None

    def is_running(self) -> bool:
        return self._live_pid() is not None

    def _address(self) -> str:
        """The address of the running (or last started) service, from the state file."""
        address = self._state().get(self.address_field)
        if not address:
            raise LocalStackError(f"no {self.name} has been started from {self.state_dir}")
        return str(address)

    def status(self) -> StatusT:
        state = self._state()
        pid = self._live_pid()
        running = pid is not None
        return self.status_model(
            running=running,
            pid=pid,
            port=state.get("port") if running else None,
            **{self.address_field: state.get(self.address_field) if running else None},
            state_dir=str(self.state_dir),
            log_file=str(self.log_file),
            started_at=state.get("started_at"),
            start_seconds=state.get("start_seconds"),
            **self._status_fields(state, running),
        )

    def _start(self, *, wait: bool, timeout: float) -> StatusT:
        with file_lock(self.state_dir / "start.lock"):
            if self.is_running():
                self._log.info("%s already running from %s", self.name, self.state_dir)
                if wait:
                    self.wait_ready(timeout)
                return self.status()
            self._start_locked(wait=wait, timeout=timeout)
            return self.status()

    def _spawn(
        self, cmd: list[str], output: Path, *, append: bool, state: dict[str, Any], env: dict[str, str] | None = None
    ) -> int:
        """Launch ``cmd`` detached with stdout and stderr to ``output``; record its pidfile and state file."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with output.open("ab" if append else "wb") as out:
            # Own session: outlives the CLI that started it and ignores the terminal's Ctrl-C.
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
        write_json(self.state_file, {"pid": self._proc.pid, **state, "started_at": time.time(), "command": cmd})
        return self._proc.pid

    def _stop(self, timeout: float) -> bool:
        pid = self._live_pid()
        stopped = False
        if pid is not None:
            if not terminate_pid(pid, timeout=timeout):
                raise LocalStackError(f"{self.name} pid {pid} survived SIGKILL")
            stopped = True
            self._log.info("stopped %s pid %s", self.name, pid)
        if self._proc is not None:
            self._proc.wait(timeout=5)  # reap it; terminate_pid already saw it exit
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return stopped

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def cli(self, command: str, timeout: float, extra: Mapping[str, Callable[[], object]] | None = None) -> int:
        """Run a ``python -m`` command: ``start`` prints the address, ``status`` exits 3 when not running,
        ``extra`` commands print their result. Returns the exit code."""
        try:
            if extra and command in extra:
                print(extra[command]())
            elif command == "start":
                print(self.start(timeout=timeout).model_dump()[self.address_field])
            elif command == "stop":
                self.stop()
            else:
                status = self.status()
                print(status.model_dump_json(indent=2))
                return 0 if status.model_dump()["running"] else 3
        except LocalStackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0


def cli_args(
    argv: Sequence[str] | None,
    *,
    module: str,
    doc: str | None,
    state_name: str,
    port: int,
    timeout: float,
    commands: Sequence[str] = (),
) -> argparse.Namespace:
    """The arguments of a service module's ``main``; also sets up logging to stderr."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc)
    parser.add_argument("command", choices=["start", "stop", "status", *commands])
    parser.add_argument("--port", type=int, default=port, help="preferred port (0 = any free port)")
    parser.add_argument("--state-dir", type=Path, default=None, help=f"default: <repo>/.cotwatch/{state_name}")
    parser.add_argument("--timeout", type=float, default=timeout)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return args
