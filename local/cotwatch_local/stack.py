"""The whole local stack: Kafka broker + moto server + the template's resources.

``cotwatch local up|down|status`` calls :func:`local_up`, :func:`local_down` and :func:`local_status`.

Environment honoured:

- ``KAFKA_BOOTSTRAP_SERVERS``: use that broker, start none (and never stop it).
- ``AWS_ENDPOINT_URL``: use that endpoint (moto, LocalStack, ...), start no moto server (and never stop it).

When these variables point at the services a previous ``up`` started (for instance after
``eval "$(cotwatch local up --exports)"``), they are still recognised as ours, so ``down`` stops them.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cotwatch_local import (
    LOCAL_REGION,
    LOCAL_STACK_NAME,
    LocalStackError,
    default_state_root,
    read_json,
    write_json,
)
from cotwatch_local.cloudformation import (
    DUMMY_ACCESS_KEY,
    DUMMY_SECRET_KEY,
    LocalNames,
    create_kafka_topic,
    deploy_stack,
    function_environment,
    load_template,
)
from cotwatch_local.kafka_broker import DEFAULT_PORT as DEFAULT_KAFKA_PORT
from cotwatch_local.kafka_broker import BrokerStatus, KafkaBroker, wait_for_kafka
from cotwatch_local.moto_server import DEFAULT_PORT as DEFAULT_MOTO_PORT
from cotwatch_local.moto_server import MotoServer, MotoStatus, moto_answers


class ServiceStatus(BaseModel):
    """One service of the stack. ``managed`` is False for a service given through the environment."""

    name: str
    managed: bool
    running: bool
    address: str | None = None
    pid: int | None = None
    log_file: str | None = None
    start_seconds: float | None = None


class LocalStackStatus(BaseModel):
    kafka: ServiceStatus
    moto: ServiceStatus
    names: LocalNames | None = None  # from the last `up`, while both services still run

    @property
    def up(self) -> bool:
        return self.kafka.running and self.moto.running


class LocalStackInfo(BaseModel):
    """What ``up`` returns: where the services are, the resource names, and each function's environment."""

    kafka_bootstrap_servers: str
    aws_endpoint_url: str
    names: LocalNames
    aws_env: dict[str, str]
    function_env: dict[str, dict[str, str]] = Field(default_factory=dict)
    status: LocalStackStatus
    up_seconds: float | None = None

    def env_for(self, function_logical_id: str) -> dict[str, str]:
        try:
            return self.function_env[function_logical_id]
        except KeyError:
            raise KeyError(f"no function {function_logical_id}; known: {sorted(self.function_env)}") from None


