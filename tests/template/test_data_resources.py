"""Tables, bucket, topic and key: encryption, recovery, retention, and the names other code relies on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.template.support import ACCOUNT, MSK_IAM, REGION, STACK, Deployment

TABLES = {"AlertsTable": "alerts", "CountersTable": "counters", "TraceStateTable": "trace-state"}
DATA_RESOURCES = [*TABLES, "DataBucket"]


@pytest.mark.parametrize("keys", ["customer-managed", "aws-managed"])
def test_tables_are_on_demand_recoverable_encrypted_and_expiring(deploy: Callable[..., Deployment], keys: str) -> None:
    stack = deploy(**MSK_IAM, EncryptionKeys=keys)
    for logical_id, suffix in TABLES.items():
        # Given each table
        table = stack.raw(logical_id)
        # Then it is named after the stack, billed on demand, with point-in-time recovery and TTL
        assert stack.resolved(logical_id)["TableName"] == f"{STACK}-{suffix}"
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        # And encrypted with KMS: the stack's key, or the AWS-managed aws/dynamodb key
        expected = {"SSEEnabled": True, "SSEType": "KMS"}
        if keys == "customer-managed":
            expected["KMSMasterKeyId"] = {"Fn::GetAtt": ["DataKey", "Arn"]}
        assert table["SSESpecification"] == expected


def test_alert_indexes(deploy: Callable[..., Deployment]) -> None:
    # Given the alerts table
    table = deploy(**MSK_IAM).raw("AlertsTable")
    # Then alerts can be listed per tenant and per category, newest first by created_at
    indexes = {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {"by_tenant": ["tenant", "created_at"], "by_category": ["category", "created_at"]}
    assert all(i["Projection"] == {"ProjectionType": "ALL"} for i in table["GlobalSecondaryIndexes"])


def test_data_survives_stack_deletion(template: dict[str, Any]) -> None:
    # Given the stateful resources
    for logical_id in [*DATA_RESOURCES, "DataKey"]:
        resource = template["Resources"][logical_id]
        # Then deleting or replacing the stack keeps them
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain"), logical_id


@pytest.mark.parametrize(
    ("keys", "encryption"),
    [
        (
            "customer-managed",
            {
                "ServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": {"Fn::GetAtt": ["DataKey", "Arn"]},
                },
                "BucketKeyEnabled": True,
            },
        ),
        ("aws-managed", {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}),
    ],
)
def test_the_bucket_is_encrypted_and_private(
    deploy: Callable[..., Deployment], keys: str, encryption: dict[str, Any]
) -> None:
    # Given the data bucket
    stack = deploy(**MSK_IAM, EncryptionKeys=keys)
    bucket = stack.raw("DataBucket")
    # Then it is named after stack, account and region, encrypted by default and closed to the public
    assert stack.resolved("DataBucket")["BucketName"] == f"{STACK}-data-{ACCOUNT}-{REGION}"
    assert bucket["BucketEncryption"] == {"ServerSideEncryptionConfiguration": [encryption]}
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_the_bucket_refuses_plain_http(deploy: Callable[..., Deployment]) -> None:
    # Given the bucket policy
    stack = deploy(**MSK_IAM)
    policy = stack.resolved("DataBucketPolicy")
    bucket = f"arn:aws:s3:::{STACK}-data-{ACCOUNT}-{REGION}"
    # Then every request without TLS is denied, on the bucket and on its objects
    assert policy["Bucket"] == f"{STACK}-data-{ACCOUNT}-{REGION}"
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket, f"{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def test_lifecycle_expires_failures_and_tiers_rollups(
    deploy: Callable[..., Deployment], template: dict[str, Any]
) -> None:
    # Given the bucket's lifecycle with non-default retention
    stack = deploy(**MSK_IAM, DeadLetterRetentionDays="14", RollupTransitionDays="60")
    rules = {r["Id"]: r for r in stack.resolved("DataBucket")["LifecycleConfiguration"]["Rules"]}
    variables = {
        name: template["Resources"][function]["Properties"]["Environment"]["Variables"]
        for name, function in (("scorer", "ScoreTracesFunction"), ("rollup", "RollupFunction"))
    }
    # Then dead letters (under the scorer's prefix) and the batches the event source discards (Lambda writes
    # them under aws/lambda/, a prefix it chooses) expire after the retention
    assert rules["expire-dead-letters"]["Prefix"] == variables["scorer"]["DEAD_LETTER_PREFIX"]
    assert rules["expire-failed-batches"]["Prefix"] == "aws/lambda/"
    for rule_id in ("expire-dead-letters", "expire-failed-batches"):
        assert (rules[rule_id]["Status"], rules[rule_id]["ExpirationInDays"]) == ("Enabled", "14")
    # And roll-ups (under the roll-up's prefix) move to infrequent access
    assert rules["tier-rollups"]["Prefix"] == variables["rollup"]["ROLLUP_PREFIX"]
    assert rules["tier-rollups"]["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": "60"}]
    assert "ExpirationInDays" not in rules["tier-rollups"]
    # And abandoned multipart uploads are cleaned up
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


@pytest.mark.parametrize(
    ("keys", "key_id"),
    [("customer-managed", {"Fn::GetAtt": ["DataKey", "Arn"]}), ("aws-managed", "alias/aws/sns")],
)
def test_the_alerts_topic_is_encrypted(deploy: Callable[..., Deployment], keys: str, key_id: Any) -> None:
    stack = deploy(**MSK_IAM, EncryptionKeys=keys)
    # Given the alerts topic
    topic = stack.raw("AlertsTopic")
    # Then it is named after the stack and encrypted with the chosen key
    assert stack.resolved("AlertsTopic")["TopicName"] == f"{STACK}-alerts"
    assert topic["KmsMasterKeyId"] == key_id


def test_the_customer_key_rotates_and_serves_logs_and_alarms(deploy: Callable[..., Deployment]) -> None:
    # Given the stack's KMS key
    stack = deploy(**MSK_IAM)
    key = stack.resolved("DataKey")
    # Then it rotates
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    # And the account administers it through IAM (the function roles get narrow grants there)
    assert statements["AccountAdministersKey"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    # And CloudWatch Logs may use it for this stack's log groups only
    logs = statements["LogGroupsOfThisStack"]
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/cotwatch/{STACK}/*"
        }
    }
    for log_group in ("ScorerLogGroup", "RollupLogGroup"):
        assert stack.resolved(log_group)["LogGroupName"].startswith(f"/cotwatch/{STACK}/")
        assert stack.raw(log_group)["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    # And CloudWatch alarms may publish to the topic it encrypts
    assert statements["AlarmsPublishToEncryptedTopic"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert stack.raw("AlarmTopic")["KmsMasterKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}


def test_logs_are_retained_for_a_bounded_time(deploy: Callable[..., Deployment]) -> None:
    stack = deploy(**MSK_IAM, LogRetentionInDays="90")
    for log_group, function in (("ScorerLogGroup", "ScoreTracesFunction"), ("RollupLogGroup", "RollupFunction")):
        # Given each function and its log group
        assert stack.resolved(log_group)["RetentionInDays"] == "90"
        # Then the function logs there
        assert stack.raw(function)["LoggingConfig"] == {"LogGroup": {"Ref": log_group}}
