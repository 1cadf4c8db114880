"""A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM) on loopback.

The jars come from Maven Central through ``infra/kafka/pom.xml``; the broker runs detached with its
pidfile, config, data and logs under ``<repo>/.cotwatch/kafka/`` so that another process (``cotwatch local
status|down``) can find and stop it. Each start formats fresh storage with a new cluster id: this is a
scratch broker, and stale metadata from an older run is a classic source of "works on my machine".
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import string
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cotwatch_local import (
    LocalStackError,
    default_state_root,
    file_lock,
    find_free_port,
    repo_root,
    tail,
    write_json,
)
from cotwatch_local.service import DetachedService, cli_args

log = logging.getLogger(__name__)

DEFAULT_PORT = 19092
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
_BIND_FAILURE = re.compile(r"Address already in use|BindException")


class BrokerStatus(BaseModel):
    """What ``status()`` reports; ``running`` is checked against the live process, not just the pidfile."""

    running: bool
    pid: int | None = None
    bootstrap_servers: str | None = None
    port: int | None = None
    controller_port: int | None = None
    cluster_id: str | None = None
    kafka_version: str | None = None
    state_dir: str
    log_file: str
    started_at: float | None = None
    start_seconds: float | None = None


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what ``random-uuid`` prints).

    Like Kafka's own ``Uuid.randomUuid`` it never starts with '-', which a command line reads as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def pinned_kafka_version(pom: Path) -> str:
    """The ``kafka.version`` property of ``infra/kafka/pom.xml``: the single place the version is pinned."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if not match:
        raise LocalStackError(f"{pom} has no <kafka.version> property")
    return match.group(1)


