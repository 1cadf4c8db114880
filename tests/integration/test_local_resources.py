"""The template's stack created by moto's CloudFormation (after the SAM translator) on a real moto server.

Expected key schemas and indexes are read from the translated template itself, so the test follows the
template as it grows instead of duplicating it.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from cotwatch_local.cloudformation import (
    TABLE,
    AwsClients,
    LocalNames,
    deploy_stack,
    function_environment,
    load_template,
    translate,
)
from cotwatch_local.moto_server import MotoServer, moto_answers, threaded_moto_server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def translated(cotwatch_template: dict[str, Any]) -> dict[str, Any]:
    return translate(cotwatch_template)


def _declared(translated: dict[str, Any], logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = translated["Resources"][logical_id]["Properties"]
    return props


def _key_schema(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["AttributeName"], e["KeyType"]) for e in entries]


@pytest.fixture
def stack_name() -> str:
    """A stack of its own, so each test sees only what it created."""
    return f"it-{uuid.uuid4().hex[:8]}"


def test_tables_have_the_templates_keys_indexes_billing_and_ttl(
    cotwatch_template: dict[str, Any], translated: dict[str, Any], moto_endpoint: str, stack_name: str
) -> None:
    # Given the template
    # When its stack is created in moto
    names = deploy_stack(cotwatch_template, endpoint_url=moto_endpoint, stack_name=stack_name)
    ddb = AwsClients(moto_endpoint).dynamodb()
    # Then every table in the template exists with its key schema, GSIs and billing mode
    assert set(names.tables) == {lid for lid, r in translated["Resources"].items() if r["Type"] == TABLE}
    for logical_id, table_name in names.tables.items():
        declared = _declared(translated, logical_id)
        table = ddb.describe_table(TableName=table_name)["Table"]
        assert _key_schema(table["KeySchema"]) == _key_schema(declared["KeySchema"])  # type: ignore[arg-type]
        assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {
            (a["AttributeName"], a["AttributeType"]) for a in declared["AttributeDefinitions"]
        }
        declared_gsis = {
            g["IndexName"]: _key_schema(g["KeySchema"]) for g in declared.get("GlobalSecondaryIndexes", [])
        }
        actual_gsis = {
            g["IndexName"]: _key_schema(g["KeySchema"])  # type: ignore[arg-type]
            for g in table.get("GlobalSecondaryIndexes", [])
        }
        assert actual_gsis == declared_gsis
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        assert billing == declared.get("BillingMode", "PROVISIONED")
        # And TTL is on where the template turns it on, on the template's attribute
        ttl = ddb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        spec = declared.get("TimeToLiveSpecification")
        if spec and spec.get("Enabled"):
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == spec["AttributeName"]
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"
    # And the alerts table has the GSIs the alert queries rely on
    alerts = ddb.describe_table(TableName=names.name("AlertsTable"))["Table"]
    assert {g["IndexName"] for g in alerts.get("GlobalSecondaryIndexes", [])} >= {"by_tenant", "by_category"}


def test_bucket_and_topic_exist_with_the_names_the_stack_reports(
    cotwatch_template: dict[str, Any], moto_endpoint: str, stack_name: str
) -> None:
    names = deploy_stack(cotwatch_template, endpoint_url=moto_endpoint, stack_name=stack_name)
    clients = AwsClients(moto_endpoint)
    # The bucket exists and takes objects
    s3 = clients.s3()
    bucket = names.name("DataBucket")
    assert bucket == names.outputs["DataBucketName"]
    s3.put_object(Bucket=bucket, Key="probe.json", Body=b"{}")
    assert s3.get_object(Bucket=bucket, Key="probe.json")["Body"].read() == b"{}"
    # The topic exists under exactly the ARN the names (and so the function environment) carry
    sns = clients.sns()
    arns = {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    assert names.arn("AlertsTopic") in arns
    assert names.arn("AlertsTopic") == names.outputs["AlertsTopicArn"]


def test_creating_twice_is_idempotent(cotwatch_template: dict[str, Any], moto_endpoint: str, stack_name: str) -> None:
    # Given a stack created once, with an item written to a table
    first = deploy_stack(cotwatch_template, endpoint_url=moto_endpoint, stack_name=stack_name)
    ddb = AwsClients(moto_endpoint).dynamodb()
    table = first.name("TraceStateTable")
    key_attr = ddb.describe_table(TableName=table)["Table"]["KeySchema"][0]["AttributeName"]
    ddb.put_item(TableName=table, Item={key_attr: {"S": "kept"}})
    # When it is deployed again
    second = deploy_stack(cotwatch_template, endpoint_url=moto_endpoint, stack_name=stack_name)
    # Then nothing fails, names are unchanged and existing data survives
    assert second == first
    assert "Item" in ddb.get_item(TableName=table, Key={key_attr: {"S": "kept"}})


def test_the_function_environment_reaches_the_created_resources(
    cotwatch_template: dict[str, Any], moto_endpoint: str, stack_name: str
) -> None:
    # Given the scorer's environment as moto created it
    names = deploy_stack(cotwatch_template, endpoint_url=moto_endpoint, stack_name=stack_name)
    env = function_environment(names, "ScoreTracesFunction", moto_endpoint)
    clients = AwsClients(moto_endpoint)
    # Then each table and topic value in it names a resource that exists in moto
    table_names = set(clients.dynamodb().list_tables()["TableNames"])
    topic_arns = {t["TopicArn"] for t in clients.sns().list_topics()["Topics"]}
    referenced = [v for v in env.values() if v in names.tables.values() or v in names.topics.values()]
    assert len(referenced) >= 4
    for value in referenced:
        assert value in table_names | topic_arns


def test_an_unknown_function_is_an_error(local_aws_names: LocalNames, moto_endpoint: str) -> None:
    # Given the session stack
    # Then only its functions have an environment: not another name, not a resource that is no function
    with pytest.raises(KeyError):
        function_environment(local_aws_names, "NoSuchFunction", moto_endpoint)
    with pytest.raises(KeyError):
        function_environment(local_aws_names, "AlertsTable", moto_endpoint)


def test_a_template_without_the_topic_parameter_is_an_error(moto_endpoint: str, tmp_path: Path) -> None:
    # Given a template that does not name the Kafka topic
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Only:\n    Type: AWS::SNS::Topic\n")
    # Then deploying it says what is missing
    with pytest.raises(RuntimeError, match="TracesTopicName"):
        deploy_stack(load_template(path), endpoint_url=moto_endpoint, stack_name=f"nt-{uuid.uuid4().hex[:8]}")


def test_local_aws_names_fixture_creates_a_session_stack(
    local_aws_names: LocalNames, moto_endpoint: str, local_aws_env: dict[str, str]
) -> None:
    # The shared fixture's stack is unique to the session and exists in moto
    assert local_aws_names.stack_name.startswith("cwt-")
    import boto3

    # And the env fixture is enough for a plain boto3 client (what a handler creates)
    ddb = boto3.client("dynamodb")
    assert set(local_aws_names.tables.values()) <= set(ddb.list_tables()["TableNames"])
    assert local_aws_env["AWS_ENDPOINT_URL"] == moto_endpoint


SYNTHETIC = """
Parameters:
  TracesTopicName: {Type: String, Default: t}
