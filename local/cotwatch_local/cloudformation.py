"""The template's AWS resources, made by existing engines: SAM translator, then moto's CloudFormation.

``template.yaml`` --SAM translator--> plain CloudFormation --:func:`for_moto`--> ``create_stack`` on the moto
server --> names (``describe_stack_resources``) and function environments (Lambda's function configuration).
No intrinsic function is evaluated here: moto evaluates parameters, conditions, ``!Ref``, ``!GetAtt`` and
``!Sub``, and what the code reads back is what moto created.

What moto 5.2.5 does with this template, measured (translated with default parameters, then create_stack):

==================================  =====================================================================
Created for real                    DynamoDB tables (keys, GSIs, billing; *not* TTL or point-in-time
                                    recovery), S3 bucket (encryption; *not* lifecycle, public access block,
                                    ownership), SNS topics (KMS key), IAM roles (inline policies), KMS key
                                    and alias, log groups (retention), Lambda functions (environment,
                                    memory, timeout, role, reserved concurrency), the EventBridge schedule
                                    rule and its target, the Lambda permission
Created without a physical id       Lambda version, layer version (a !Ref to the layer yields a Python
                                    repr, so the roll-up's Layers and the SharedLayerArn output are junk)
Skipped with a warning (no model)   Lambda alias, S3 bucket policy, SNS subscription, Glue database
                                    and tables (no shim: locally DuckDB registers the same tables, see
                                    cotwatch_local.tracking): a !Ref to them resolves to nothing
Fails the whole stack               Kafka event source mapping ("Missing EventSourceArn"); CloudWatch
                                    alarms (skipped, then the dashboard's !GetAtt on their ARNs fails)
==================================  =====================================================================

The shims, each small and next to what it covers:

- :data:`MOTO_GAPS`: the types removed before ``create_stack`` (the mapping, the alarms, the dashboard);
- :func:`for_moto` hands IAM policies and the KMS key policy over as JSON strings (moto keeps an IAM policy
  object as its Python ``repr`` and a key policy object as a dict on which ``DescribeKey`` fails);
- :func:`apply_time_to_live`: moto resolves each table's ``TimeToLiveSpecification`` into a stack output,
  this applies it through the DynamoDB API;
- :func:`stage_artifacts`: every code location points at one placeholder zip in an artifact bucket (what
  ``sam package`` would upload); moto insists on code it can fetch, and the rig runs handlers in-process;
- :func:`without_nulls`: moto leaves ``null`` in a list where a ``Fn::If`` chose ``AWS::NoValue``;
- :func:`create_kafka_topic`: no CloudFormation resource describes the Kafka topic.

moto ignores the template's ``Rules`` (as a local stack should: the default ``KafkaSource=msk`` has no
cluster) and rolls nothing back when a create fails.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import logging
import time
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from cotwatch_local import LOCAL_REGION, LOCAL_STACK_NAME, LocalStackError, repo_root

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
TOPIC = "AWS::SNS::Topic"
QUEUE = "AWS::SQS::Queue"
FUNCTION = "AWS::Lambda::Function"
FUNCTION_TYPES = ("AWS::Serverless::Function", FUNCTION)
TRACES_TOPIC_PARAMETER = "TracesTopicName"
DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"
CAPABILITIES: list[Any] = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]

# Resource types removed before create_stack, and why (moto 5.2.5). Types moto merely skips with a warning
# (AWS::Lambda::Alias, AWS::S3::BucketPolicy, AWS::SNS::Subscription, AWS::SQS::QueuePolicy,
# AWS::Lambda::EventInvokeConfig: no model, a !Ref to them resolves to nothing) are left in: nothing local
# reads them and removing them would break the !Refs that name them.
MOTO_GAPS: dict[str, str] = {
    "AWS::Lambda::EventSourceMapping": "moto maps only SQS, DynamoDB and Kinesis sources; a Kafka mapping "
    "fails the whole stack ('Missing EventSourceArn'). The local poller plays the mapping.",
    "AWS::CloudWatch::Alarm": "no moto model: moto skips it, and then the dashboard's !GetAtt on its ARN "
    "fails the whole stack.",
    "AWS::CloudWatch::Dashboard": "moto creates dashboards, but this body names the alarms' ARNs, which do "
    "not exist once the alarms are removed.",
}
TTL_OUTPUT_PREFIX = "LocalTimeToLive"  # stack outputs this module adds: <prefix><table logical id>
ARTIFACT_BUCKET = "cotwatch-local-artifacts"
ARTIFACT_KEY = "placeholder.zip"


# -- the template ------------------------------------------------------------------------------------


def default_template_path() -> Path:
    return repo_root() / "template.yaml"


def load_template(path: Path | str | None = None) -> dict[str, Any]:
    """template.yaml as the SAM CLI reads it: short-form tags (``!Ref``...) become their long forms."""
    from samtranslator.yaml_helper import yaml_parse

    source = Path(path) if path is not None else default_template_path()
    data = yaml_parse(source.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise LocalStackError(f"{source} is not a CloudFormation template: no Resources mapping")
    return dict(data)


def function_ids(template: Mapping[str, Any]) -> list[str]:
    """Logical ids of the template's Lambda functions (SAM or plain)."""
    return [lid for lid, res in template["Resources"].items() if res.get("Type") in FUNCTION_TYPES]


