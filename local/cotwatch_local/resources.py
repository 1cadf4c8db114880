"""Local resources from ``template.yaml``: names, function environments and the resources themselves.

moto cannot deploy a SAM template (its CloudFormation skips ``AWS::Serverless::*``), so this module reads
the template itself and creates, against any endpoint, the resource types the functions talk to:
DynamoDB tables, S3 buckets, SNS topics, SQS queues, plus the Kafka topic named by the
``TracesTopicName`` parameter. Every other resource type is ignored.

The template keeps growing (conditions, KMS keys, alarms, raw event source mappings...), so the reader is
deliberately tolerant: every short-form tag loads, intrinsics it cannot evaluate locally raise
:class:`UnresolvableError` only where a value is really needed, and conditions it cannot decide count as false.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, Field

from cotwatch_local import LOCAL_ACCOUNT_ID, LOCAL_REGION, LOCAL_STACK_NAME, LocalStackError, repo_root

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
CREATED_TYPES = (TABLE, BUCKET, TOPIC, QUEUE)
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
TRACES_TOPIC_PARAMETER = "TracesTopicName"
DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"


# -- loading -----------------------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that turns CloudFormation short forms (``!Ref X``, ``!Sub ...``) into the long
    forms (``{"Ref": "X"}``, ``{"Fn::Sub": ...}``), for every tag, known or not."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        # The short form "Resource.Attribute" (the attribute itself may contain dots).
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def default_template_path() -> Path:
    return repo_root() / "template.yaml"


def load_template(path: Path | str | None = None) -> dict[str, Any]:
    """Read a CloudFormation/SAM template (YAML or JSON) with short-form tags."""
    source = Path(path) if path is not None else default_template_path()
    return load_template_text(source.read_text())


def load_template_text(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=CfnLoader)  # a SafeLoader subclass: no arbitrary objects
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise LocalStackError("not a CloudFormation template: no Resources mapping")
    return data


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
    """Resolved names and ARNs of the template's local resources, keyed by logical id."""

    stack_name: str
    account_id: str
    region: str
    parameters: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, LocalResource] = Field(default_factory=dict)
    kafka_topic: str
    kafka_partitions: int = 3

    def resource(self, logical_id: str) -> LocalResource:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise KeyError(f"{logical_id} is not a local resource of stack {self.stack_name}") from None

    def ref(self, logical_id: str) -> str:
        return self.resource(logical_id).ref

    def name(self, logical_id: str) -> str:
        return self.resource(logical_id).name

    def arn(self, logical_id: str) -> str:
        return self.resource(logical_id).arn

    def _of_type(self, type_: str, pick: Callable[[LocalResource], str]) -> dict[str, str]:
        return {lid: pick(res) for lid, res in self.resources.items() if res.type == type_}

    @property
    def tables(self) -> dict[str, str]:
        """Logical id -> table name."""
        return self._of_type(TABLE, lambda r: r.name)

    @property
    def buckets(self) -> dict[str, str]:
        """Logical id -> bucket name."""
        return self._of_type(BUCKET, lambda r: r.name)

    @property
    def topics(self) -> dict[str, str]:
        """Logical id -> SNS topic ARN."""
        return self._of_type(TOPIC, lambda r: r.arn)

    @property
    def queues(self) -> dict[str, str]:
        """Logical id -> SQS queue URL."""
        return self._of_type(QUEUE, lambda r: r.url or r.ref)


# -- evaluating intrinsics ---------------------------------------------------------------------------


