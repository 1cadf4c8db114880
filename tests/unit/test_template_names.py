"""Local names and function environments resolved from template.yaml (no network).

The real template is extended in parallel, so assertions on it are about the logical ids and relations that
are stable (names derive from the stack name, ``!Ref``s resolve to the created resources), while the
tolerance of the reader (conditions, unknown types and intrinsics) is pinned with small synthetic templates.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cotwatch_local.resources import (
    BUCKET,
    TABLE,
    TOPIC,
    LocalNames,
    TemplateContext,
    UnresolvableError,
    function_environment,
    function_ids,
    load_template,
    load_template_text,
    resolve_names,
)

STABLE_TABLES = ("AlertsTable", "CountersTable", "TraceStateTable")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def demo_names(template: dict[str, Any]) -> LocalNames:
    return resolve_names(template, stack_name="demo", account_id="111122223333", region="eu-west-1")


# -- the real template ---------------------------------------------------------------------------------


def test_every_stable_resource_gets_a_local_name_derived_from_the_stack(demo_names: LocalNames) -> None:
    # Given the real template resolved for stack "demo" in account 111122223333, eu-west-1
    # Then the tables, the bucket and the topic the functions rely on are all there, named after the stack
    for logical_id in STABLE_TABLES:
        table = demo_names.resource(logical_id)
        assert table.type == TABLE
        assert table.name.startswith("demo-")
        assert table.ref == table.name
        assert table.arn == f"arn:aws:dynamodb:eu-west-1:111122223333:table/{table.name}"
    bucket = demo_names.resource("DataBucket")
    assert bucket.type == BUCKET
    assert bucket.name.startswith("demo-")
    assert bucket.name == bucket.name.lower()
    assert bucket.arn == f"arn:aws:s3:::{bucket.name}"
    topic = demo_names.resource("AlertsTopic")
    assert topic.type == TOPIC
    assert topic.name.startswith("demo-")
    # And a topic's !Ref is its ARN, not its name
    assert topic.ref == topic.arn == f"arn:aws:sns:eu-west-1:111122223333:{topic.name}"
    # And the convenience views agree
    assert demo_names.tables["AlertsTable"] == demo_names.name("AlertsTable")
    assert demo_names.buckets["DataBucket"] == bucket.name
    assert demo_names.topics["AlertsTopic"] == topic.arn


def test_names_differ_per_stack_so_sessions_do_not_collide(template: dict[str, Any]) -> None:
    # Given two stack names
    one = resolve_names(template, stack_name="cwt-aaaa")
    two = resolve_names(template, stack_name="cwt-bbbb")
    # Then no physical name is shared
    assert not {r.name for r in one.resources.values()} & {r.name for r in two.resources.values()}


def test_defaults_are_the_local_stack(template: dict[str, Any]) -> None:
    # When nothing is given, the local stack name, moto's default account and us-east-1 are used
    names = resolve_names(template)
    assert (names.stack_name, names.account_id, names.region) == ("cotwatch-local", "123456789012", "us-east-1")
    assert names.name("AlertsTable").startswith("cotwatch-local-")
    assert ":us-east-1:123456789012:" in names.arn("AlertsTopic")


def test_the_kafka_topic_is_the_traces_topic_parameter(template: dict[str, Any]) -> None:
    # Given the TracesTopicName parameter's default
    default = template["Parameters"]["TracesTopicName"]["Default"]
    # Then it names the Kafka topic, with 3 partitions unless told otherwise
    names = resolve_names(template)
    assert names.kafka_topic == default
    assert names.kafka_partitions == 3
    assert names.parameters["TracesTopicName"] == default
    # And an override wins (tests use it to get a topic per session)
    overridden = resolve_names(template, parameter_overrides={"TracesTopicName": "t-123"}, partitions=6)
    assert (overridden.kafka_topic, overridden.kafka_partitions) == ("t-123", 6)


def test_score_traces_environment_points_at_the_local_resources(
    template: dict[str, Any], demo_names: LocalNames
) -> None:
    # Given the scorer function
    assert "ScoreTracesFunction" in function_ids(template)
    # When its environment is resolved
    env = function_environment(template, "ScoreTracesFunction", demo_names)
    # Then every variable is a plain string and none still holds an intrinsic
    assert env
    assert all(isinstance(value, str) and "${" not in value for value in env.values())
    # And every variable that is a !Ref to a created resource resolves to that resource's !Ref value
    declared = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **template["Resources"]["ScoreTracesFunction"]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    refs = {
        key: value["Ref"]
        for key, value in declared.items()
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in demo_names.resources
    }
    assert refs, "expected the scorer's environment to reference local resources"
    for key, logical_id in refs.items():
        assert env[key] == demo_names.ref(logical_id)
    # And the alerts table name and the alerts topic ARN both reach the function
    assert demo_names.name("AlertsTable") in env.values()
    assert demo_names.arn("AlertsTopic") in env.values()


def test_an_unknown_function_is_an_error(template: dict[str, Any], demo_names: LocalNames) -> None:
    with pytest.raises(KeyError):
        function_environment(template, "NoSuchFunction", demo_names)
    with pytest.raises(KeyError):
        function_environment(template, "AlertsTable", demo_names)  # a resource, but not a function


# -- the loader ----------------------------------------------------------------------------------------


def test_every_short_form_tag_loads_including_unknown_ones() -> None:
    # Given a template using short forms, one of them not a real intrinsic
    text = """