Resources:
  Provisioned:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}, {AttributeName: n, AttributeType: N}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      ProvisionedThroughput: {ReadCapacityUnits: 2, WriteCapacityUnits: 3}
      GlobalSecondaryIndexes:
        - IndexName: by_n
          KeySchema: [{AttributeName: n, KeyType: HASH}]
          Projection: {ProjectionType: KEYS_ONLY}
          ProvisionedThroughput: {ReadCapacityUnits: 1, WriteCapacityUnits: 1}
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Events:
    Type: AWS::SNS::Topic
    Properties: {TopicName: !Sub "${AWS::StackName}-events.fifo", FifoTopic: true, ContentBasedDeduplication: true}
  Dlq:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Sub "${AWS::StackName}-dlq", VisibilityTimeout: 45}
"""


def test_provisioned_tables_fifo_topics_and_queues(moto_endpoint: str, tmp_path: Path) -> None:
    # Given a plain CloudFormation template (no SAM transform) with other kinds of tables, topics and queues
    path = tmp_path / "template.yaml"
    path.write_text(SYNTHETIC)
    template = load_template(path)
    stack_name = f"syn-{uuid.uuid4().hex[:8]}"
    # When deployed twice (the second time must be a no-op)
    first = deploy_stack(template, endpoint_url=moto_endpoint, stack_name=stack_name)
    created = deploy_stack(template, endpoint_url=moto_endpoint, stack_name=stack_name)
    assert created == first
    clients = AwsClients(moto_endpoint)
    # Then the provisioned table keeps its throughput, its GSI and its stream
    table = clients.dynamodb().describe_table(TableName=created.name("Provisioned"))["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 2
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    assert [g["IndexName"] for g in table["GlobalSecondaryIndexes"]] == ["by_n"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert created.resource("Provisioned").type == TABLE
    # And the FIFO topic is a FIFO topic
    attrs = clients.sns().get_topic_attributes(TopicArn=created.arn("Events"))["Attributes"]
    assert attrs["FifoTopic"] == "true"
    # And the queue exists at the URL moto reports, with its attributes
    url = created.queues["Dlq"]
    assert url.endswith(f"/{stack_name}-dlq")
    got = clients.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert got["Attributes"]["VisibilityTimeout"] == "45"
    clients.sqs().send_message(QueueUrl=url, MessageBody=json.dumps({"ok": True}))


def test_moto_server_lifecycle(tmp_path: Path) -> None:
    # Given a moto server started detached on any free port
    server = MotoServer(state_dir=tmp_path, port=0)
    try:
        status = server.start()
        # Then it answers over HTTP and records its pid and endpoint
        assert status.running and status.pid and status.endpoint_url
        assert moto_answers(status.endpoint_url)
        assert (tmp_path / "moto.pid").read_text().strip() == str(status.pid)
        # And another handle on the same state dir (another process, say) sees it; starting again is a no-op
        other = MotoServer(state_dir=tmp_path, port=0)
        assert other.status().running
        assert other.start().pid == status.pid
        # When stopped from that other handle
        assert other.stop() is True
    finally:
        server.stop()
    # Then it no longer answers and status says so
    assert not server.status().running
    assert not moto_answers(status.endpoint_url)
    assert not (tmp_path / "moto.pid").exists()


def test_threaded_moto_server_serves_and_stops() -> None:
    with threaded_moto_server() as endpoint:
        assert moto_answers(endpoint)
        AwsClients(endpoint).s3().create_bucket(Bucket="threaded")
    assert not moto_answers(endpoint)
