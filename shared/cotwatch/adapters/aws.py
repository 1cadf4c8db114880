"""boto3 adapters for DynamoDB, SNS and S3.

boto3 honours ``AWS_ENDPOINT_URL``, so the same code talks to AWS or to the local moto server. Client types
come from the ``mypy_boto3_*`` stubs (type checking only: the layer does not carry them).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from cotwatch.alerts import Alert, AlertStatus, AuditEntry, Verdict, new_alert_item, plan_triage, plan_update
from cotwatch.contract import alert_message, digest_message
from cotwatch.cooldown import DueWindow, digest_for, digest_of
from cotwatch.detection.models import TraceState
from cotwatch.patterns import PART_DIMS, ChunkPatterns, EmbeddingSummary
from cotwatch.ports import AlertWrite, ChunkIdentity, CooldownDecision, CounterKey, DeadLetter, Digest, StoredAlert
from cotwatch.tracking import last_verdict, triage_increments

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient, DynamoDBServiceResource
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

# Adaptive retries back off on throttling instead of failing the record at the first 400.
BOTO_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=20)
MAX_TRANSACTION_ITEMS = 100


# Low-level DynamoDB attribute values ({"S": ...}, {"N": ...}) are boto3's business, not hand-built.
SERIALIZER = TypeSerializer()
DESERIALIZER = TypeDeserializer()


def dynamodb_resource() -> DynamoDBServiceResource:
    return boto3.resource("dynamodb", config=BOTO_CONFIG)


def dynamodb_client() -> DynamoDBClient:
    return boto3.client("dynamodb", config=BOTO_CONFIG)


def s3_client() -> S3Client:
    return boto3.client("s3", config=BOTO_CONFIG)


def sns_client() -> SNSClient:
    return boto3.client("sns", config=BOTO_CONFIG)


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: SERIALIZER.serialize(value) for name, value in values.items()}


def _to_dynamo(value: Any) -> Any:
    """DynamoDB wants Decimal, not float; round-tripping through JSON converts nested values too."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


COOLDOWN_PREFIX = "cooldown#"  # cooldown windows' partition keys in the counters table
DIGESTS_DUE_INDEX = "digests_due"  # sparse index of the windows holding alerts back (template.yaml)
DIGEST_DUE = "due"
MAX_CONFLICT_RETRIES = 8