class UnresolvableError(LookupError):
    """An intrinsic this local reader cannot (or should not) evaluate."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class TemplateContext:
    """Evaluates intrinsics against a local stack: pseudo parameters, parameter defaults (or overrides),
    mappings, conditions and the local names of the resources we create."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        stack_name: str = LOCAL_STACK_NAME,
        account_id: str = LOCAL_ACCOUNT_ID,
        region: str = LOCAL_REGION,
        parameter_overrides: Mapping[str, str] | None = None,
        resources: Mapping[str, LocalResource] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.account_id = account_id
        self.region = region
        self.partition = "aws-cn" if region.startswith("cn-") else "aws"
        self.overrides = dict(parameter_overrides or {})
        self.resources: dict[str, LocalResource] = dict(resources or {})
        self._conditions: dict[str, bool | None] = {}
        self._evaluating: set[str] = set()

    # -- parameters and conditions --

    def _section(self, name: str) -> Mapping[str, Any]:
        section = self.template.get(name)
        return section if isinstance(section, Mapping) else {}

    def parameter(self, name: str) -> Any:
        spec = self._section("Parameters").get(name)
        if not isinstance(spec, Mapping):
            raise UnresolvableError(f"no parameter {name}")
        if name in self.overrides:
            raw: Any = self.overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise UnresolvableError(f"parameter {name} has no default")
        ptype = str(spec.get("Type", "String"))
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            if isinstance(raw, list):
                return [str(v) for v in raw]
            return [v.strip() for v in str(raw).split(",")] if str(raw) else []
        return _scalar_str(raw)

    def parameter_values(self) -> dict[str, str]:
        """Every parameter that has a value, lists comma-joined (as ``--parameter-overrides`` takes them)."""
        values: dict[str, str] = {}
        for name in self._section("Parameters"):
            try:
                value = self.parameter(name)
            except UnresolvableError:
                continue
            values[name] = ",".join(value) if isinstance(value, list) else str(value)
        return values

    def condition(self, name: str) -> bool:
        """A named condition; undecidable ones count as false (the pessimistic local choice)."""
        return self._condition(name) is True

    def _condition(self, name: str) -> bool | None:
        if name in self._conditions:
            return self._conditions[name]
        if name in self._evaluating:
            return None  # a cycle: the template is broken, do not recurse forever
        expr = self._section("Conditions").get(name)
        if expr is None:
            return None
        self._evaluating.add(name)
        try:
            result = self._eval_condition(expr)
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = result
        return result

    def _eval_condition(self, expr: Any) -> bool | None:
        if isinstance(expr, bool):
            return expr
        if not isinstance(expr, Mapping) or len(expr) != 1:
            return None
        ((fn, arg),) = expr.items()
        if fn == "Condition":
            return self._condition(str(arg))
        if fn == "Fn::Equals" and isinstance(arg, list) and len(arg) == 2:
            try:
                left, right = (self.resolve(a) for a in arg)
            except UnresolvableError:
                return None
            return _scalar_str(left) == _scalar_str(right)
        if fn == "Fn::Not" and isinstance(arg, list) and len(arg) == 1:
            inner = self._eval_condition(arg[0])
            return None if inner is None else not inner
        if fn in ("Fn::And", "Fn::Or") and isinstance(arg, list):
            results = [self._eval_condition(a) for a in arg]
            decisive: bool = fn == "Fn::Or"  # True decides an Or, False decides an And
            if decisive in results:
                return decisive
            return None if None in results else not decisive
        return None

    # -- resolution --

    def resolve(self, value: Any, *, lenient: bool = False) -> Any:
        """Evaluate intrinsics in ``value``. Strict mode raises :class:`UnresolvableError`; lenient mode drops
        the map entries and list items it cannot evaluate. ``AWS::NoValue`` entries are always dropped."""
        if isinstance(value, Mapping):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
                    return self._intrinsic(str(key), arg, lenient)
            out: dict[str, Any] = {}
            for key, item in value.items():
                try:
                    resolved = self.resolve(item, lenient=lenient)
                except UnresolvableError:
                    if not lenient:
                        raise
                    continue
                if resolved is not NO_VALUE:
                    out[str(key)] = resolved
            return out
        if isinstance(value, list):
            items: list[Any] = []
            for item in value:
                try:
                    resolved = self.resolve(item, lenient=lenient)
                except UnresolvableError:
                    if not lenient:
                        raise
                    continue
                if resolved is not NO_VALUE:
                    items.append(resolved)
            return items
        return value

    def _intrinsic(self, fn: str, arg: Any, lenient: bool) -> Any:
        if fn == "Ref":
            return self.ref(str(self.resolve(arg)))
        if fn == "Fn::GetAtt":
            parts = self.resolve(arg)
            if isinstance(parts, str):
                parts = parts.split(".", 1)
            if not isinstance(parts, list) or len(parts) != 2:
                raise UnresolvableError(f"malformed Fn::GetAtt {arg!r}")
            return self.get_att(str(parts[0]), str(parts[1]))
        if fn == "Fn::Sub":
            return self._sub(arg)
        if fn == "Fn::If":
            if not isinstance(arg, list) or len(arg) != 3:
                raise UnresolvableError(f"malformed Fn::If {arg!r}")
            branch = arg[1] if self.condition(str(arg[0])) else arg[2]
            return self.resolve(branch, lenient=lenient)
        if fn == "Fn::Join":
            delimiter, items = self._pair(fn, arg)
            resolved = self.resolve(items, lenient=lenient)
            if not isinstance(resolved, list):
                raise UnresolvableError("Fn::Join needs a list")
            return str(delimiter).join(_scalar_str(v) for v in resolved)
        if fn == "Fn::Select":
            index, items = self._pair(fn, arg)
            resolved = self.resolve(items, lenient=lenient)
            try:
                return resolved[int(self.resolve(index))]
            except (IndexError, TypeError, ValueError) as exc:
                raise UnresolvableError(f"Fn::Select {arg!r}: {exc}") from exc
        if fn == "Fn::Split":
            delimiter, source = self._pair(fn, arg)
            return _scalar_str(self.resolve(source)).split(str(delimiter))
        if fn == "Fn::FindInMap":
            return self._find_in_map(arg)
        if fn == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if fn == "Fn::Base64":
            return base64.b64encode(_scalar_str(self.resolve(arg)).encode()).decode()
        if fn == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        if fn == "Fn::Length":
            resolved = self.resolve(arg)
            if not isinstance(resolved, list):
                raise UnresolvableError("Fn::Length needs a list")
            return len(resolved)
        if fn == "Fn::Equals":  # legal inside Conditions only; tolerate it elsewhere
            return self._eval_condition({fn: arg})
        # Fn::ImportValue, Fn::Cidr, Fn::Transform, ...: nothing local to give.
        raise UnresolvableError(f"{fn} is not evaluated locally")

    @staticmethod
    def _pair(fn: str, arg: Any) -> tuple[Any, Any]:
        if not isinstance(arg, list) or len(arg) != 2:
            raise UnresolvableError(f"malformed {fn} {arg!r}")
        return arg[0], arg[1]

    def _find_in_map(self, arg: Any) -> Any:
        if not isinstance(arg, list) or len(arg) not in (3, 4):
            raise UnresolvableError(f"malformed Fn::FindInMap {arg!r}")
        keys = [_scalar_str(self.resolve(k)) for k in arg[:3]]
        try:
            return self.resolve(self._section("Mappings")[keys[0]][keys[1]][keys[2]])
        except (KeyError, TypeError):
            if len(arg) == 4 and isinstance(arg[3], Mapping) and "DefaultValue" in arg[3]:
                return self.resolve(arg[3]["DefaultValue"])
            raise UnresolvableError(f"no mapping entry {keys}") from None

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], Mapping):
            text, variables = arg[0], {str(k): self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}
        if not isinstance(text, str):
            raise UnresolvableError(f"malformed Fn::Sub {arg!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} is an escape
            if name in variables:
                return _scalar_str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return _scalar_str(self.get_att(resource, attribute))
            value = self.ref(name)
            if isinstance(value, list):
                raise UnresolvableError(f"${{{name}}} is a list")
            return _scalar_str(value)

        return _SUB_VAR.sub(replace, text)

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com",
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"
            ),
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::NotificationARNs":
            return []
        if name in self._section("Parameters"):
            return self.parameter(name)
        if name in self.resources:
            return self.resources[name].ref
        raise UnresolvableError(f"!Ref {name}: not a parameter or a locally created resource")

    def get_att(self, logical_id: str, attribute: str) -> str:
        res = self.resources.get(logical_id)
        if res is None:
            raise UnresolvableError(f"!GetAtt {logical_id}.{attribute}: not a locally created resource")
        attrs: dict[str, str] = {"Arn": res.arn}
        if res.type == TOPIC:
            attrs |= {"TopicArn": res.arn, "TopicName": res.name}
        elif res.type == BUCKET:
            suffix = "amazonaws.com"
            attrs |= {
                "DomainName": f"{res.name}.s3.{suffix}",
                "RegionalDomainName": f"{res.name}.s3.{self.region}.{suffix}",
                "WebsiteURL": f"http://{res.name}.s3-website-{self.region}.{suffix}",
            }
        elif res.type == QUEUE:
            attrs |= {"QueueName": res.name, "QueueUrl": res.url or res.ref}
        if attribute not in attrs:
            raise UnresolvableError(f"!GetAtt {logical_id}.{attribute} is not known locally")
        return attrs[attribute]

    # -- physical names --

    def resource_condition_holds(self, resource: Mapping[str, Any]) -> bool:
        cond = resource.get("Condition")
        return cond is None or self.condition(str(cond))

    def local_resource(self, logical_id: str, resource: Mapping[str, Any]) -> LocalResource:
        """The name, ARN and ``!Ref`` value a created resource gets (before it exists)."""
        type_ = str(resource.get("Type"))
        props = resource.get("Properties")
        props = props if isinstance(props, Mapping) else {}

        def prop_name(key: str) -> str | None:
            try:
                value = self.resolve(props.get(key))
            except UnresolvableError:
                log.warning("%s.%s cannot be resolved locally; using a generated name", logical_id, key)
                return None
            return _scalar_str(value) if value not in (None, NO_VALUE) else None

        generated = f"{self.stack_name}-{logical_id}"
        acct, region, part = self.account_id, self.region, self.partition
        if type_ == TABLE:
            name = prop_name("TableName") or generated
            arn = f"arn:{part}:dynamodb:{region}:{acct}:table/{name}"
            return LocalResource(logical_id=logical_id, type=type_, name=name, arn=arn, ref=name)
        if type_ == BUCKET:
            name = prop_name("BucketName") or generated.lower()[:63]
            return LocalResource(logical_id=logical_id, type=type_, name=name, arn=f"arn:{part}:s3:::{name}", ref=name)
        if type_ == TOPIC:
            name = prop_name("TopicName") or generated
            if _truthy(self._safe(props.get("FifoTopic"))) and not name.endswith(".fifo"):
                name += ".fifo"
            arn = f"arn:{part}:sns:{region}:{acct}:{name}"
            return LocalResource(logical_id=logical_id, type=type_, name=name, arn=arn, ref=arn)
        if type_ == QUEUE:
            name = prop_name("QueueName") or generated
            if _truthy(self._safe(props.get("FifoQueue"))) and not name.endswith(".fifo"):
                name += ".fifo"
            url = f"https://sqs.{region}.amazonaws.com/{acct}/{name}"
            arn = f"arn:{part}:sqs:{region}:{acct}:{name}"
            return LocalResource(logical_id=logical_id, type=type_, name=name, arn=arn, ref=url, url=url)
        raise LocalStackError(f"{logical_id}: {type_} is not created locally")

    def _safe(self, value: Any) -> Any:
        try:
            return self.resolve(value)
        except UnresolvableError:
            return None


