"""The chaos run's moto server: transactions roll back the items they touched, not copies of whole tables.

moto's own ``TransactWriteItems`` deep-copies each table it names, so a run of N chunks (one transaction
each, two new counter-table items each) copied O(N^2) items and looked like a poller hung after the broker
restart. These tests pin the replacement: the same all-or-nothing result over the real server process, and
a transaction cost that does not grow with the table.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

from cotwatch_local.chaos import _start_moto, rollback_touched_items_only

TABLE = "chaos-counters"


def _client(endpoint: str | None = None) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _create_table(ddb: Any) -> None:
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def _claim_and_count(marker: str, counter_sk: str = "cell") -> list[dict[str, Any]]:
    """The counters store's shape: a conditional marker put plus a counter ADD, in one transaction."""
    return [
        {
            "Put": {
                "TableName": TABLE,
                "Item": {"pk": {"S": f"marker#{marker}"}, "sk": {"S": "marker"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "Update": {
                "TableName": TABLE,
                "Key": {"pk": {"S": "hour#h"}, "sk": {"S": counter_sk}},
                "UpdateExpression": "ADD #c :n",
                "ExpressionAttributeNames": {"#c": "count"},
                "ExpressionAttributeValues": {":n": {"N": "1"}},
            }
        },
    ]


def _count(ddb: Any, sk: str = "cell") -> int:
    item = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "hour#h"}, "sk": {"S": sk}}, ConsistentRead=True)
    return int(item.get("Item", {}).get("count", {}).get("N", "0"))


@pytest.fixture(scope="module")
def chaos_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    moto = _start_moto(Path(tmp_path_factory.mktemp("chaos-moto")))
    try:
        yield f"http://127.0.0.1:{moto.port}"
    finally:
        moto.stop()


def test_a_failed_transaction_leaves_every_touched_item_as_it_was(chaos_moto: str) -> None:
    # Given the chaos run's moto server, a table, and one chunk already counted
    ddb = _client(chaos_moto)
    _create_table(ddb)
    ddb.transact_write_items(TransactItems=_claim_and_count("a"))
    # When a transaction claims a new marker and bumps the counter, then fails on the old marker
    failing = [*_claim_and_count("c"), _claim_and_count("a")[0]]
    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(TransactItems=failing)
    # Then it is cancelled for that marker, and the writes applied before it are undone
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in raised.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert "Item" not in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "marker#c"}, "sk": {"S": "marker"}})
    assert _count(ddb) == 1
    # And a transaction that succeeds applies all of its writes
    ddb.transact_write_items(TransactItems=_claim_and_count("b", counter_sk="new-cell"))
    assert _count(ddb, "new-cell") == 1
    assert "Item" in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "marker#b"}, "sk": {"S": "marker"}})


def test_a_transaction_copies_no_items_of_a_large_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given moto in process with the chaos run's rollback (undone after the test) and a 2,000-item table
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", DynamoDBBackend.transact_write_items)
    monkeypatch.setattr(Table, "__deepcopy__", None, raising=False)  # absent before: deleted on undo
    rollback_touched_items_only()
    copies = 0
    item_deepcopy = Item.__deepcopy__

    def counted(self: Item, memo: dict[int, Any]) -> Item:
        nonlocal copies
        copies += 1
        return item_deepcopy(self, memo)

    monkeypatch.setattr(Item, "__deepcopy__", counted)
    with mock_aws():
        ddb = _client()
        _create_table(ddb)
        for start in range(0, 2000, 25):
            puts = [{"PutRequest": {"Item": {"pk": {"S": f"marker#{i}"}, "sk": {"S": "marker"}}}} for i in range(start, start + 25)]  # fmt: skip
            ddb.batch_write_item(RequestItems={TABLE: puts})
        # When one transaction succeeds and one is cancelled
        copies = 0
        ddb.transact_write_items(TransactItems=_claim_and_count("new"))
        with pytest.raises(ClientError):
            ddb.transact_write_items(TransactItems=_claim_and_count("7"))
        # Then only a handful of items were copied (moto's own rollback copies all 2,000 per transaction)
        assert copies < 20
        assert _count(ddb) == 1
    # And deep-copying a table outside a transaction is still a real copy
    original = Table.__new__(Table)
    original.__dict__["items"] = {"k": [1]}
    clone = copy.deepcopy(original)
    assert clone is not original and clone.__dict__["items"] == {"k": [1]}
    assert clone.__dict__["items"]["k"] is not original.__dict__["items"]["k"]