class DynamoAlertStore:
    """Alerts with their lifecycle. Every change is a conditional write on the row's ``version``, so two
    writers (a redelivery racing the original, a scorer racing a person) cannot lose each other's change."""

    def __init__(
        self,
        table_name: str,
        ddb: DynamoDBServiceResource | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ttl_days: int = 365,
        counters_table: str | None = None,
        counter_ttl_days: int = 400,
    ) -> None:
        """``counters_table``: where a resolution's verdict is counted (``triage_<verdict>`` cells), in the same
        transaction as the resolution; None: verdicts are not counted (the scorer, which never resolves)."""
        self._name = table_name
        self._table = (ddb or dynamodb_resource()).Table(table_name)
        self._clock = clock
        self._ttl_s = ttl_days * 86400
        self._counters_table = counters_table
        self._counter_ttl_s = counter_ttl_days * 86400
        self._client: DynamoDBClient | None = None

    def _expires_at(self) -> int:
        """The table's TTL attribute: retention counts from the alert's last change by the scorer."""
        return int(self._clock().timestamp()) + self._ttl_s

    def save(self, alert: Alert) -> StoredAlert:
        try:
            self._table.put_item(
                Item=_to_dynamo({**new_alert_item(alert, self._clock()), "expires_at": self._expires_at()}),
                ConditionExpression="attribute_not_exists(alert_id)",
            )
            return StoredAlert(write=AlertWrite.CREATED, notified=False, event=AlertWrite.CREATED)
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
        for _ in range(MAX_CONFLICT_RETRIES):
            current = self.get(alert.alert_id)
            if current is None:
                raise RuntimeError(f"alert {alert.alert_id} vanished while being updated")
            plan = plan_update(current, alert, self._clock())
            if plan is None:
                return StoredAlert(
                    write=AlertWrite.UNCHANGED,
                    notified=bool(current.get("notified", False)),
                    event=AlertWrite(current.get("pending_event", "created")),
                )
            audit = [plan.audit.model_dump(mode="json")] if plan.audit is not None else []
            updates = {**plan.updates, "expires_at": self._expires_at()}
            if self._update(alert.alert_id, current, updates, audit) is None:
                continue  # someone else changed it: plan again on what they wrote
            if plan.event is None:
                return StoredAlert(
                    write=AlertWrite.UPDATED,
                    notified=bool(current.get("notified", False)),
                    event=AlertWrite(current.get("pending_event", "created")),
                )
            written = AlertWrite(plan.event.value)
            return StoredAlert(write=written, notified=False, event=written)
        raise RuntimeError(f"alert {alert.alert_id} kept changing under {MAX_CONFLICT_RETRIES} attempts")

    def _update(
        self, alert_id: str, current: Mapping[str, Any], updates: Mapping[str, Any], audit: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Apply ``updates`` (and append ``audit``) if the row is still at ``current``'s version."""
        expression, condition, names, values = _versioned_update(current, updates, audit)
        try:
            response = self._table.update_item(
                Key={"alert_id": alert_id},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            return None
        return dict(response.get("Attributes", {}))

    def _resolve_counted(
        self, alert_id: str, current: Mapping[str, Any], updates: Mapping[str, Any], entry: AuditEntry
    ) -> dict[str, Any] | None:
        """The resolution and its verdict's counter cells in one transaction. The alert's version condition is
        what makes the count exact: a repeated or racing resolve finds the alert resolved (or moved on) and adds
        nothing; the request token turns an SDK retry of a transaction that did commit into a success."""
        assert self._counters_table is not None and entry.verdict is not None
        increments = triage_increments(current, entry.verdict.value, entry.at, last_verdict(current))
        if len(increments) + 1 > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(increments)} counters exceed one DynamoDB transaction")
        expression, condition, names, values = _versioned_update(current, updates, [entry.model_dump(mode="json")])
        expires = int(time.time()) + self._counter_ttl_s
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._name,
                    "Key": _attributes({"alert_id": alert_id}),
                    "UpdateExpression": expression,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": _attributes(values),
                }
            },
            *(counter_update(self._counters_table, key, n, expires) for key, n in increments.items()),
        ]
        token = hashlib.sha256(f"{alert_id}\x1f{current.get('version')}\x1f{entry.verdict.value}".encode())
        if self._client is None:
            self._client = dynamodb_client()
        try:
            self._client.transact_write_items(TransactItems=items, ClientRequestToken=token.hexdigest()[:36])
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return None  # someone else changed the alert: plan again on what they wrote
            raise
        return self.get(alert_id)

    def mark_notified(self, alert: Alert) -> None:
        self._table.update_item(
            Key={"alert_id": alert.alert_id},
            UpdateExpression="SET notified = :t",
            ExpressionAttributeValues={":t": True},
        )

    def get(self, alert_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"alert_id": alert_id}, ConsistentRead=True).get("Item")
        return dict(item) if item is not None else None

    def acknowledge(self, alert_id: str, who: str, note: str | None = None) -> dict[str, Any]:
        return self._triage(alert_id, AlertStatus.ACKNOWLEDGED, who, None, note)

    def resolve(self, alert_id: str, verdict: Verdict, who: str, note: str | None = None) -> dict[str, Any]:
        return self._triage(alert_id, AlertStatus.RESOLVED, who, verdict, note)

    def _triage(
        self, alert_id: str, to: AlertStatus, who: str, verdict: Verdict | None, note: str | None
    ) -> dict[str, Any]:
        for _ in range(MAX_CONFLICT_RETRIES):
            current = self.get(alert_id)
            updates, entry = plan_triage(current, alert_id, to, who, self._clock(), verdict, note)
            assert current is not None  # plan_triage raised otherwise
            if to is AlertStatus.RESOLVED and self._counters_table is not None:
                written = self._resolve_counted(alert_id, current, updates, entry)
            else:
                written = self._update(alert_id, current, updates, [entry.model_dump(mode="json")])
            if written is not None:
                return written
        raise RuntimeError(f"alert {alert_id} kept changing under {MAX_CONFLICT_RETRIES} attempts")