def resolve_parameters(
    template: Mapping[str, Any], value: Any, parameter_overrides: Mapping[str, Any] | None = None
) -> Any:
    """``value`` with ``!Ref``s to parameters and pseudo parameters replaced (SAM's own resolver), for the
    settings the invoker reads without a stack (memory, timeout, handler). Other intrinsics stay as written."""
    from samtranslator.intrinsics.resolver import IntrinsicsResolver
    from samtranslator.sdk.parameter import SamParameterValues

    parameters = SamParameterValues(dict(parameter_overrides or {}))
    parameters.add_default_parameter_values(dict(template))
    parameters.add_pseudo_parameter_values(_session())
    return IntrinsicsResolver(parameters.parameter_values).resolve_parameter_refs(copy.deepcopy(value))


def packaged(template: Mapping[str, Any], *, image_uri: str, code_uri: str) -> dict[str, Any]:
    """The template as ``sam package`` hands it over: code locations in S3 (or ECR for images). The
    translator refuses local folders."""
    result = copy.deepcopy(dict(template))
    for resource in result["Resources"].values():
        props = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                props["ImageUri"] = image_uri
            else:
                props["CodeUri"] = code_uri
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = code_uri
    return result


def translate(template: Mapping[str, Any], *, region: str = LOCAL_REGION) -> dict[str, Any]:
    """Plain CloudFormation from the SAM template (a template without the SAM transform is returned as is)."""
    if "AWS::Serverless-2016-10-31" not in json.dumps(template.get("Transform", "")):
        return copy.deepcopy(dict(template))
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    code_uri = f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_KEY}"
    image_uri = f"123456789012.dkr.ecr.{region}.amazonaws.com/cotwatch:local"  # never pulled
    # The session only names the region (for partition-aware ARNs); no call leaves the machine. The empty
    # managed-policy map is exact: it only expands policy names in a SAM function's Policies, and cotwatch's
    # functions have explicit roles.
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    translated: dict[str, Any] = translator.translate(packaged(template, image_uri=image_uri, code_uri=code_uri), {})
    return translated


def for_moto(translated: Mapping[str, Any]) -> dict[str, Any]:
    """The translated template as moto can create it: :data:`MOTO_GAPS` removed, JSON documents as strings,
    and one output per table with TTL for :func:`apply_time_to_live`."""
    result = copy.deepcopy(dict(translated))
    resources: dict[str, Any] = result["Resources"]
    outputs: dict[str, Any] = result.setdefault("Outputs", {})
    removed = {lid for lid, res in resources.items() if res["Type"] in MOTO_GAPS}
    for logical_id in removed:
        del resources[logical_id]
    # Outputs naming a removed resource would fail describe_stacks as a whole.
    for key in [k for k, out in outputs.items() if _references(out, removed)]:
        del outputs[key]
    for resource in resources.values():
        _documents_as_json(resource)
    for logical_id, resource in resources.items():
        ttl = resource.get("Properties", {}).get("TimeToLiveSpecification")
        if resource["Type"] == TABLE and ttl is not None:
            output: dict[str, Any] = {"Value": {"Fn::ToJsonString": ttl}}
            if "Condition" in resource:
                output["Condition"] = resource["Condition"]
            outputs[f"{TTL_OUTPUT_PREFIX}{logical_id}"] = output
    return result


