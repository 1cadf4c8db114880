"""Every setting a function reads is set by the template, and the local stack names what the template names.

The settings models fail a cold start on a missing variable; these tests fail first. The local stack
(``cotwatch_local.resources``) derives its resources and function environments from template.yaml, so the
same reader is checked here against the template's own naming.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from cotwatch import config
from cotwatch_local.resources import (
    BUCKET,
    CREATED_TYPES,
    TABLE,
    TOPIC,
    TemplateContext,
    function_environment,
    resolve_names,
)

# Which settings model each function builds at import time (functions/*/app.py).
SETTINGS_BY_FUNCTION: dict[str, type[BaseSettings]] = {
    "ScoreTracesFunction": config.ScorerSettings,
    "RollupFunction": config.RollupSettings,
}
NAME_PROPERTY = {TABLE: "TableName", BUCKET: "BucketName", TOPIC: "TopicName"}
STACK, ACCOUNT, REGION = "demo", "111122223333", "eu-west-1"


def variables_read_by(model: type[BaseSettings]) -> set[str]:
    """The environment variables a settings model reads (its fields' validation aliases)."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        else:
            names.add(field.alias or name.upper())
    return names


def declared_variables(template: dict[str, Any], function: str) -> set[str]:
    """Variables the template sets for a function: SAM's Globals plus its own."""
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return set(globals_) | set(own)


def test_every_settings_model_belongs_to_a_function() -> None:
    # Given the settings models in cotwatch.config
    models = {
        cls
        for _, cls in inspect.getmembers(config, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls.__module__ == config.__name__ and not cls.__name__.startswith("_")
    }
    # Then each is mapped to the function that reads it here (so a new one cannot go unchecked)
    assert models == set(SETTINGS_BY_FUNCTION.values())


@pytest.mark.parametrize("function", sorted(SETTINGS_BY_FUNCTION))
def test_the_template_sets_every_variable_the_function_reads(template: dict[str, Any], function: str) -> None:
    # Given the variables the function's settings model reads
    wanted = variables_read_by(SETTINGS_BY_FUNCTION[function])
    assert wanted
    # Then the template sets each of them for that function
    assert wanted - declared_variables(template, function) == set()


@pytest.mark.parametrize("function", sorted(SETTINGS_BY_FUNCTION))
def test_the_resolved_environment_validates(
    template: dict[str, Any], function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's environment with the template's defaults, resolved for a stack
    names = resolve_names(template, stack_name=STACK, account_id=ACCOUNT, region=REGION)
    env = function_environment(template, function, names)
    # Then every declared variable resolves (none is dropped as unresolvable)
    assert set(env) == declared_variables(template, function)
    # And the settings model accepts the values: the cold start would succeed
    for key in list(env) + sorted(variables_read_by(SETTINGS_BY_FUNCTION[function])):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS_BY_FUNCTION[function]()
    assert settings.data_bucket == names.name("DataBucket")  # type: ignore[attr-defined]
    assert settings.counters_table == names.name("CountersTable")  # type: ignore[attr-defined]


def expected_name(spec: Any) -> str:
    """A name written as ``!Sub`` over pseudo parameters, evaluated for the demo stack."""
    assert isinstance(spec, dict) and set(spec) == {"Fn::Sub"}, spec
    pseudo = {"AWS::StackName": STACK, "AWS::AccountId": ACCOUNT, "AWS::Region": REGION}
    return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo[m.group(1)], spec["Fn::Sub"])


def test_the_local_stack_creates_the_templates_resources_under_the_templates_names(
    template: dict[str, Any],
) -> None:
    # Given the local stack's names for the demo stack (default parameters)
    names = resolve_names(template, stack_name=STACK, account_id=ACCOUNT, region=REGION)
    # And the tables, buckets and topics the template creates with those parameters
    context = TemplateContext(template)
    declared = {
        lid: r
        for lid, r in template["Resources"].items()
        if r["Type"] in CREATED_TYPES and context.resource_condition_holds(r)
    }
    assert "AlarmTopic" in declared  # conditional: created when no AlarmTopicArn is given
    # Then the local stack creates exactly those
    assert set(names.resources) == set(declared)
    # And names each one as the template does: ${AWS::StackName}-...
    for lid, resource in declared.items():
        name = expected_name(resource["Properties"][NAME_PROPERTY[resource["Type"]]])
        assert names.name(lid) == name
        assert name.startswith(f"{STACK}-")
    # And the ids other code resolves are among them
    assert {"AlertsTable", "CountersTable", "TraceStateTable", "DataBucket", "AlertsTopic"} <= set(names.resources)
    # And the Kafka topic is the template's TracesTopicName
    assert names.kafka_topic == template["Parameters"]["TracesTopicName"]["Default"]