def _versioned_update(
    current: Mapping[str, Any], updates: Mapping[str, Any], audit: list[dict[str, Any]]
) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    """Expression, condition, names and values that set ``updates`` (and append ``audit``) on an alert row still
    at ``current``'s version, moving it to the next version."""
    names = {f"#f{i}": k for i, k in enumerate(updates)}
    values: dict[str, Any] = {f":f{i}": v for i, v in enumerate(_to_dynamo(list(updates.values())))}
    sets = [f"#f{i} = :f{i}" for i in range(len(updates))]
    version = current.get("version")
    sets.append("#version = :next")
    names["#version"] = "version"
    values[":next"] = int(version or 0) + 1
    if audit:
        names["#audit"] = "audit"
        values[":audit"] = _to_dynamo(audit)
        values[":none"] = []
        sets.append("#audit = list_append(if_not_exists(#audit, :none), :audit)")
    if version is None:
        condition = "attribute_exists(alert_id) AND attribute_not_exists(#version)"
    else:
        condition = "#version = :version"
        values[":version"] = version
    return "SET " + ", ".join(sets), condition, names, values


class DynamoCooldownStore:
    """Cooldown windows as rows of the counters table (``pk = cooldown#tenant#model#category``, ``sk =
    window``), beside the hour counters and markers (which no query of them confuses with a window); they
    expire a day after their window. Only UpdateItem is used, so the scorer needs no read grant there."""

    def __init__(self, table_name: str, ddb: DynamoDBServiceResource | None = None) -> None:
        self._table = (ddb or dynamodb_resource()).Table(table_name)

    def admit(self, alert: Alert, now: datetime, window_seconds: int) -> CooldownDecision:
        key = {"pk": f"{COOLDOWN_PREFIX}{alert.tenant}#{alert.model}#{alert.category}", "sk": "window"}
        now_s = Decimal(str(round(now.timestamp(), 3)))
        cutoff = now_s - window_seconds
        expires = int(now.timestamp()) + window_seconds + 86400
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                old = self._table.update_item(
                    Key=key,
                    # The scope is kept on the row for the flush; digest_due leaves the digests_due index with
                    # the old window (its digest goes out with this alert).
                    UpdateExpression="SET window_start = :now, opener = :id, members = :empty, expires_at = :exp, "
                    "tenant = :t, model = :m, category = :c REMOVE digest_due",
                    ConditionExpression="attribute_not_exists(pk) OR window_start < :cutoff",
                    ExpressionAttributeValues={
                        ":now": now_s,
                        ":id": alert.alert_id,
                        ":empty": {},
                        ":cutoff": cutoff,
                        ":exp": expires,
                        ":t": alert.tenant,
                        ":m": alert.model,
                        ":c": alert.category,
                    },
                    ReturnValues="ALL_OLD",
                ).get("Attributes")
                window = {"start": old["window_start"], "members": old.get("members", {})} if old else None
                return CooldownDecision(notify=True, digest=digest_of(alert, window, window_seconds))
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
            try:
                new = self._table.update_item(
                    Key=key,
                    # Holding one back puts the window in the sparse digests_due index, for the flush.
                    UpdateExpression="SET members.#id = :severity, digest_due = :due",
                    ConditionExpression="window_start >= :cutoff AND opener <> :id",
                    ExpressionAttributeNames={"#id": alert.alert_id},
                    ExpressionAttributeValues={
                        ":severity": alert.severity,
                        ":id": alert.alert_id,
                        ":cutoff": cutoff,
                        ":due": DIGEST_DUE,
                    },
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )["Attributes"]
                members = new.get("members", {})
                return CooldownDecision(notify=False, suppressed=len(members) if isinstance(members, dict) else 0)
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
                returned: Any = exc.response.get("Item")  # ReturnValuesOnConditionCheckFailure: no GetItem grant
                current: dict[str, Any] = dict(returned) if isinstance(returned, dict) else {}
            opener = current.get("opener")
            if isinstance(opener, dict):  # the low-level form {"S": ...}
                opener = opener.get("S")
            if opener == alert.alert_id:
                return CooldownDecision(notify=True)  # it opened this window: a redelivery, let it through
            # else the window closed between the two writes: try again
        raise RuntimeError(f"cooldown window of {key['pk']} kept changing")

    def due(self, now: datetime, window_seconds: int) -> list[DueWindow]:
        """Ended windows holding alerts back: one Query of the digests_due index, never a scan."""
        cutoff = Decimal(str(round(now.timestamp(), 3))) - window_seconds
        found: list[DueWindow] = []
        kwargs: dict[str, Any] = {
            "IndexName": DIGESTS_DUE_INDEX,
            "KeyConditionExpression": Key("digest_due").eq(DIGEST_DUE) & Key("window_start").lt(cutoff),
        }
        while True:
            page = self._table.query(**kwargs)
            for item in page.get("Items", []):
                window = {"start": item["window_start"], "members": item.get("members", {})}
                scope = (str(item["tenant"]), str(item["model"]), str(item["category"]))
                digest = digest_for(*scope, window, window_seconds)
                if digest is not None:
                    found.append(DueWindow(digest=digest, token=(str(item["pk"]), item["window_start"])))
            last = page.get("LastEvaluatedKey")
            if last is None:
                return found
            kwargs["ExclusiveStartKey"] = last

    def settle(self, window: DueWindow) -> bool:
        pk, start = window.token
        try:
            self._table.update_item(
                Key={"pk": pk, "sk": "window"},
                UpdateExpression="SET members = :empty REMOVE digest_due",
                ConditionExpression="window_start = :start AND attribute_exists(digest_due)",
                ExpressionAttributeValues={":empty": {}, ":start": start},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            return False  # a new window opened meanwhile (and sent this digest itself)
        return True


class SnsAlertPublisher:
    def __init__(self, topic_arn: str, sns: SNSClient | None = None) -> None:
        self._topic_arn = topic_arn
        self._sns = sns or sns_client()

    def publish(self, alert: Alert, event: AlertWrite) -> None:
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "Number" if isinstance(value, int) else "String", "StringValue": str(value)}
            for name, value in alert.message_attributes().items()
        }
        attributes["event"] = {"DataType": "String", "StringValue": event.value}
        self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=f"cotwatch {alert.category} severity {alert.severity}"[:100],
            Message=alert_message(alert, event.value),
            MessageAttributes=attributes,
        )

    def publish_digest(self, digest: Digest) -> None:
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            "category": {"DataType": "String", "StringValue": digest.category},
            "severity": {"DataType": "Number", "StringValue": str(digest.severity)},
            "tenant": {"DataType": "String", "StringValue": digest.tenant},
            "model": {"DataType": "String", "StringValue": digest.model},
            "event": {"DataType": "String", "StringValue": "digest"},
        }
        self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=f"cotwatch {digest.category}: {digest.count} more alerts"[:100],
            Message=digest_message(digest),
            MessageAttributes=attributes,
        )