def _scalar_str(value: Any) -> str:
    """How CloudFormation turns a scalar into a string (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value is NO_VALUE:
        raise UnresolvableError("no value")
    if isinstance(value, list | dict):
        raise UnresolvableError(f"{value!r} is not a scalar")
    return str(value)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _resources(template: Mapping[str, Any]) -> Mapping[str, Any]:
    resources = template.get("Resources")
    return resources if isinstance(resources, Mapping) else {}


def resolve_names(
    template: Mapping[str, Any],
    *,
    stack_name: str = LOCAL_STACK_NAME,
    account_id: str = LOCAL_ACCOUNT_ID,
    region: str = LOCAL_REGION,
    parameter_overrides: Mapping[str, str] | None = None,
    partitions: int = 3,
    topic_parameter: str = TRACES_TOPIC_PARAMETER,
) -> LocalNames:
    """Local names of every table, bucket, topic and queue the template declares (whose ``Condition``, if
    any, holds), and the Kafka topic named by the ``topic_parameter`` parameter."""
    ctx = TemplateContext(
        template,
        stack_name=stack_name,
        account_id=account_id,
        region=region,
        parameter_overrides=parameter_overrides,
    )
    for logical_id, resource in _resources(template).items():
        if not isinstance(resource, Mapping) or resource.get("Type") not in CREATED_TYPES:
            continue
        if not ctx.resource_condition_holds(resource):
            log.info("%s skipped locally: its condition is false or cannot be evaluated", logical_id)
            continue
        ctx.resources[str(logical_id)] = ctx.local_resource(str(logical_id), resource)
    try:
        topic = ctx.parameter(topic_parameter)
    except UnresolvableError as exc:
        raise LocalStackError(f"the template needs a parameter {topic_parameter} with a Default") from exc
    return LocalNames(
        stack_name=stack_name,
        account_id=account_id,
        region=region,
        parameters=ctx.parameter_values(),
        resources=ctx.resources,
        kafka_topic=str(topic),
        kafka_partitions=partitions,
    )


def context_for(template: Mapping[str, Any], names: LocalNames) -> TemplateContext:
    """A context that resolves ``!Ref``/``!GetAtt``/``!Sub`` to these local names."""
    return TemplateContext(
        template,
        stack_name=names.stack_name,
        account_id=names.account_id,
        region=names.region,
        parameter_overrides=names.parameters,
        resources=names.resources,
    )


# -- function environments ---------------------------------------------------------------------------


def function_ids(template: Mapping[str, Any]) -> list[str]:
    """Logical ids of the template's Lambda functions (SAM or plain)."""
    return [
        str(lid)
        for lid, res in _resources(template).items()
        if isinstance(res, Mapping) and res.get("Type") in FUNCTION_TYPES
    ]