def _references(value: Any, logical_ids: set[str]) -> bool:
    text = json.dumps(value)
    return any(f'"{lid}"' in text or f"${{{lid}." in text or f"${{{lid}}}" in text for lid in logical_ids)


def _documents_as_json(resource: dict[str, Any]) -> None:
    """moto keeps an IAM policy given as an object as its Python ``repr``, and a KMS key policy object as a
    dict on which ``DescribeKey`` fails: hand both over as JSON strings, which CloudFormation accepts too."""
    props = resource.get("Properties", {})
    holders: list[tuple[dict[str, Any], str]] = []
    if resource["Type"] == "AWS::IAM::Role":
        holders = [(policy, "PolicyDocument") for policy in props.get("Policies", []) if isinstance(policy, dict)]
    elif resource["Type"] == "AWS::KMS::Key":
        holders = [(props, "KeyPolicy")]
    for holder, key in holders:
        if key in holder and not isinstance(holder[key], str):
            holder[key] = {"Fn::ToJsonString": holder[key]}


def without_nulls(value: Any) -> Any:
    """``value`` without the ``null`` list items moto leaves where a ``Fn::If`` chose ``AWS::NoValue``."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nulls(item) for item in value if item is not None]
    return value


# -- names -------------------------------------------------------------------------------------------


class LocalResource(BaseModel):
    """One created resource: ``ref`` is what ``!Ref`` gives (an SNS topic's ARN, a table's name, ...)."""

    logical_id: str
    type: str
    name: str
    arn: str
    ref: str
    url: str | None = None  # SQS queue URL


class LocalNames(BaseModel):
    """The stack's resources as moto reports them, keyed by logical id."""

    stack_name: str
    account_id: str
    region: str
    parameters: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, LocalResource] = Field(default_factory=dict)
    kafka_topic: str
    kafka_partitions: int = 3

    def resource(self, logical_id: str) -> LocalResource:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise KeyError(f"{logical_id} is not a resource of stack {self.stack_name}") from None

    def ref(self, logical_id: str) -> str:
        return self.resource(logical_id).ref

    def name(self, logical_id: str) -> str:
        return self.resource(logical_id).name

    def arn(self, logical_id: str) -> str:
        return self.resource(logical_id).arn

    def of_type(self, type_: str) -> dict[str, LocalResource]:
        return {lid: res for lid, res in self.resources.items() if res.type == type_}

    @property
    def tables(self) -> dict[str, str]:
        """Logical id -> table name."""
        return {lid: r.name for lid, r in self.of_type(TABLE).items()}

    @property
    def buckets(self) -> dict[str, str]:
        """Logical id -> bucket name."""
        return {lid: r.name for lid, r in self.of_type(BUCKET).items()}

    @property
    def topics(self) -> dict[str, str]:
        """Logical id -> SNS topic ARN."""
        return {lid: r.arn for lid, r in self.of_type(TOPIC).items()}

    @property
    def queues(self) -> dict[str, str]:
        """Logical id -> SQS queue URL."""
        return {lid: r.url or r.ref for lid, r in self.of_type(QUEUE).items()}

    @property
    def functions(self) -> dict[str, str]:
        """Logical id -> function name."""
        return {lid: r.name for lid, r in self.of_type(FUNCTION).items()}


# -- clients -----------------------------------------------------------------------------------------


def _session(region: str = LOCAL_REGION) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY, aws_secret_access_key=DUMMY_SECRET_KEY, region_name=region
    )