Resources:
  X:
    Type: Custom::Thing
    Properties:
      A: !Ref Param
      B: !Sub "${AWS::StackName}-b"
      C: !GetAtt Some.Nested.Attr
      D: !If [Cond, 1, 2]
      E: !Select [0, !Split [",", "a,b"]]
      F: !Join ["-", [x, y]]
      G: !FutureIntrinsic {k: v}
      H: !Condition IsProd
      I: !Base64 hello
"""
    # When it is loaded
    props = load_template_text(text)["Resources"]["X"]["Properties"]
    # Then short forms become the long forms
    assert props["A"] == {"Ref": "Param"}
    assert props["B"] == {"Fn::Sub": "${AWS::StackName}-b"}
    assert props["C"] == {"Fn::GetAtt": ["Some", "Nested.Attr"]}
    assert props["D"] == {"Fn::If": ["Cond", 1, 2]}
    assert props["E"] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
    assert props["F"] == {"Fn::Join": ["-", ["x", "y"]]}
    assert props["G"] == {"Fn::FutureIntrinsic": {"k": "v"}}
    assert props["H"] == {"Condition": "IsProd"}
    assert props["I"] == {"Fn::Base64": "hello"}


def test_a_file_without_resources_is_rejected() -> None:
    with pytest.raises(RuntimeError, match="Resources"):
        load_template_text("Parameters: {}\n")


# -- tolerance: a template that grew -------------------------------------------------------------------

GROWN_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  TracesTopicName: {Type: String, Default: traces}
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  KafkaMode: {Type: String, Default: self-managed}
  Subnets: {Type: CommaDelimitedList, Default: "subnet-a,subnet-b"}
  NoDefault: {Type: String}
Mappings:
  StageSettings:
    dev: {Retention: "7"}
    prod: {Retention: "90"}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  UsesMsk: !Equals [!Ref KafkaMode, msk]
  Unknowable: !Equals [!Ref NoDefault, x]
  DevAndSelfManaged: !And [!Condition IsDev, !Not [!Condition UsesMsk]]
  DevOrUnknowable: !Or [!Condition IsDev, !Condition Unknowable]
Globals:
  Function:
    Environment:
      Variables:
        STAGE: !Ref Stage
        SHARED: from-globals
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties: {KeyPolicy: {}}
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties: {AlarmName: !Sub "${AWS::StackName}-errors", Threshold: 1}
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref Scorer
      Topics: [!Ref TracesTopicName]
      SelfManagedEventSource: {Endpoints: {KafkaBootstrapServers: !Split [",", !ImportValue brokers]}}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-t"
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      SSESpecification:
        SSEEnabled: true
        KMSMasterKeyId: !GetAtt Key.Arn
  UnnamedTable:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  ProdOnlyBucket:
    Type: AWS::S3::Bucket
    Condition: IsProd
    Properties: {BucketName: !Sub "${AWS::StackName}-prod"}
  UnknowableBucket:
    Type: AWS::S3::Bucket
    Condition: Unknowable
  DevBucket:
    Type: AWS::S3::Bucket
    Condition: DevAndSelfManaged
    Properties:
      BucketName: !Join ["-", [!Ref "AWS::StackName", dev, !Select [1, !Ref Subnets]]]
  Fifo:
    Type: AWS::SNS::Topic
    Properties: {TopicName: !Sub "${AWS::StackName}-events", FifoTopic: true}
  Dlq:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !If [IsProd, prod-dlq, !Sub "${AWS::StackName}-dlq"]}
  Scorer:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      ImageUri: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/scorer:latest"
      Environment:
        Variables:
          SHARED: from-function
          TABLE: !Ref Table
          TABLE_ARN: !GetAtt Table.Arn
          TOPIC: !Ref Fifo
          QUEUE_URL: !Ref Dlq
          QUEUE_ARN: !GetAtt Dlq.Arn
          KEY_ARN: !GetAtt Key.Arn
          IMPORTED: !ImportValue shared-thing
          MAYBE: !If [IsProd, prod-only, !Ref "AWS::NoValue"]
          RETENTION: !FindInMap [StageSettings, !Ref Stage, Retention]
          DEBUG: !If [DevOrUnknowable, "true", "false"]
          LITERAL: !Sub "${!NotAVar}-${Table}"
          VARS: !Sub ["${Name}:${AWS::Region}", {Name: !Ref TracesTopicName}]
          BOOL: true
          NUMBER: 3
  PlainFunction:
    Type: AWS::Lambda::Function
    Properties:
      Environment: {Variables: {ONLY_OWN: !Ref Stage}}
"""


