"""Embedding summaries and suspicious windows on DynamoDB and S3 (moto server) and in memory: the same contract."""

from __future__ import annotations

import json
import uuid

import boto3
import numpy as np
import pytest

from cotwatch.adapters.aws import DynamoCounterStore, S3PatternSink
from cotwatch.adapters.memory import MemoryCounterStore
from cotwatch.patterns import QUANT, ChunkPatterns, EmbeddingSummary, combine
from cotwatch.ports import CounterKey
from cotwatch_local.cloudformation import LocalNames

pytestmark = pytest.mark.integration
HOUR = "2026-12-07T14"


def _summary(tenant: str, rows: np.ndarray) -> EmbeddingSummary:
    q = np.rint(rows * QUANT).astype(np.int64)
    return EmbeddingSummary(
        hour=HOUR,
        tenant=tenant,
        model="reasoner-large",
        windows=rows.shape[0],
        sums=tuple(int(v) for v in q.sum(axis=0)),
        squares=tuple(int(v) for v in (q * q).sum(axis=0)),
    )


@pytest.mark.parametrize("backend", ["memory", "dynamodb"])
def test_embedding_summaries_add_up_exactly_once(backend: str, request: pytest.FixtureRequest) -> None:
    # Given a counter store and three chunks' summaries of 384-dimensional window embeddings (6 parts each)
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    if backend == "memory":
        store: MemoryCounterStore | DynamoCounterStore = MemoryCounterStore()
    else:
        request.getfixturevalue("local_aws_env")
        store = DynamoCounterStore(request.getfixturevalue("local_aws_names").name("CountersTable"))
    rng = np.random.default_rng(7)
    chunks = [rng.normal(size=(n, 384)) / 20 for n in (3, 1, 4)]
    summaries = [_summary(tenant, rows) for rows in chunks]
    key = CounterKey(hour=HOUR, tenant=tenant, model="reasoner-large", metric="chunks")
    # When each is applied with its counters, and the second is redelivered
    for i, summary in enumerate(summaries):
        assert store.apply_once(f"{tenant}-{i}", {key: 1}, embedding=summary) is True
    assert store.apply_once(f"{tenant}-1", {key: 1}, embedding=summaries[1]) is False
    # Then the hour holds one summary of the tenant's model: the exact sum of the three, nothing twice
    (got,) = [s for s in store.embedding_hour(HOUR) if s.tenant == tenant]
    expected = combine(summaries, HOUR, tenant)
    assert expected is not None and got == expected.model_copy(update={"model": "reasoner-large"})
    assert got.windows == 8
    np.testing.assert_allclose(got.mean(), np.vstack(chunks).mean(axis=0), atol=1e-4)
    # And the counter cells beside it are still just the counters
    assert [r["count"] for r in store.hour(HOUR) if r["tenant"] == tenant] == [3]


def test_suspicious_windows_land_under_a_key_of_the_record(
    local_aws_names: LocalNames, local_aws_env: dict[str, str]
) -> None:
    # Given a chunk's patterns and the data bucket
    bucket = local_aws_names.name("DataBucket")
    sink = S3PatternSink(bucket, prefix=f"patterns-{uuid.uuid4().hex[:6]}/")
    patterns = ChunkPatterns(effect_id="traces-0@42", hour=HOUR, windows=())
    # When it is written twice (a redelivery)
    first, second = sink.write(patterns), sink.write(patterns)
    # Then it is one object under the hour's partition, holding the patterns
    assert first == second and "/windows/dt=2026-12-07/hh=14/" in first
    key = first.removeprefix(f"s3://{bucket}/")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert ChunkPatterns.model_validate(json.loads(body)) == patterns
