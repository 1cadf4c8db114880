"""Every setting a function reads is set by the template, and the local stack names what the template names.

The settings models fail a cold start on a missing variable; these tests fail first. The environments are
the ones moto's CloudFormation gave the functions; the local stack (``cotwatch_local.cloudformation``) reads
its names back from such a stack, so it is checked here against the template's own naming.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from tests.template.support import ACCOUNT, MSK_IAM, Deployment

from cotwatch import config
from cotwatch_local.cloudformation import BUCKET, TABLE, TOPIC, deploy_stack

# Which settings model each function builds at import time (functions/*/app.py).
SETTINGS_BY_FUNCTION: dict[str, type[BaseSettings]] = {
    "ScoreTracesFunction": config.ScorerSettings,
    "RollupFunction": config.RollupSettings,
    "AlertsApiFunction": config.AlertsApiSettings,
    "ChatNotifierFunction": config.ChatNotifierSettings,
    "DigestFlushFunction": config.DigestFlushSettings,
}
NAME_PROPERTY = {TABLE: "TableName", BUCKET: "BucketName", TOPIC: "TopicName"}


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
def test_the_created_environment_validates(
    template: dict[str, Any], deploy: Callable[..., Deployment], function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function as moto created it, with the template's defaults
    stack = deploy(**MSK_IAM)
    config_ = stack.client("lambda").get_function_configuration(FunctionName=stack.physical(function))
    env = {key: str(value) for key, value in config_["Environment"]["Variables"].items()}
    # Then every declared variable is set (none was dropped on the way)
    assert set(env) == declared_variables(template, function)
    # And the settings model accepts the values: the cold start would succeed
    for key in list(env) + sorted(variables_read_by(SETTINGS_BY_FUNCTION[function])):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS_BY_FUNCTION[function]()
    # And the resource names it reads are the stack's (each model reads its own subset)
    resources = {
        "data_bucket": "DataBucket",
        "counters_table": "CountersTable",
        "alerts_table": "AlertsTable",
        "chat_subscriptions_table": "ChatSubscriptionsTable",
    }
    read = {field: getattr(settings, field) for field in resources if field in type(settings).model_fields}
    assert read, f"{function} reads none of {sorted(resources)}"
    assert read == {field: stack.physical(resources[field]) for field in read}


def expected_name(spec: Any, stack: str, region: str) -> str:
    """A name written as ``!Sub`` over pseudo parameters, spelled out for one stack (the test's expectation)."""
    assert isinstance(spec, dict) and set(spec) == {"Fn::Sub"}, spec
    pseudo = {"AWS::StackName": stack, "AWS::AccountId": ACCOUNT, "AWS::Region": region}
    return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo[m.group(1)], spec["Fn::Sub"])


def test_the_local_stack_reads_back_the_templates_resources_under_the_templates_names(
    template: dict[str, Any], moto_endpoint: str
) -> None:
    # Given the local stack deployed with default parameters
    stack = f"demo-{uuid.uuid4().hex[:6]}"
    names = deploy_stack(template, endpoint_url=moto_endpoint, stack_name=stack)
    # And the tables, buckets and topics the template declares
    declared = {lid: r for lid, r in template["Resources"].items() if r["Type"] in NAME_PROPERTY}
    assert "AlarmTopic" in declared  # conditional: created when no AlarmTopicArn is given (the default)
    # Then the local stack has exactly those
    local = {lid for lid, r in names.resources.items() if r.type in NAME_PROPERTY}
    assert local == set(declared)
    # And names each one as the template does: ${AWS::StackName}-...
    for lid, resource in declared.items():
        name = expected_name(resource["Properties"][NAME_PROPERTY[resource["Type"]]], stack, names.region)
        assert names.name(lid) == name
        assert name.startswith(f"{stack}-")
    # And the Kafka topic is the template's TracesTopicName
    assert names.kafka_topic == template["Parameters"]["TracesTopicName"]["Default"]