@pytest.fixture(scope="module")
def grown() -> dict[str, Any]:
    return load_template_text(GROWN_TEMPLATE)


def test_only_table_bucket_topic_and_queue_types_are_kept(grown: dict[str, Any]) -> None:
    # When a template full of other resource types is resolved
    names = resolve_names(grown, stack_name="s")
    # Then KMS keys, alarms, mappings and functions are ignored; conditions decide the buckets
    assert set(names.resources) == {"Table", "UnnamedTable", "DevBucket", "Fifo", "Dlq"}
    # And a table without a TableName gets a stack-derived name
    assert names.name("UnnamedTable") == "s-UnnamedTable"
    # And a table whose SSE key cannot be resolved still gets its name
    assert names.name("Table") == "s-t"


def test_conditions_are_evaluated_on_defaults_and_pessimistic_when_unknowable(grown: dict[str, Any]) -> None:
    ctx = TemplateContext(grown)
    # Equals on parameter defaults, Not, And, Or
    assert ctx.condition("IsProd") is False
    assert ctx.condition("IsDev") is True
    assert ctx.condition("DevAndSelfManaged") is True
    assert ctx.condition("DevOrUnknowable") is True  # one true branch decides an Or
    # A condition on a parameter without a default cannot be evaluated: it counts as false
    assert ctx.condition("Unknowable") is False
    assert ctx.condition("NoSuchCondition") is False
    # Overrides change the outcome
    prod = resolve_names(grown, stack_name="s", parameter_overrides={"Stage": "prod"})
    assert "ProdOnlyBucket" in prod.resources and "DevBucket" not in prod.resources
    assert prod.name("Dlq") == "prod-dlq"


def test_join_select_and_list_parameters(grown: dict[str, Any]) -> None:
    names = resolve_names(grown, stack_name="s")
    assert names.name("DevBucket") == "s-dev-subnet-b"
    assert names.parameters["Subnets"] == "subnet-a,subnet-b"
    assert "NoDefault" not in names.parameters


def test_fifo_topics_and_queues_get_their_arns_and_urls(grown: dict[str, Any]) -> None:
    names = resolve_names(grown, stack_name="s", account_id="999988887777", region="us-west-2")
    assert names.name("Fifo") == "s-events.fifo"
    assert names.topics["Fifo"] == "arn:aws:sns:us-west-2:999988887777:s-events.fifo"
    assert names.queues["Dlq"] == "https://sqs.us-west-2.amazonaws.com/999988887777/s-dlq"
    assert names.arn("Dlq") == "arn:aws:sqs:us-west-2:999988887777:s-dlq"


