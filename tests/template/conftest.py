"""Fixtures for the offline template tests (helpers and parameter sets: tests/template/support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.template.support import ACCOUNT, REGION, SCENARIOS, STACK, TEMPLATE_PATH, Deployment, translate

from cotwatch_local.resources import context_for, load_template, resolve_names


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="session")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    return translate(template)


@pytest.fixture(scope="session")
def deploy(translated: dict[str, Any]) -> Callable[..., Deployment]:
    """``deploy(**parameters)``: the translated template for these parameter values (others: defaults)."""

    def for_parameters(**parameters: str) -> Deployment:
        names = resolve_names(
            translated, stack_name=STACK, account_id=ACCOUNT, region=REGION, parameter_overrides=parameters
        )
        return Deployment(template=translated, context=context_for(translated, names))

    return for_parameters


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, deploy: Callable[..., Deployment]) -> Iterator[Deployment]:
    """Each deployment in SCENARIOS in turn."""
    yield deploy(**SCENARIOS[request.param])