def _variables(ctx: TemplateContext, environment: Any) -> dict[str, Any]:
    # Environment (or Variables) may itself be an !If; resolve just that level leniently.
    env = ctx.resolve(environment, lenient=True) if _is_intrinsic(environment) else environment
    if not isinstance(env, Mapping):
        return {}
    variables = env.get("Variables")
    if _is_intrinsic(variables):
        variables = ctx.resolve(variables, lenient=True)
    return dict(variables) if isinstance(variables, Mapping) else {}


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, Mapping) or len(value) != 1:
        return False
    key = next(iter(value))
    return key == "Ref" or (isinstance(key, str) and key.startswith("Fn::"))


def function_environment(template: Mapping[str, Any], function_logical_id: str, names: LocalNames) -> dict[str, str]:
    """The function's environment variables (SAM ``Globals.Function`` merged with its own, its own winning)
    with intrinsics resolved to the local names. A variable whose value cannot be resolved locally (a
    ``!GetAtt`` on a KMS key, an ``!ImportValue``, ...) is left out with a warning."""
    resource = _resources(template).get(function_logical_id)
    if not isinstance(resource, Mapping) or resource.get("Type") not in FUNCTION_TYPES:
        raise KeyError(f"{function_logical_id} is not a function in the template")
    ctx = context_for(template, names)
    merged: dict[str, Any] = {}
    if resource.get("Type") == "AWS::Serverless::Function":
        globals_ = template.get("Globals")
        function_globals = globals_.get("Function") if isinstance(globals_, Mapping) else None
        if isinstance(function_globals, Mapping):
            merged |= _variables(ctx, function_globals.get("Environment"))
    props = resource.get("Properties")
    if isinstance(props, Mapping):
        merged |= _variables(ctx, props.get("Environment"))
    env: dict[str, str] = {}
    for key, raw in merged.items():
        try:
            value = ctx.resolve(raw)
            if value is NO_VALUE:
                continue
            env[str(key)] = _scalar_str(value)
        except UnresolvableError as exc:
            log.warning("%s: environment variable %s left out locally (%s)", function_logical_id, key, exc)
    return env


