"""What moto's CloudFormation does with the translated template: the measured table in
cotwatch_local.cloudformation, pinned so that a moto upgrade or a new resource type shows up here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.template.support import MSK_IAM, Deployment

from cotwatch_local.cloudformation import CAPABILITIES, MOTO_GAPS, for_moto

# Created, but listed without a physical id (nothing can address them).
WITHOUT_PHYSICAL_ID = {"AWS::Lambda::Version", "AWS::Lambda::LayerVersion", "AWS::Lambda::Permission"}
# No moto model: skipped with a warning, a !Ref to them resolves to nothing.
SKIPPED = {
    "AWS::Lambda::Alias",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::EventInvokeConfig",
    # The alerts API's HTTP API: locally its handler runs behind a loopback server instead.
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    # The Athena tables of the roll-ups: nothing local needs them (DuckDB registers the same tables).
    "AWS::Glue::Database",
    "AWS::Glue::Table",
}


def test_every_gap_is_in_the_template_and_removed_from_what_moto_gets(translated: dict[str, Any]) -> None:
    # Given the translated template's resource types
    types = {r["Type"] for r in translated["Resources"].values()}
    # Then the table of gaps names only types the template has (no stale entry)
    assert set(MOTO_GAPS) <= types
    # And none of them reaches moto
    assert not {r["Type"] for r in for_moto(translated)["Resources"].values()} & set(MOTO_GAPS)


def test_without_the_shims_moto_fails_the_stack(translated: dict[str, Any], moto_endpoint: str) -> None:
    # Given the translated template as it is (code locations staged, nothing removed)
    cfn = Deployment.client_for(moto_endpoint, "cloudformation")
    # When moto is asked to create it
    # Then the Kafka event source mapping fails the whole stack
    with pytest.raises(Exception, match="EventSourceArn"):
        cfn.create_stack(StackName="unshimmed", TemplateBody=json.dumps(translated), Capabilities=CAPABILITIES)


def test_moto_creates_everything_else(translated: dict[str, Any], deploy: Callable[..., Deployment]) -> None:
    # Given a deployment with the defaults
    stack = deploy(**MSK_IAM)
    # Then every resource moto gets whose condition holds is created with a physical id, except the types
    # known to be created without one or skipped
    expected = {
        lid
        for lid, r in for_moto(translated)["Resources"].items()
        if stack.has(lid) and r["Type"] not in WITHOUT_PHYSICAL_ID | SKIPPED
    }
    assert set(stack.physical_ids) == expected
    # And the skipped ones are really absent from what moto reports
    skipped = {lid for lid, r in translated["Resources"].items() if r["Type"] in SKIPPED}
    assert not skipped & set(stack.physical_ids)