class AwsClients:
    """boto3 clients for a local endpoint, with dummy credentials so no real account is ever touched."""

    def __init__(self, endpoint_url: str, region: str = LOCAL_REGION) -> None:
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.region = region
        self._session = _session(region)
        # Current botocore may route DynamoDB to an account-id endpoint that moto does not serve.
        self._config = Config(account_id_endpoint_mode="disabled", retries={"max_attempts": 3, "mode": "standard"})

    def _client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint_url, config=self._config)

    # Clients are cached: creating one costs a few hundred milliseconds of botocore model loading.
    # No stubs are installed for CloudFormation and Lambda: those two clients are untyped.
    @functools.cached_property
    def _cloudformation(self) -> Any:
        return self._client("cloudformation")

    @functools.cached_property
    def _dynamodb(self) -> DynamoDBClient:
        return self._client("dynamodb")  # type: ignore[no-any-return]

    @functools.cached_property
    def _lambda(self) -> Any:
        return self._client("lambda")

    @functools.cached_property
    def _s3(self) -> S3Client:
        return self._client("s3")  # type: ignore[no-any-return]

    @functools.cached_property
    def _sns(self) -> SNSClient:
        return self._client("sns")  # type: ignore[no-any-return]

    @functools.cached_property
    def _sqs(self) -> SQSClient:
        return self._client("sqs")  # type: ignore[no-any-return]

    def cloudformation(self) -> Any:
        return self._cloudformation

    def dynamodb(self) -> DynamoDBClient:
        return self._dynamodb

    def lambda_(self) -> Any:
        return self._lambda

    def s3(self) -> S3Client:
        return self._s3

    def sns(self) -> SNSClient:
        return self._sns

    def sqs(self) -> SQSClient:
        return self._sqs


# -- the stack ---------------------------------------------------------------------------------------


def stage_artifacts(clients: AwsClients) -> None:
    """The placeholder zip every code location of :func:`translate` points at (idempotent)."""
    s3 = clients.s3()
    # us-east-1 rejects an explicit LocationConstraint; elsewhere a second create says "already owned".
    location: Any = {} if clients.region == "us-east-1" else {"LocationConstraint": clients.region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=ARTIFACT_BUCKET, CreateBucketConfiguration=location)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("README", "Placeholder: cotwatch runs the handlers in-process, not in moto.\n")
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=archive.getvalue())


def deploy_stack(
    template: Mapping[str, Any],
    *,
    endpoint_url: str,
    stack_name: str = LOCAL_STACK_NAME,
    region: str = LOCAL_REGION,
    parameter_overrides: Mapping[str, str] | None = None,
    partitions: int = 3,
) -> LocalNames:
    """Create the stack at ``endpoint_url`` from the (SAM) template and return what moto created.

    Idempotent: a stack of that name made from the same template is read back, not created again (its data
    survives); one made from another template is an error, since moto cannot be trusted to update in place."""
    clients = AwsClients(endpoint_url, region)
    cfn = clients.cloudformation()
    body = json.dumps(for_moto(translate(template, region=region)), sort_keys=True)
    parameters: list[Any] = [{"ParameterKey": k, "ParameterValue": v} for k, v in (parameter_overrides or {}).items()]
    existing = _existing_stack(cfn, stack_name)
    if existing is None:
        stage_artifacts(clients)
        started = time.monotonic()
        try:
            cfn.create_stack(StackName=stack_name, TemplateBody=body, Parameters=parameters, Capabilities=CAPABILITIES)
        except Exception as exc:
            # moto creates synchronously and rolls nothing back: what was created before the failure stays.
            raise LocalStackError(f"moto could not create stack {stack_name}: {exc}") from exc
        log.info("created stack %s in %.2fs", stack_name, time.monotonic() - started)
        names = read_stack(clients, stack_name, partitions=partitions)
        apply_time_to_live(clients, names)
        return names
    if json.loads(body) != json.loads(json.dumps(cfn.get_template(StackName=stack_name)["TemplateBody"])):
        raise LocalStackError(
            f"stack {stack_name} exists at {endpoint_url} from another template: stop the moto server "
            "(cotwatch local down) or use another stack name"
        )
    if existing not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise LocalStackError(f"stack {stack_name} exists at {endpoint_url} in state {existing}")
    return read_stack(clients, stack_name, partitions=partitions)


def _existing_stack(cfn: Any, stack_name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def read_stack(clients: AwsClients, stack_name: str, *, partitions: int = 3) -> LocalNames:
    """Names, ARNs, parameters and outputs of a created stack, as moto reports them."""
    cfn = clients.cloudformation()
    (stack,) = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    account_id = stack["StackId"].split(":")[4]
    resources: dict[str, LocalResource] = {}
    for entry in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]:
        # moto lists resources it skipped without ids, and some it created (versions, layers) without a
        # physical id: neither can be addressed.
        logical_id, physical = entry.get("LogicalResourceId"), entry.get("PhysicalResourceId")
        if logical_id and physical:
            resources[logical_id] = _resource(clients, logical_id, entry["ResourceType"], physical)
    if TRACES_TOPIC_PARAMETER not in parameters:
        raise LocalStackError(f"the template needs a parameter {TRACES_TOPIC_PARAMETER} (the Kafka topic)")
    return LocalNames(
        stack_name=stack_name,
        account_id=account_id,
        region=clients.region,
        parameters=parameters,
        outputs=outputs,
        resources=resources,
        kafka_topic=parameters[TRACES_TOPIC_PARAMETER],
        kafka_partitions=partitions,
    )