# -- creating ----------------------------------------------------------------------------------------


class AwsClients:
    """boto3 clients for a local endpoint, with dummy credentials so no real account is ever touched."""

    def __init__(self, endpoint_url: str, region: str = LOCAL_REGION) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.region = region
        self._session = boto3.session.Session(
            aws_access_key_id=DUMMY_ACCESS_KEY, aws_secret_access_key=DUMMY_SECRET_KEY, region_name=region
        )
        # Current botocore may route DynamoDB to an account-id endpoint that moto does not serve.
        self._config = Config(account_id_endpoint_mode="disabled", retries={"max_attempts": 3, "mode": "standard"})

    # Clients are cached: creating one costs a few hundred milliseconds of botocore model loading.
    @functools.cached_property
    def _dynamodb(self) -> DynamoDBClient:
        return self._session.client("dynamodb", endpoint_url=self.endpoint_url, config=self._config)

    @functools.cached_property
    def _s3(self) -> S3Client:
        return self._session.client("s3", endpoint_url=self.endpoint_url, config=self._config)

    @functools.cached_property
    def _sns(self) -> SNSClient:
        return self._session.client("sns", endpoint_url=self.endpoint_url, config=self._config)

    @functools.cached_property
    def _sqs(self) -> SQSClient:
        return self._session.client("sqs", endpoint_url=self.endpoint_url, config=self._config)

    def dynamodb(self) -> DynamoDBClient:
        return self._dynamodb

    def s3(self) -> S3Client:
        return self._s3

    def sns(self) -> SNSClient:
        return self._sns

    def sqs(self) -> SQSClient:
        return self._sqs


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def create_aws_resources(template: Mapping[str, Any], names: LocalNames, endpoint_url: str) -> LocalNames:
    """Create (idempotently) every table, bucket, topic and queue in ``names`` at ``endpoint_url``.

    Returns ``names`` updated with what the endpoint reports (topic ARNs, queue URLs)."""
    ctx = context_for(template, names)
    clients = AwsClients(endpoint_url, names.region)
    resources = _resources(template)
    updated = dict(names.resources)
    order = {TABLE: 0, BUCKET: 1, TOPIC: 2, QUEUE: 3}
    for logical_id, local in sorted(names.resources.items(), key=lambda kv: order.get(kv[1].type, 9)):
        spec = resources.get(logical_id)
        raw_props = spec.get("Properties") if isinstance(spec, Mapping) else None
        props = ctx.resolve(raw_props, lenient=True) if isinstance(raw_props, Mapping) else {}
        if local.type == TABLE:
            _create_table(clients.dynamodb(), local.name, props)
        elif local.type == BUCKET:
            _create_bucket(clients.s3(), local.name, names.region, props)
        elif local.type == TOPIC:
            arn = _create_topic(clients.sns(), local.name, props)
            updated[logical_id] = local.model_copy(update={"arn": arn, "ref": arn})
        elif local.type == QUEUE:
            url = _create_queue(clients.sqs(), local.name, props)
            updated[logical_id] = local.model_copy(update={"url": url, "ref": url})
    return names.model_copy(update={"resources": updated})