def aws_env(endpoint_url: str, region: str = LOCAL_REGION) -> dict[str, str]:
    """Environment variables that point any AWS SDK at a local endpoint with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # Current botocore may route DynamoDB to an account-id endpoint that moto does not serve.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }


def export_lines(env: Mapping[str, str]) -> str:
    """``export K=V`` lines, shell-quoted, for ``eval "$(...)"``."""
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items()))


class LocalStack:
    """Bring the local stack up and down. State lives under ``state_root`` (default ``<repo>/.cotwatch``)."""

    def __init__(
        self,
        *,
        state_root: Path | None = None,
        template_path: Path | None = None,
        stack_name: str = LOCAL_STACK_NAME,
        region: str = LOCAL_REGION,
        partitions: int = 3,
        parameter_overrides: Mapping[str, str] | None = None,
        kafka_port: int = DEFAULT_KAFKA_PORT,
        moto_port: int = DEFAULT_MOTO_PORT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.state_root = (state_root or default_state_root()).resolve()
        self.template_path = template_path
        self.stack_name = stack_name
        self.region = region
        self.partitions = partitions
        self.parameter_overrides = dict(parameter_overrides or {})
        self.environ = environ if environ is not None else os.environ
        self.broker = KafkaBroker(state_dir=self.state_root / "kafka", port=kafka_port)
        self.moto = MotoServer(state_dir=self.state_root / "moto", port=moto_port)

    @property
    def state_file(self) -> Path:
        return self.state_root / "stack.json"

    # -- which services are ours --

    def _external_kafka(self) -> str | None:
        value = self.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not value:
            return None
        ours = self.broker.status()
        return None if ours.running and ours.bootstrap_servers == value else value

    def _external_moto(self) -> str | None:
        value = self.environ.get("AWS_ENDPOINT_URL", "").strip().rstrip("/")
        if not value:
            return None
        ours = self.moto.status()
        return None if ours.running and ours.endpoint_url == value else value

    # -- lifecycle --

    def up(self, timeout: float = 120.0) -> LocalStackInfo:
        """Start what is needed, wait until it answers, create the template's resources (idempotently) and
        return names and environments. Services this call started are stopped again if it fails."""
        began = time.monotonic()
        ext_kafka, ext_moto = self._external_kafka(), self._external_moto()
        started: list[KafkaBroker | MotoServer] = []
        try:
            if ext_moto is None and not self.moto.is_running():
                # Launch moto first without waiting: it boots while the JVM does.
                self.moto.start(wait=False)
                started.append(self.moto)
            if ext_kafka is None:
                if not self.broker.is_running():
                    started.append(self.broker)
                self.broker.start(timeout=timeout)
                bootstrap = self.broker.bootstrap_servers
            else:
                wait_for_kafka(ext_kafka, timeout, hint="(from KAFKA_BOOTSTRAP_SERVERS)")
                bootstrap = ext_kafka
            if ext_moto is None:
                self.moto.wait_ready(timeout)
                endpoint = self.moto.endpoint_url
            else:
                _wait_for_endpoint(ext_moto, timeout)
                endpoint = ext_moto

            # The stack comes from the template through the SAM translator and moto's CloudFormation; only the
            # Kafka topic, which no CloudFormation resource describes, is created apart.
            names = deploy_stack(
                load_template(self.template_path),
                endpoint_url=endpoint,
                stack_name=self.stack_name,
                region=self.region,
                parameter_overrides=self.parameter_overrides,
                partitions=self.partitions,
            )
            create_kafka_topic(bootstrap, names.kafka_topic, names.kafka_partitions)
        except BaseException:
            for service in reversed(started):
                service.stop()
            raise

        base_env = aws_env(endpoint, self.region)
        function_env = {
            fid: {**base_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **function_environment(names, fid, endpoint)}
            for fid in names.functions
        }
        info = LocalStackInfo(
            kafka_bootstrap_servers=bootstrap,
            aws_endpoint_url=endpoint,
            names=names,
            aws_env=base_env,
            function_env=function_env,
            status=self._status(names),
            up_seconds=round(time.monotonic() - began, 3),
        )
        write_json(self.state_file, info.model_dump(mode="json"))
        return info

    def down(self) -> LocalStackStatus:
        """Stop the broker and moto server this stack started; services from the environment stay up."""
        if self._external_kafka() is None:
            self.broker.stop()
        if self._external_moto() is None:
            self.moto.stop()
        self.state_file.unlink(missing_ok=True)
        return self.status()

    def status(self) -> LocalStackStatus:
        saved = read_json(self.state_file)
        names: LocalNames | None = None
        if saved and isinstance(saved.get("names"), dict):
            names = LocalNames.model_validate(saved["names"])
        return self._status(names)

    def info(self) -> LocalStackInfo | None:
        """What the last ``up`` returned, if the stack is still up."""
        saved = read_json(self.state_file)
        if not saved:
            return None
        info = LocalStackInfo.model_validate(saved)
        status = self._status(info.names)
        return info.model_copy(update={"status": status}) if status.up else None

    def _status(self, names: LocalNames | None) -> LocalStackStatus:
        ext_kafka, ext_moto = self._external_kafka(), self._external_moto()
        if ext_kafka is None:
            broker = self.broker.status()
            kafka = _managed("kafka", broker, broker.bootstrap_servers)
        else:
            kafka = ServiceStatus(name="kafka", managed=False, running=_kafka_answers(ext_kafka), address=ext_kafka)
        if ext_moto is None:
            server = self.moto.status()
            moto = _managed("moto", server, server.endpoint_url)
        else:
            moto = ServiceStatus(name="moto", managed=False, running=moto_answers(ext_moto), address=ext_moto)
        up = kafka.running and moto.running
        return LocalStackStatus(kafka=kafka, moto=moto, names=names if up else None)


def _managed(name: str, status: BrokerStatus | MotoStatus, address: str | None) -> ServiceStatus:
    """A service this stack started: its process facts, whatever the service."""
    return ServiceStatus(
        name=name,
        managed=True,
        running=status.running,
        address=address,
        pid=status.pid,
        log_file=status.log_file,
        start_seconds=status.start_seconds,
    )


def _kafka_answers(bootstrap_servers: str) -> bool:
    from cotwatch_local.kafka_broker import probe_kafka

    try:
        probe_kafka(bootstrap_servers, timeout=2.0)
    except Exception:  # any failure to answer means "not running" for a status line
        return False
    return True


def _wait_for_endpoint(endpoint_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if moto_answers(endpoint_url) or _answers_http(endpoint_url):
            return
        time.sleep(0.2)
    raise LocalStackError(f"AWS_ENDPOINT_URL {endpoint_url} does not answer after {timeout:.0f}s")


def _answers_http(endpoint_url: str) -> bool:
    """Any HTTP answer at all: the endpoint may be something other than moto (LocalStack, a proxy)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(endpoint_url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


# -- the functions the CLI calls ---------------------------------------------------------------------


def local_up(**options: Any) -> LocalStackInfo:
    """``cotwatch local up``: options are :class:`LocalStack`'s keyword arguments plus ``timeout``."""
    timeout = float(options.pop("timeout", 120.0))
    return LocalStack(**options).up(timeout=timeout)


def local_down(**options: Any) -> LocalStackStatus:
    """``cotwatch local down``."""
    return LocalStack(**options).down()


def local_status(**options: Any) -> LocalStackStatus:
    """``cotwatch local status``."""
    return LocalStack(**options).status()
