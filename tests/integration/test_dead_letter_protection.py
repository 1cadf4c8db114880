"""Dead letters in the stack moto creates from template.yaml: written through the real S3 sink, they are
encrypted with the stack's KMS key by the bucket's default encryption and hold no raw secret."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from cotwatch.adapters.aws import S3DeadLetterSink
from cotwatch.ports import DeadLetter
from cotwatch_local.cloudformation import AwsClients, LocalNames

pytestmark = pytest.mark.integration

SECRET = "AKIAQX4J7T2M9RZ5WB3K"
EMAIL = "jane.doe@example.org"


def test_a_dead_letter_is_kms_encrypted_redacted_and_expiring(local_aws_names: LocalNames, moto_endpoint: str) -> None:
    # Given the stack's data bucket and the scorer's dead-letter sink on it
    clients = AwsClients(moto_endpoint)
    s3 = clients.s3()
    bucket = local_aws_names.name("DataBucket")
    sink = S3DeadLetterSink(bucket, s3=s3)
    raw = json.dumps({"trace_id": "t", "seq": "x", "text": f"key {SECRET} mail {EMAIL}"}).encode()

    # When a poison record carrying a secret and an e-mail address is dead-lettered
    letter = DeadLetter(
        reason="invalid_chunk",
        detail=f"seq: input should be an integer (text was 'key {SECRET}')",
        topic="traces-protect",
        partition=0,
        offset=7,
        timestamp_ms=None,
        key_b64=None,
        value_b64=base64.b64encode(raw).decode(),
        headers=[],
        dead_lettered_at=datetime.now(UTC),
    )
    location = sink.write(letter)
    key = location.removeprefix(f"s3://{bucket}/")
    head = s3.head_object(Bucket=bucket, Key=key)
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()

    # Then S3 encrypted it with the stack's key (the bucket default: the sink sets nothing itself)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert local_aws_names.ref("DataKey") in head["SSEKMSKeyId"]
    # And neither the object nor its decoded value holds the secret or the address, but it keeps the digest
    body = json.loads(stored)
    decoded = base64.b64decode(body["value_b64"]).decode()
    for text in (stored, decoded):
        assert SECRET not in text and EMAIL not in text
    assert "[AWS_KEY]" in decoded and "[EMAIL]" in decoded
    assert body["value_bytes"] == len(raw) and body["value_sha256"].startswith("sha256:")
    # (Versioning and lifecycle rules are asserted on the translated template in tests/template/test_security.py:
    # moto's CloudFormation ignores those bucket properties.)
