"""Shared fixtures for integration and e2e tests: real services, started once per session.

- ``moto_endpoint`` (str): a moto server's URL. ``AWS_ENDPOINT_URL`` when set, else a ``moto_server`` this
  session starts (any free port) and stops.
- ``kafka_bootstrap`` (str): a Kafka broker's bootstrap servers. ``KAFKA_BOOTSTRAP_SERVERS`` when set, else
  a real KRaft broker this session starts (any free port, its own state dir) and stops.
- ``local_aws_names`` (LocalNames): the template's stack created by moto's CloudFormation under a name
  unique to this session (so reruns against a long-lived server never collide). No Kafka.
- ``local_names`` (LocalNames): the same, plus the traces topic (also unique per session) on the broker.
- ``local_aws_env`` (dict): sets and returns dummy AWS credentials/region/endpoint for the test.
- ``local_function_env`` (callable): ``local_function_env("ScoreTracesFunction")`` is the environment a
  function gets locally (its environment as moto created it, plus AWS and Kafka settings).

Unit tests need none of these; the modules are imported lazily so the unit suite runs without the
``local`` extras.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cotwatch_local.cloudformation import LocalNames


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0.12 loads its protocol schemas through importlib.resources' legacy API: a hundred
    # warnings per client that are not ours and would bury real ones.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("AWS_ENDPOINT_URL", "").strip()
    if external:
        yield external.rstrip("/")
        return
    from cotwatch_local.moto_server import MotoServer

    server = MotoServer(state_dir=tmp_path_factory.mktemp("moto"), port=0)
    server.start(timeout=60)
    # Belt and braces: the server runs in its own session, so make sure even an aborted run stops it.
    atexit.register(server.stop)
    try:
        yield server.endpoint_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    from cotwatch_local.kafka_broker import KafkaBroker

    # port=0: never collide with (or reuse) a developer's `cotwatch local up` broker on 19092.
    broker = KafkaBroker(state_dir=tmp_path_factory.mktemp("kafka"), port=0)
    broker.start(timeout=180)
    atexit.register(broker.stop)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def cotwatch_template() -> dict[str, Any]:
    from cotwatch_local.cloudformation import load_template

    return load_template()


@pytest.fixture(scope="session")
def session_suffix() -> str:
    """Unique per test session; lowercase hex, so it is valid in bucket and topic names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def local_aws_names(cotwatch_template: dict[str, Any], moto_endpoint: str, session_suffix: str) -> LocalNames:
    from cotwatch_local.cloudformation import TRACES_TOPIC_PARAMETER, deploy_stack

    default_topic = cotwatch_template["Parameters"][TRACES_TOPIC_PARAMETER]["Default"]
    return deploy_stack(
        cotwatch_template,
        endpoint_url=moto_endpoint,
        stack_name=f"cwt-{session_suffix}",
        parameter_overrides={TRACES_TOPIC_PARAMETER: f"{default_topic}-{session_suffix}"},
    )


@pytest.fixture(scope="session")
def local_names(local_aws_names: LocalNames, kafka_bootstrap: str) -> LocalNames:
    from cotwatch_local.cloudformation import create_kafka_topic

    create_kafka_topic(kafka_bootstrap, local_aws_names.kafka_topic, local_aws_names.kafka_partitions)
    return local_aws_names


@pytest.fixture
def local_aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from cotwatch_local import LOCAL_REGION
    from cotwatch_local.stack import aws_env

    env = aws_env(moto_endpoint, LOCAL_REGION)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # A developer's profile or session token must not leak into requests signed with dummy keys.
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return env


@pytest.fixture
def local_function_env(
    local_names: LocalNames, kafka_bootstrap: str, moto_endpoint: str
) -> Callable[[str], dict[str, str]]:
    from cotwatch_local.cloudformation import function_environment
    from cotwatch_local.stack import aws_env

    def env_for(function_logical_id: str) -> dict[str, str]:
        return {
            **aws_env(moto_endpoint, local_names.region),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            **function_environment(local_names, function_logical_id, moto_endpoint),
        }

    return env_for