def _create_table(ddb: DynamoDBClient, name: str, props: Mapping[str, Any]) -> None:
    billing = str(props.get("BillingMode", "PROVISIONED"))  # CloudFormation's default, not DynamoDB's

    def throughput(spec: Any) -> dict[str, int]:
        spec = spec if isinstance(spec, Mapping) else {}
        return {
            "ReadCapacityUnits": int(spec.get("ReadCapacityUnits", 5)),
            "WriteCapacityUnits": int(spec.get("WriteCapacityUnits", 5)),
        }

    def index(spec: Mapping[str, Any], with_throughput: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "IndexName": spec["IndexName"],
            "KeySchema": spec["KeySchema"],
            "Projection": spec.get("Projection", {"ProjectionType": "ALL"}),
        }
        if with_throughput and billing == "PROVISIONED":
            out["ProvisionedThroughput"] = throughput(spec.get("ProvisionedThroughput"))
        return out

    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = throughput(props.get("ProvisionedThroughput"))
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = [index(g, True) for g in props["GlobalSecondaryIndexes"]]
    if props.get("LocalSecondaryIndexes"):
        kwargs["LocalSecondaryIndexes"] = [index(lsi, False) for lsi in props["LocalSecondaryIndexes"]]
    stream = props.get("StreamSpecification")
    if isinstance(stream, Mapping) and stream.get("StreamViewType"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    try:
        ddb.create_table(**kwargs)
        log.info("created table %s", name)
    except ddb.exceptions.ResourceInUseException:
        log.info("table %s already exists", name)
    ttl = props.get("TimeToLiveSpecification")
    if isinstance(ttl, Mapping) and _truthy(ttl.get("Enabled")) and ttl.get("AttributeName"):
        current = ddb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": str(ttl["AttributeName"])}
            )