def _resource(clients: AwsClients, logical_id: str, type_: str, physical: str) -> LocalResource:
    name, arn, url = physical, physical if physical.startswith("arn:") else "", None
    if type_ == TABLE:
        arn = clients.dynamodb().describe_table(TableName=physical)["Table"]["TableArn"]
    elif type_ == BUCKET:
        arn = f"arn:aws:s3:::{physical}"
    elif type_ == TOPIC:
        name = physical.rsplit(":", 1)[-1]
    elif type_ == QUEUE:
        name, url = physical.rstrip("/").rsplit("/", 1)[-1], physical
        arn = clients.sqs().get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    elif type_ == FUNCTION:
        arn = clients.lambda_().get_function_configuration(FunctionName=physical)["FunctionArn"]
    return LocalResource(logical_id=logical_id, type=type_, name=name, arn=arn, ref=physical, url=url)


def apply_time_to_live(clients: AwsClients, names: LocalNames) -> None:
    """Turn on the TTL the template declares (moto resolved it into an output; its DynamoDB model ignores it)."""
    ddb = clients.dynamodb()
    for logical_id, table in names.tables.items():
        spec = json.loads(names.outputs.get(f"{TTL_OUTPUT_PREFIX}{logical_id}", "null"))
        if isinstance(spec, dict) and str(spec.get("Enabled")).lower() == "true" and spec.get("AttributeName"):
            ddb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": str(spec["AttributeName"])}
            )


def function_environment(names: LocalNames, function_logical_id: str, endpoint_url: str) -> dict[str, str]:
    """The environment moto gave the function: SAM globals merged with its own, every intrinsic resolved by
    moto to the stack's resources. moto returns numbers as numbers; the environment holds strings."""
    try:
        function = names.functions[function_logical_id]
    except KeyError:
        raise KeyError(f"{function_logical_id} is not a function of stack {names.stack_name}") from None
    config = AwsClients(endpoint_url, names.region).lambda_().get_function_configuration(FunctionName=function)
    variables: Mapping[str, Any] = config.get("Environment", {}).get("Variables", {})
    return {key: _env_str(value) for key, value in variables.items()}


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# -- the Kafka topic (no CloudFormation resource describes it) ---------------------------------------


def create_kafka_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int = 3,
    *,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> bool:
    """Create ``topic`` (idempotently; a smaller existing topic is grown to ``partitions``) and wait until
    every partition has a leader, so a producer right after this never sees UNKNOWN_TOPIC_OR_PARTITION.
    True when the topic was created by this call."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewPartitions, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="cotwatch-local-setup", request_timeout_ms=int(timeout * 1000)
    )
    try:
        created = True
        try:
            admin.create_topics(
                [NewTopic(topic, partitions, replication_factor, topic_configs=dict(configs or {}))],
                timeout_ms=int(timeout * 1000),
            )
            log.info("created kafka topic %s with %d partitions", topic, partitions)
        except TopicAlreadyExistsError:
            created = False
            existing = len(_topic_partitions(admin, topic))
            if existing < partitions:
                admin.create_partitions({topic: NewPartitions(total_count=partitions)})
                log.info("grew kafka topic %s from %d to %d partitions", topic, existing, partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = _topic_partitions(admin, topic)
            if len(leaders) >= partitions and all(leader >= 0 for leader in leaders):
                return created
            time.sleep(0.1)
        raise LocalStackError(f"kafka topic {topic} has no leaders for all {partitions} partitions after {timeout}s")
    finally:
        admin.close()


def _topic_partitions(admin: Any, topic: str) -> list[int]:
    """Leader id per partition (-1 = none yet); empty while the topic is unknown."""
    described: Iterable[Mapping[str, Any]] = admin.describe_topics([topic])
    for entry in described:
        if entry.get("name") == topic and not entry.get("error_code"):
            return [int(p.get("leader_id", -1)) for p in entry.get("partitions", [])]
    return []