def test_function_environment_merges_globals_and_resolves_what_it_can(
    grown: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Listen on the module's own logger: a handler imported earlier in the session (powertools
    # Logger(service="cotwatch")) reconfigures the "cotwatch" logger tree, so root-level capture is unreliable.
    records: list[logging.LogRecord] = []
    listener = logging.Handler(level=logging.DEBUG)
    listener.emit = records.append  # type: ignore[method-assign]
    target = logging.getLogger("cotwatch_local.resources")
    monkeypatch.setattr(target, "disabled", False)
    monkeypatch.setattr(target, "level", logging.DEBUG)
    target.addHandler(listener)
    monkeypatch.setattr(target, "handlers", [*target.handlers])
    names = resolve_names(grown, stack_name="s")
    # When the image-packaged scorer's environment is resolved
    env = function_environment(grown, "Scorer", names)
    # Then globals are merged, the function's own value winning
    assert env["STAGE"] == "dev"
    assert env["SHARED"] == "from-function"
    # And references to created resources resolve to the local names
    assert env["TABLE"] == "s-t"
    assert env["TABLE_ARN"] == "arn:aws:dynamodb:us-east-1:123456789012:table/s-t"
    assert env["TOPIC"] == names.arn("Fifo")
    assert env["QUEUE_URL"] == names.queues["Dlq"]
    assert env["QUEUE_ARN"] == names.arn("Dlq")
    # And mappings, conditions, Sub escapes and Sub variable maps work
    assert env["RETENTION"] == "7"
    assert env["DEBUG"] == "true"
    assert env["LITERAL"] == "${NotAVar}-s-t"
    assert env["VARS"] == "traces:us-east-1"
    # And scalars are stringified the CloudFormation way
    assert env["BOOL"] == "true"
    assert env["NUMBER"] == "3"
    # And AWS::NoValue removes a variable, unresolvable ones are left out (with a warning)
    assert "MAYBE" not in env
    assert "KEY_ARN" not in env
    assert "IMPORTED" not in env
    target.removeHandler(listener)
    logged = " ".join(r.getMessage() for r in records)
    assert "KEY_ARN" in logged and "IMPORTED" in logged


def test_plain_lambda_functions_do_not_get_sam_globals(grown: dict[str, Any]) -> None:
    names = resolve_names(grown, stack_name="s")
    assert function_environment(grown, "PlainFunction", names) == {"ONLY_OWN": "dev"}
    assert set(function_ids(grown)) == {"Scorer", "PlainFunction"}


def test_strict_resolution_raises_and_lenient_resolution_drops(grown: dict[str, Any]) -> None:
    ctx = TemplateContext(grown)
    value = {"keep": "x", "drop": {"Fn::ImportValue": "y"}, "list": ["a", {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}]}
    with pytest.raises(UnresolvableError):
        ctx.resolve(value)
    assert ctx.resolve(value, lenient=True) == {"keep": "x", "list": ["a"]}


def test_a_template_without_the_topic_parameter_is_an_error() -> None:
    template = load_template_text("Resources: {T: {Type: AWS::SNS::Topic}}\n")
    with pytest.raises(RuntimeError, match="TracesTopicName"):
        resolve_names(template)


# -- broker helpers that need no JVM -------------------------------------------------------------------


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from cotwatch_local import kafka_broker

    # Given a random source whose first draw encodes to "-..." (0xF8 -> '-' in URL-safe base64)
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    # When a cluster id is made, the dash-led one is skipped (the storage tool would read it as an option)
    cluster_id = kafka_broker.new_cluster_id()
    assert cluster_id == "EBAQEBAQEBAQEBAQEBAQEA"
    assert len(cluster_id) == 22


def test_the_kafka_version_is_pinned_in_the_pom() -> None:
    from cotwatch_local import repo_root
    from cotwatch_local.kafka_broker import pinned_kafka_version

    version = pinned_kafka_version(repo_root() / "infra" / "kafka" / "pom.xml")
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) >= (4, 1)