def _create_bucket(s3: S3Client, name: str, region: str, props: Mapping[str, Any]) -> None:
    from botocore.exceptions import ClientError

    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)  # us-east-1 rejects an explicit LocationConstraint
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
        log.info("created bucket %s", name)
    except ClientError as exc:
        if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        log.info("bucket %s already exists", name)
    versioning = props.get("VersioningConfiguration")
    if isinstance(versioning, Mapping) and versioning.get("Status") in ("Enabled", "Suspended"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})


def _create_topic(sns: SNSClient, name: str, props: Mapping[str, Any]) -> str:
    attributes: dict[str, str] = {}
    if name.endswith(".fifo"):
        attributes["FifoTopic"] = "true"
        if _truthy(props.get("ContentBasedDeduplication")):
            attributes["ContentBasedDeduplication"] = "true"
    # CreateTopic is idempotent: it returns the existing topic's ARN.
    arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    log.info("topic %s ready", arn)
    return arn


def _create_queue(sqs: SQSClient, name: str, props: Mapping[str, Any]) -> str:
    attributes = {
        key: _scalar_str(props[key])
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")
        if key in props
    }
    if name.endswith(".fifo"):
        attributes["FifoQueue"] = "true"
        if _truthy(props.get("ContentBasedDeduplication")):
            attributes["ContentBasedDeduplication"] = "true"
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    except sqs.exceptions.QueueNameExists:
        # Same name, different attributes: keep the existing queue rather than fail a rerun.
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    log.info("queue %s ready", url)
    return url


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
    import time

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


def create_resources(
    template: Mapping[str, Any],
    names: LocalNames,
    *,
    endpoint_url: str,
    bootstrap_servers: str | None,
) -> LocalNames:
    """Create the AWS resources at ``endpoint_url`` and, with a broker, the Kafka topic. Idempotent."""
    updated = create_aws_resources(template, names, endpoint_url)
    if bootstrap_servers:
        create_kafka_topic(bootstrap_servers, names.kafka_topic, names.kafka_partitions)
    return updated
