"""A fresh deploy scores: with TenantBindings left empty the scorer's TENANT_BINDINGS binds the traces topic to
any valid tenant (``<TracesTopicName>=*``, docs/deploy.md), in the form the settings parser accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.template.support import MSK_IAM, Deployment

from cotwatch.tenancy import ANY_TENANT, TenantBinding, parse_tenant_bindings


def _bindings(stack: Deployment) -> str:
    config = stack.client("lambda").get_function_configuration(FunctionName=stack.physical("ScoreTracesFunction"))
    return str(config["Environment"]["Variables"]["TENANT_BINDINGS"])


def test_the_default_binds_the_traces_topic_to_any_tenant(
    template: dict[str, Any], deploy: Callable[..., Deployment]
) -> None:
    # Given the template deployed with its defaults
    topic = template["Parameters"]["TracesTopicName"]["Default"]
    bindings = parse_tenant_bindings(_bindings(deploy(**MSK_IAM)))
    # Then the traces topic is bound to '*' and nothing else is bound
    assert bindings == {topic: frozenset({ANY_TENANT})}
    # And a record on it naming a tenant is admitted for that tenant
    assert TenantBinding(bindings).resolve(topic, "acme") == ("acme", "", "")


def test_given_bindings_replace_the_default(deploy: Callable[..., Deployment]) -> None:
    # Given per-tenant topics set at deploy time
    stack = deploy(**MSK_IAM, TenantBindings="traces-acme=acme,traces-nw=nw")
    # Then they are the scorer's bindings exactly
    assert parse_tenant_bindings(_bindings(stack)) == {
        "traces-acme": frozenset({"acme"}),
        "traces-nw": frozenset({"nw"}),
    }
