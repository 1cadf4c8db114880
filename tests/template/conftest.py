"""Fixtures for the template tests (helpers and parameter sets: tests/template/support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.template.support import REGION, SCENARIOS, TEMPLATE_PATH, Deployment

from cotwatch_local.cloudformation import load_template, translate


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="session")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    """The plain CloudFormation the SAM translator makes of template.yaml (code locations packaged)."""
    return translate(template, region=REGION)


@pytest.fixture(scope="session")
def deploy(translated: dict[str, Any], moto_endpoint: str) -> Callable[..., Deployment]:
    """``deploy(**parameters)``: the stack moto creates for these parameter values (others: defaults).
    One stack per distinct set of values, shared by the tests that ask for it."""
    created: dict[frozenset[tuple[str, str]], Deployment] = {}

    def for_parameters(**parameters: str) -> Deployment:
        key = frozenset(parameters.items())
        if key not in created:
            created[key] = Deployment(moto_endpoint, translated, parameters)
        return created[key]

    return for_parameters


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, deploy: Callable[..., Deployment]) -> Iterator[Deployment]:
    """Each deployment in SCENARIOS in turn."""
    yield deploy(**SCENARIOS[request.param])