class KafkaBroker(DetachedService[BrokerStatus]):
    """Start, probe and stop the local broker.

    ``port`` is the preferred client port (``0`` = any free port); when it is taken another free port is
    used and recorded in the state dir, so read :attr:`bootstrap_servers` rather than assuming 19092.
    """

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        kafka_home: Path | None = None,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        heap: str = "512m",
        java: str = "java",
        mvn: str = "mvn",
        extra_jvm_opts: Sequence[str] = (),
    ) -> None:
        self.kafka_home = kafka_home or repo_root() / "infra" / "kafka"
        super().__init__(state_dir or default_state_root() / "kafka", port)
        self._controller_port_pref = controller_port if controller_port is not None else (port + 1 if port else 0)
        self.heap = heap
        self.java = java
        self.mvn = mvn
        self.extra_jvm_opts = tuple(extra_jvm_opts)

    # -- paths ---------------------------------------------------------------------------------------

    @property
    def pom(self) -> Path:
        return self.kafka_home / "pom.xml"

    @property
    def lib_dir(self) -> Path:
        return self.kafka_home / "lib"

    @property
    def kafka_version(self) -> str:
        return pinned_kafka_version(self.pom)

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def console_file(self) -> Path:
        """JVM stdout/stderr: normally empty; holds JVM-level failures that happen before log4j starts."""
        return self.logs_dir / "console.out"

    # -- jars ----------------------------------------------------------------------------------------

    def ensure_jars(self) -> Path:
        """Copy the pinned broker jars into ``infra/kafka/lib`` with Maven, unless they are already there."""
        version = self.kafka_version
        # Written only after Maven succeeded, so an interrupted copy is completed on the next call.
        marker = self.lib_dir / f".complete-{version}"
        if marker.is_file():
            return self.lib_dir
        # The lock lives in target/ (git-ignored) so that lib/ can be emptied while it is held.
        with file_lock(self.kafka_home / "target" / "fetch.lock"):
            if marker.is_file():
                return self.lib_dir
            kafka_jar = self.lib_dir / f"kafka_2.13-{version}.jar"
            if self.lib_dir.is_dir() and any(p != kafka_jar for p in self.lib_dir.glob("kafka_2.13-*.jar")):
                # Another version's jars: mixing two on one classpath breaks in odd ways.
                log.info("kafka version changed to %s: clearing %s", version, self.lib_dir)
                for stale in self.lib_dir.iterdir():
                    stale.unlink()
            mvn = shutil.which(self.mvn)
            if mvn is None:
                raise LocalStackError(f"'{self.mvn}' not found on PATH: Maven is needed once to fetch Kafka jars")
            base = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(self.pom), "dependency:copy-dependencies"]
            started = time.monotonic()
            # Offline first: after one successful fetch everything is in ~/.m2 and no network is needed.
            result = subprocess.run(
                [*base, "-o"], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False
            )
            if result.returncode != 0 or not kafka_jar.is_file():
                result = subprocess.run(
                    base, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL, check=False
                )
            if result.returncode != 0 or not kafka_jar.is_file():
                raise LocalStackError(
                    f"maven could not fetch kafka {version} (exit {result.returncode}):\n"
                    f"{(result.stdout + result.stderr)[-4000:]}"
                )
            marker.write_text(f"{version}\n")
            log.info("fetched kafka %s jars in %.1fs", version, time.monotonic() - started)
        return self.lib_dir

    # -- lifecycle -----------------------------------------------------------------------------------

    name = "kafka broker"
    file_stem = "broker"
    address_field = "bootstrap_servers"
    status_model = BrokerStatus

    def _pid_marker(self) -> str:
        # The generated properties path is unique to this state dir: it tells our broker from any other.
        return str(self.properties_file)

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>`` of the running (or last started) broker."""
        return self._address()

    def _status_fields(self, state: Mapping[str, Any], running: bool) -> dict[str, Any]:
        return {
            "controller_port": state.get("controller_port") if running else None,
            "cluster_id": state.get("cluster_id"),
            "kafka_version": state.get("kafka_version"),
        }

    def start(self, *, wait: bool = True, timeout: float = 90.0) -> BrokerStatus:
        """Format fresh storage and launch the broker detached; a no-op when it already runs.

        With ``wait`` (the default) return only once :meth:`wait_ready` succeeds; a lost race for the
        chosen port is retried on another port.
        """
        return self._start(wait=wait, timeout=timeout)

    def _start_locked(self, *, wait: bool, timeout: float) -> None:
        self.ensure_jars()
        attempts = 3 if wait else 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            self._launch()
            if not wait:
                return
            try:
                self.wait_ready(timeout)
            except LocalStackError:
                if attempt < attempts and _BIND_FAILURE.search(tail(self.log_file, 80)):
                    log.warning("kafka port was taken between choosing and binding it; retrying")
                    self.stop()
                    continue
                self.stop()
                raise
            state = self._state()
            state["start_seconds"] = round(time.monotonic() - started, 3)
            write_json(self.state_file, state)
            log.info("kafka broker ready at %s in %.1fs", self.bootstrap_servers, state["start_seconds"])
            return

    def _launch(self) -> None:
        java = shutil.which(self.java)
        if java is None:
            raise LocalStackError(f"'{self.java}' not found on PATH: the Kafka broker needs Java 17+")
        port = find_free_port(self._port_pref or None)
        controller_port = find_free_port(self._controller_port_pref or None, avoid={port})
        # Fresh storage every start (see the module docstring); keep the logs of earlier runs for debugging.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        template = string.Template((self.kafka_home / "server.properties.template").read_text())
        self.properties_file.write_text(
            template.substitute(port=port, controller_port=controller_port, data_dir=str(self.data_dir))
        )
        cluster_id = new_cluster_id()
        classpath = str(self.lib_dir / "*")  # java expands the wildcard itself
        logging_opts = [
            f"-Dlog4j2.configurationFile={self.kafka_home / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
        ]
        fmt = subprocess.run(
            [
                java,
                "-Xmx256m",
                "-XX:TieredStopAtLevel=1",
                *logging_opts,
                "-cp",
                classpath,
                STORAGE_TOOL_CLASS,
                "format",
                "--config",
                str(self.properties_file),
                f"--cluster-id={cluster_id}",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if fmt.returncode != 0:
            raise LocalStackError(f"kafka storage format failed (exit {fmt.returncode}):\n{fmt.stdout}{fmt.stderr}")
        cmd = [
            java,
            "-Xms64m",
            f"-Xmx{self.heap}",
            # Serial GC and C1 only: about a second faster to ready on two cores than G1 + C2, and a local
            # broker's throughput is bounded by the Python clients anyway. extra_jvm_opts can override.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            # Kafka stops itself on SIGTERM; log4j's own hook would race it and print a warning.
            "-Dlog4j2.shutdownHookEnabled=false",
            *self.extra_jvm_opts,
            *logging_opts,
            "-cp",
            classpath,
            MAIN_CLASS,
            str(self.properties_file),
        ]
        state = {
            "port": port,
            "controller_port": controller_port,
            "bootstrap_servers": f"127.0.0.1:{port}",
            "cluster_id": cluster_id,
            "kafka_version": self.kafka_version,
        }
        pid = self._spawn(cmd, self.console_file, append=True, state=state)
        log.info("launched kafka broker pid %s on 127.0.0.1:%s", pid, port)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until a Kafka admin client can list topics; fail early if the JVM dies."""

        def check_alive() -> None:
            if not self.is_running():
                raise LocalStackError(
                    f"kafka broker exited during start-up; see {self.log_file}\n"
                    f"{tail(self.log_file)}\n{tail(self.console_file, 10)}"
                )

        wait_for_kafka(self.bootstrap_servers, timeout, check_alive=check_alive, hint=f"see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (Kafka shuts down cleanly), SIGKILL after ``timeout``. True when a broker was stopped."""
        return self._stop(timeout)


def probe_kafka(bootstrap_servers: str, timeout: float = 5.0) -> None:
    """One readiness probe: an admin client lists topics (so the broker serves metadata, not just TCP).
    Raises kafka-python's errors or OSError when the broker is not there (yet)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="cotwatch-local-probe",
        request_timeout_ms=int(timeout * 1000),
        bootstrap_timeout_ms=int(min(timeout, 3.0) * 1000),
        reconnect_backoff_max_ms=500,
    )
    try:
        admin.list_topics()
    finally:
        admin.close()


def wait_for_kafka(
    bootstrap_servers: str,
    timeout: float = 90.0,
    *,
    check_alive: Callable[[], None] | None = None,
    hint: str = "",
) -> None:
    """Poll :func:`probe_kafka` until it succeeds; ``check_alive`` may raise to stop waiting early."""
    from kafka.errors import KafkaConfigurationError, KafkaError

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if check_alive is not None:
            check_alive()
        try:
            probe_kafka(bootstrap_servers, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            return
        except KafkaConfigurationError:
            raise  # our bug, not a broker still starting
        except (KafkaError, OSError, ValueError) as exc:
            last_error = exc
        time.sleep(0.25)
    raise LocalStackError(
        f"kafka at {bootstrap_servers} not ready after {timeout:.0f}s ({last_error!r}) {hint}".rstrip()
    )


def broker_from_env() -> str | None:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set: an externally managed broker to use instead of ours."""
    value = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    return value or None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cotwatch_local.kafka_broker start|stop|status|fetch-jars`` (used by infra/scripts)."""
    args = cli_args(
        argv,
        module="cotwatch_local.kafka_broker",
        doc=__doc__,
        state_name="kafka",
        port=DEFAULT_PORT,
        timeout=120.0,
        commands=["fetch-jars"],
    )
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # connection retries while the JVM boots
    broker = KafkaBroker(state_dir=args.state_dir, port=args.port)
    return broker.cli(args.command, args.timeout, extra={"fetch-jars": broker.ensure_jars})


if __name__ == "__main__":
    raise SystemExit(main())
