"""Alarms and the dashboard watch the metrics the code emits, under the names in cotwatch.observability.

moto has no alarm model: the alarms' properties are moto's evaluation of the translated ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from tests.template.support import ACCOUNT, MSK_IAM, REGION, Deployment

from cotwatch import observability as obs

CUSTOM_METRIC_ALARMS = {"DeadLettersAlarm": obs.RECORDS_DEAD_LETTERED, "AlertRateAlarm": obs.ALERTS_RAISED}


def alarms(stack: Deployment) -> dict[str, dict[str, Any]]:
    return {lid: stack.properties(lid) for lid in stack.resources("AWS::CloudWatch::Alarm")}


def test_the_functions_emit_under_the_shared_namespace_and_service(template: dict[str, Any]) -> None:
    # Given the variables every function gets
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    # Then powertools' defaults agree with cotwatch.observability
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == obs.NAMESPACE
    assert variables["POWERTOOLS_SERVICE_NAME"] == obs.SERVICE


@pytest.mark.parametrize(("alarm", "metric"), sorted(CUSTOM_METRIC_ALARMS.items()))
def test_custom_metric_alarms_use_the_shared_names(deploy: Callable[..., Deployment], alarm: str, metric: str) -> None:
    # Given the alarms on metrics the scorer emits (EMF)
    props = alarms(deploy(**MSK_IAM))[alarm]
    # Then they select exactly what powertools publishes: namespace, name, and the service dimension alone
    assert props["Namespace"] == obs.NAMESPACE
    assert props["MetricName"] == metric
    assert props["Dimensions"] == [{"Name": obs.SERVICE_DIMENSION, "Value": obs.SERVICE}]
    assert props["Statistic"] == "Sum"


def test_the_operational_alarms_exist(deploy: Callable[..., Deployment]) -> None:
    # Given the alarms
    stack = deploy(**MSK_IAM)
    function_ids = {stack.physical(lid): lid for lid in ("ScoreTracesFunction", "RollupFunction")}
    metrics = {
        (p["Namespace"], p["MetricName"], function_ids[p["Dimensions"][0]["Value"]])
        for p in [props for props in alarms(stack).values() if props.get("Namespace") == "AWS/Lambda"]
    }
    # Then function errors, throttles, Kafka consumer lag and lost failed batches are all watched
    assert metrics == {
        ("AWS/Lambda", "Errors", "ScoreTracesFunction"),
        ("AWS/Lambda", "Throttles", "ScoreTracesFunction"),
        ("AWS/Lambda", "OffsetLag", "ScoreTracesFunction"),
        ("AWS/Lambda", "DestinationDeliveryFailures", "ScoreTracesFunction"),
        ("AWS/Lambda", "Errors", "RollupFunction"),
    }


def test_thresholds_come_from_parameters(deploy: Callable[..., Deployment]) -> None:
    stack = deploy(**MSK_IAM, OffsetLagThreshold="5000", DeadLetterThreshold="3", AlertRateThreshold="40")
    assert stack.properties("OffsetLagAlarm")["Threshold"] == 5000
    assert stack.properties("OffsetLagAlarm")["Statistic"] == "Maximum"
    assert stack.properties("DeadLettersAlarm")["Threshold"] == 3
    assert stack.properties("AlertRateAlarm")["Threshold"] == 40


def test_alarms_notify_the_stacks_topic_or_the_one_given(deploy: Callable[..., Deployment]) -> None:
    # Given no alarm topic: the stack creates one and every alarm notifies it, on alarm and on recovery
    own = deploy(**MSK_IAM)
    assert own.has("AlarmTopic")
    for props in alarms(own).values():
        assert props["AlarmActions"] == props["OKActions"] == [own.physical("AlarmTopic")]
    # Given an existing topic: no topic is created and the alarms use the given one
    given = "arn:aws:sns:eu-west-1:111122223333:ops-pager"
    external = deploy(**MSK_IAM, AlarmTopicArn=given)
    assert not external.has("AlarmTopic")
    for lid in alarms(external):
        assert external.properties(lid)["AlarmActions"] == [given]


def test_an_alarm_email_is_subscribed_only_to_the_stacks_own_topic(deploy: Callable[..., Deployment]) -> None:
    assert not deploy(**MSK_IAM).has("AlarmEmailSubscription")
    stack = deploy(**MSK_IAM, AlarmEmail="oncall@example.com")
    assert stack.properties("AlarmEmailSubscription") == {
        "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{stack.name}-alarms",
        "Protocol": "email",
        "Endpoint": "oncall@example.com",
    }
    given = f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-pager"
    assert not deploy(**MSK_IAM, AlarmEmail="oncall@example.com", AlarmTopicArn=given).has("AlarmEmailSubscription")


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body, with ${...} substitutions replaced by their names."""
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    parsed: dict[str, Any] = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", body))
    return parsed


def test_the_dashboard_shows_every_custom_metric_and_every_alarm(template: dict[str, Any]) -> None:
    # Given the dashboard
    widgets = dashboard(template)["widgets"]
    metric_rows = [row for w in widgets if w["type"] == "metric" for row in w["properties"]["metrics"]]
    custom = {row[1] for row in metric_rows if row[0] == obs.NAMESPACE}
    # Then it plots each custom metric, under the shared name and the service dimension only
    assert custom == obs.METRICS
    for row in metric_rows:
        if row[0] == obs.NAMESPACE:
            assert row[2:4] == [obs.SERVICE_DIMENSION, obs.SERVICE]
    # And its alarm widget lists every alarm of the template
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    listed = {name.removesuffix(".Arn>").removeprefix("<") for name in alarm_widget["properties"]["alarms"]}
    assert listed == {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_the_dashboard_is_named_after_the_stack(deploy: Callable[..., Deployment]) -> None:
    stack = deploy(**MSK_IAM)
    assert stack.properties("Dashboard")["DashboardName"] == f"{stack.name}-cotwatch"


def test_a_stalled_scorer_alarms_when_records_arrive_but_none_settles(deploy: Callable[..., Deployment]) -> None:
    # Given the heartbeat alarm: metric math over the scorer's EMF metrics
    props = alarms(deploy(**MSK_IAM))["ScorerStalledAlarm"]
    stats = {m["Id"]: m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m}
    # Then it reads received, scored, dead-lettered and deduplicated records with the service dimension alone
    assert {m["MetricName"] for m in stats.values()} == {
        obs.RECORDS_RECEIVED,
        obs.RECORDS_SCORED,
        obs.RECORDS_DEAD_LETTERED,
        obs.RECORDS_DEDUPLICATED,
    }
    assert all(m["Dimensions"] == [{"Name": obs.SERVICE_DIMENSION, "Value": obs.SERVICE}] for m in stats.values())
    # And it breaches when records arrived and none settled, three periods running
    [expression] = [m["Expression"] for m in props["Metrics"] if "Expression" in m]
    assert "received, 0) > 0" in expression and "== 0" in expression
    assert props["EvaluationPeriods"] == 3
