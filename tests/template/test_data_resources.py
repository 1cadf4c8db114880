"""Tables, bucket, topic and key: encryption, recovery, retention, and the names other code relies on.

What moto creates is read back from moto (tables, topics, the key, log groups); what it stores but does not
serve (table recovery and TTL, bucket lifecycle and access settings, log group keys) is its evaluation of the properties.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.template.support import ACCOUNT, MSK_IAM, REGION, Deployment

TABLES = {
    "AlertsTable": "alerts",
    "CountersTable": "counters",
    "TraceStateTable": "trace-state",
    "ChatSubscriptionsTable": "chat-subscriptions",
}
DATA_RESOURCES = [*TABLES, "DataBucket"]


@pytest.mark.parametrize("keys", ["customer-managed", "aws-managed"])
def test_tables_are_on_demand_recoverable_encrypted_and_expiring(deploy: Callable[..., Deployment], keys: str) -> None:
    stack = deploy(**MSK_IAM, EncryptionKeys=keys)
    ddb = stack.client("dynamodb")
    for logical_id, suffix in TABLES.items():
        # Given each table moto created
        table = ddb.describe_table(TableName=stack.physical(logical_id))["Table"]
        props = stack.properties(logical_id)
        # Then it is named after the stack, billed on demand, with point-in-time recovery and TTL
        assert table["TableName"] == f"{stack.name}-{suffix}"
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        # And encrypted with KMS: the stack's key, or the AWS-managed aws/dynamodb key
        expected: dict[str, Any] = {"SSEEnabled": True, "SSEType": "KMS"}
        if keys == "customer-managed":
            expected["KMSMasterKeyId"] = stack.key_arn
        assert props["SSESpecification"] == expected


def test_alert_indexes(deploy: Callable[..., Deployment]) -> None:
    # Given the alerts table as moto created it
    stack = deploy(**MSK_IAM)
    table = stack.client("dynamodb").describe_table(TableName=stack.physical("AlertsTable"))["Table"]
    # Then alerts can be listed per tenant, per category, and per tenant and status, category or model (each
    # a "tenant#value" partition), newest first by created_at
    indexes = {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {
        "by_tenant": ["tenant", "created_at"],
        "by_category": ["category", "created_at"],
        "by_tenant_status": ["tenant_status", "created_at"],
        "by_tenant_category": ["tenant_category", "created_at"],
        "by_tenant_model": ["tenant_model", "created_at"],
    }
    assert all(i["Projection"] == {"ProjectionType": "ALL"} for i in table["GlobalSecondaryIndexes"])


def test_ended_cooldown_windows_are_found_through_a_sparse_index(deploy: Callable[..., Deployment]) -> None:
    # Given the counters table as moto created it
    stack = deploy(**MSK_IAM)
    table = stack.client("dynamodb").describe_table(TableName=stack.physical("CountersTable"))["Table"]
    # Then the digest flush queries windows holding alerts back by the time they started
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "digests_due"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["digest_due", "window_start"]


def test_data_survives_stack_deletion(translated: dict[str, Any]) -> None:
    # Given the stateful resources
    for logical_id in [*DATA_RESOURCES, "DataKey"]:
        resource = translated["Resources"][logical_id]
        # Then deleting or replacing the stack keeps them
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain"), logical_id


@pytest.mark.parametrize("keys", ["customer-managed", "aws-managed"])
def test_the_bucket_is_encrypted_and_private(deploy: Callable[..., Deployment], keys: str) -> None:
    # Given the data bucket
    stack = deploy(**MSK_IAM, EncryptionKeys=keys)
    bucket = stack.physical("DataBucket")
    props = stack.properties("DataBucket")
    # Then it is named after stack, account and region, encrypted by default and closed to the public
    assert bucket == f"{stack.name}-data-{ACCOUNT}-{REGION}"
    (rule,) = stack.client("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    if keys == "customer-managed":
        assert rule["ApplyServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": stack.key_arn,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["BucketKeyEnabled"] is True
    else:
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_the_bucket_refuses_plain_http(deploy: Callable[..., Deployment]) -> None:
    # Given the bucket policy (moto has no bucket policy resource: this is its evaluation of the properties)
    stack = deploy(**MSK_IAM)
    policy = stack.properties("DataBucketPolicy")
    bucket = f"arn:aws:s3:::{stack.physical('DataBucket')}"
    # Then every request without TLS is denied, on the bucket and on its objects
    assert policy["Bucket"] == stack.physical("DataBucket")
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket, f"{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def test_lifecycle_expires_failures_and_tiers_rollups(deploy: Callable[..., Deployment]) -> None:
    # Given the bucket's lifecycle with non-default retention
    stack = deploy(**MSK_IAM, DeadLetterRetentionDays="14", RollupTransitionDays="60")
    rules = {r["Id"]: r for r in stack.properties("DataBucket")["LifecycleConfiguration"]["Rules"]}
    lam = stack.client("lambda")
    variables = {
        name: lam.get_function_configuration(FunctionName=stack.physical(function))["Environment"]["Variables"]
        for name, function in (("scorer", "ScoreTracesFunction"), ("rollup", "RollupFunction"))
    }
    # Then dead letters (under the scorer's prefix) and the batches the event source discards (Lambda writes
    # them under aws/lambda/, a prefix it chooses) expire after the retention
    assert rules["expire-dead-letters"]["Prefix"] == variables["scorer"]["DEAD_LETTER_PREFIX"]
    assert rules["expire-failed-batches"]["Prefix"] == "aws/lambda/"
    for rule_id in ("expire-dead-letters", "expire-failed-batches"):
        assert (rules[rule_id]["Status"], str(rules[rule_id]["ExpirationInDays"])) == ("Enabled", "14")
    # And roll-ups (under the roll-up's prefix) move to infrequent access
    assert rules["tier-rollups"]["Prefix"] == variables["rollup"]["ROLLUP_PREFIX"]
    ((transition),) = rules["tier-rollups"]["Transitions"]
    assert (transition["StorageClass"], str(transition["TransitionInDays"])) == ("STANDARD_IA", "60")
    assert "ExpirationInDays" not in rules["tier-rollups"]
    # And abandoned multipart uploads are cleaned up
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


@pytest.mark.parametrize("keys", ["customer-managed", "aws-managed"])
def test_the_alerts_topic_is_encrypted(deploy: Callable[..., Deployment], keys: str) -> None:
    stack = deploy(**MSK_IAM, EncryptionKeys=keys)
    # Given the alerts topic moto created
    topic = stack.physical("AlertsTopic")
    attributes = stack.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]
    # Then it is named after the stack and encrypted with the chosen key
    assert topic == f"arn:aws:sns:{REGION}:{ACCOUNT}:{stack.name}-alerts"
    assert attributes["KmsMasterKeyId"] == (stack.key_arn if keys == "customer-managed" else "alias/aws/sns")


def test_the_customer_key_rotates_and_serves_logs_and_alarms(deploy: Callable[..., Deployment]) -> None:
    # Given the stack's KMS key as moto holds it
    stack = deploy(**MSK_IAM)
    kms = stack.client("kms")
    key_id = stack.physical("DataKey")
    # Then it rotates
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    # And the account administers it through IAM (the function roles get narrow grants there)
    assert statements["AccountAdministersKey"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    # And CloudWatch Logs may use it for this stack's log groups only
    logs = statements["LogGroupsOfThisStack"]
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/cotwatch/{stack.name}/*"
        }
    }
    groups = {g["logGroupName"]: g for g in stack.client("logs").describe_log_groups()["logGroups"]}
    for log_group in ("ScorerLogGroup", "RollupLogGroup"):
        name = stack.physical(log_group)
        assert name.startswith(f"/cotwatch/{stack.name}/")
        assert groups[name]["logGroupName"] == name
        assert stack.properties(log_group)["KmsKeyId"] == stack.key_arn  # moto's log group does not keep it
    # And CloudWatch alarms may publish to the topic it encrypts
    assert statements["AlarmsPublishToEncryptedTopic"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    alarm_topic = stack.client("sns").get_topic_attributes(TopicArn=stack.physical("AlarmTopic"))["Attributes"]
    assert alarm_topic["KmsMasterKeyId"] == stack.key_arn


def test_logs_are_retained_for_a_bounded_time(deploy: Callable[..., Deployment]) -> None:
    stack = deploy(**MSK_IAM, LogRetentionInDays="90")
    groups = {g["logGroupName"]: g for g in stack.client("logs").describe_log_groups()["logGroups"]}
    for log_group, function in (("ScorerLogGroup", "ScoreTracesFunction"), ("RollupLogGroup", "RollupFunction")):
        # Given each function and its log group
        assert groups[stack.physical(log_group)]["retentionInDays"] == 90
        # Then the function logs there
        assert stack.properties(function)["LoggingConfig"] == {"LogGroup": stack.physical(log_group)}