class DynamoTraceStateStore:
    def __init__(self, table_name: str, ttl_days: int = 7, ddb: DynamoDBServiceResource | None = None) -> None:
        self._ddb = ddb or dynamodb_resource()
        self._name = table_name
        self._table = self._ddb.Table(table_name)
        self._ttl_s = ttl_days * 86400

    def get_many(self, trace_keys: Iterable[str]) -> dict[str, TraceState]:
        keys = sorted(set(trace_keys))
        found: dict[str, TraceState] = {}
        for i in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self._name: {"Keys": [{"trace_key": k} for k in keys[i : i + 100]], "ConsistentRead": True}
            }
            for attempt in range(8):
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._name, []):
                    found[str(item["trace_key"])] = TraceState.model_validate_json(str(item["state"]))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            if request:
                raise RuntimeError(f"trace state reads still unprocessed after retries: {len(request)}")
        return found

    def put(self, state: TraceState) -> None:
        try:
            self._table.put_item(
                Item={
                    "trace_key": state.trace_key,
                    "last_seq": state.last_seq,
                    "state": state.model_dump_json(),
                    "expires_at": int(time.time()) + self._ttl_s,
                },
                # A redelivered older chunk must not roll the state back.
                ConditionExpression="attribute_not_exists(trace_key) OR last_seq <= :seq",
                ExpressionAttributeValues={":seq": state.last_seq},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise


class DynamoCounterStore:
    def __init__(self, table_name: str, ttl_days: int = 400, ddb_client: DynamoDBClient | None = None) -> None:
        self._client = ddb_client or dynamodb_client()
        self._name = table_name
        self._ttl_s = ttl_days * 86400

    def apply_once(
        self,
        marker: str,
        increments: Mapping[CounterKey, int],
        identity: ChunkIdentity | None = None,
        embedding: EmbeddingSummary | None = None,
    ) -> bool:
        claims = 1 if identity is None else 2
        parts = embedding_parts(self._name, embedding, int(time.time()) + self._ttl_s) if embedding else []
        if len(increments) + claims + len(parts) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(increments)} counters and {len(parts)} embedding parts exceed one transaction")
        expires = int(time.time()) + self._ttl_s
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._name,
                    "Item": _attributes({"pk": f"marker#{marker}", "sk": "marker", "expires_at": expires}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        if identity is not None:  # claimed in the same transaction: a duplicate at a new offset changes nothing
            item = {"pk": f"chunk#{identity.key}", "sk": "identity", "fingerprint": identity.fingerprint}
            items.append(
                {
                    "Put": {
                        "TableName": self._name,
                        "Item": _attributes({**item, "expires_at": expires}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        items.extend(counter_update(self._name, key, amount, expires) for key, amount in increments.items())
        items.extend(parts)
        try:
            self._client.transact_write_items(TransactItems=items)
            return True
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons[:claims]):
                return False
            raise

    def identities(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 100):  # BatchGetItem reads at most 100 keys
            request: dict[str, Any] = {
                self._name: {
                    "Keys": [_attributes({"pk": f"chunk#{k}", "sk": "identity"}) for k in wanted[start : start + 100]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "pk, fingerprint",
                }
            }
            for _ in range(8):  # unprocessed keys are a partial answer to ask again, not an error
                page = self._client.batch_get_item(RequestItems=request)
                for raw in page.get("Responses", {}).get(self._name, []):
                    row = {n: DESERIALIZER.deserialize(v) for n, v in raw.items()}
                    found[str(row["pk"]).removeprefix("chunk#")] = str(row.get("fingerprint", ""))
                request = dict(page.get("UnprocessedKeys") or {})
                if not request:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("BatchGetItem left chunk identities unread after 8 attempts")
        return found

    def applied(self, marker: str) -> bool:
        item = self._client.get_item(
            TableName=self._name,
            Key=_attributes({"pk": f"marker#{marker}", "sk": "marker"}),
            ConsistentRead=True,
        ).get("Item")
        return item is not None

    def embedding_hour(self, hour: str) -> list[EmbeddingSummary]:
        """The (tenant, model) embedding summaries of one UTC hour, reassembled from their parts."""
        parts: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _attributes({":pk": f"{EMBEDDING_PREFIX}{hour}"}),
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**kwargs)
            for raw in page.get("Items", []):
                item = {name: DESERIALIZER.deserialize(value) for name, value in raw.items()}
                parts.setdefault((str(item["tenant"]), str(item["model"])), {})[int(item["part"])] = item
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        out: list[EmbeddingSummary] = []
        for (tenant, model), by_part in sorted(parts.items()):
            dims = int(by_part[0]["dims"])
            sums = [int(by_part[j // PART_DIMS].get(f"s{j:03d}", 0)) for j in range(dims)]
            squares = [int(by_part[j // PART_DIMS].get(f"q{j:03d}", 0)) for j in range(dims)]
            out.append(
                EmbeddingSummary(
                    hour=hour,
                    tenant=tenant,
                    model=model,
                    windows=int(by_part[0]["n"]),
                    sums=tuple(sums),
                    squares=tuple(squares),
                )
            )
        return out

    def hour(self, hour: str) -> list[dict[str, Any]]:
        """All counter cells of one UTC hour (the roll-up reads these)."""
        rows: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _attributes({":pk": f"hour#{hour}"}),
        }
        while True:
            page = self._client.query(**kwargs)
            for raw in page.get("Items", []):
                item = {name: DESERIALIZER.deserialize(value) for name, value in raw.items()}
                rows.append(
                    {
                        "hour": hour,
                        "tenant": item["tenant"],
                        "model": item["model"],
                        "metric": item["metric"],
                        "category": item["category"],
                        "count": int(item["count"]),
                    }
                )
            if "LastEvaluatedKey" not in page:
                return rows
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def counter_update(table: str, key: CounterKey, amount: int, expires: int) -> TransactWriteItemTypeDef:
    """A transaction item adding ``amount`` to one hour counter cell."""
    return {
        "Update": {
            "TableName": table,
            "Key": _attributes({"pk": f"hour#{key.hour}", "sk": counter_sort_key(key)}),
            "UpdateExpression": "ADD #count :n SET tenant = :t, model = :m, metric = :x, category = :c, expires_at = :e",
            "ExpressionAttributeNames": {"#count": "count"},
            "ExpressionAttributeValues": _attributes(
                {":n": amount, ":t": key.tenant, ":m": key.model, ":x": key.metric, ":c": key.category, ":e": expires}
            ),
        }
    }


EMBEDDING_PREFIX = "embedding#"  # embedding summaries' partition keys in the counters table (pk = embedding#hour)


def embedding_parts(table: str, summary: EmbeddingSummary, expires: int) -> list[TransactWriteItemTypeDef]:
    """Transaction items adding a chunk's embedding summary to its (tenant, model, hour) summary: one item per
    ``PART_DIMS`` dimensions (``sNNN`` sums, ``qNNN`` sums of squares, ``n`` windows), integers added with ADD."""
    items: list[TransactWriteItemTypeDef] = []
    for part, start in enumerate(range(0, summary.dims, PART_DIMS)):
        dims = range(start, min(start + PART_DIMS, summary.dims))
        adds = ["n :n"] + [f"s{j:03d} :s{j:03d}" for j in dims] + [f"q{j:03d} :q{j:03d}" for j in dims]
        values: dict[str, Any] = {":n": summary.windows, ":t": summary.tenant, ":m": summary.model, ":e": expires}
        values |= {f":s{j:03d}": summary.sums[j] for j in dims} | {f":q{j:03d}": summary.squares[j] for j in dims}
        values |= {":d": summary.dims, ":p": part}
        items.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": _attributes(
                        {
                            "pk": f"{EMBEDDING_PREFIX}{summary.hour}",
                            "sk": f"{summary.tenant}#{summary.model}#{part:03d}",
                        }
                    ),
                    "UpdateExpression": "ADD "
                    + ", ".join(adds)
                    + " SET tenant = :t, model = :m, dims = :d, part = :p, expires_at = :e",
                    "ExpressionAttributeValues": _attributes(values),
                }
            }
        )
    return items


def counter_sort_key(key: CounterKey) -> str:
    return f"{key.tenant}#{key.model}#{key.metric}#{key.category}"


class S3PatternSink:
    """A chunk's suspicious windows as one JSON object, keyed by a digest of the record's effect id (rewritten
    whole on redelivery): ``<prefix>windows/dt=YYYY-MM-DD/hh=HH/<digest>.json``."""

    def __init__(self, bucket: str, prefix: str = "patterns/", s3: S3Client | None = None) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._s3 = s3 or s3_client()

    def write(self, patterns: ChunkPatterns) -> str:
        day, hh = patterns.hour.split("T")
        digest = hashlib.sha256(patterns.effect_id.encode()).hexdigest()[:32]
        key = f"{self._prefix}windows/dt={day}/hh={hh}/{digest}.json"
        self._s3.put_object(
            Bucket=self._bucket, Key=key, Body=patterns.model_dump_json().encode(), ContentType="application/json"
        )
        return f"s3://{self._bucket}/{key}"


class S3DeadLetterSink:
    def __init__(self, bucket: str, prefix: str = "dead-letters/", s3: S3Client | None = None) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._s3 = s3 or s3_client()

    def write(self, letter: DeadLetter) -> str:
        key = f"{self._prefix}{letter.topic}/{letter.partition}/{letter.offset:020d}.json"
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=letter.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
        return f"s3://{self._bucket}/{key}"
