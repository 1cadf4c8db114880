"""Reading a handler's answer: a partial batch response, a malformed one, or a raised error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cotwatch.kafka_event import KafkaRecord
from cotwatch_local.poller.records import TP, partition_key


@dataclass(frozen=True)
class BatchVerdict:
    """How Lambda reads an invocation: all succeeded, some records failed, or the whole batch failed."""

    outcome: Literal["success", "partial", "failure"]
    failed: Mapping[TP, frozenset[int]] = field(default_factory=dict)
    error: str | None = None
    malformed: tuple[str, ...] = ()
    response: Any = None

    @property
    def failed_count(self) -> int:
        return sum(len(offsets) for offsets in self.failed.values())


def verdict_for_error(exc: BaseException) -> BatchVerdict:
    return BatchVerdict(outcome="failure", error=f"{type(exc).__name__}: {exc}")


def _raised(verdict: BatchVerdict) -> bool:
    """A function error: the handler raised (as opposed to returning an unreadable response)."""
    return verdict.outcome == "failure" and not verdict.malformed


def parse_batch_response(response: Any, records: Sequence[KafkaRecord]) -> BatchVerdict:
    """Interpret a handler's return value as a Kafka partial batch response.

    Like Lambda: ``None``, no ``batchItemFailures`` or an empty list is complete success; identifiers that are
    null, empty, of the wrong shape or name a record that is not in the batch make the whole batch a failure.
    """
    if response is None or not isinstance(response, Mapping):
        return BatchVerdict(outcome="success", response=response)
    items = response.get("batchItemFailures")
    if items is None or items == []:
        return BatchVerdict(outcome="success", response=response)
    if not isinstance(items, list):
        shape = f"batchItemFailures must be a list, got {type(items).__name__}"
        return BatchVerdict(outcome="failure", error=shape, malformed=(shape,), response=response)
    in_batch: dict[str, tuple[TP, set[int]]] = {}
    for rec in records:
        tp = (rec.topic, rec.partition)
        in_batch.setdefault(partition_key(*tp), (tp, set()))[1].add(rec.offset)
    failed: dict[TP, set[int]] = {}
    problems: list[str] = []
    for index, item in enumerate(items):
        problem, hit = _check_identifier(item, in_batch)
        if problem:
            problems.append(f"batchItemFailures[{index}]: {problem}")
        elif hit is not None:
            failed.setdefault(hit[0], set()).add(hit[1])
    if problems:
        return BatchVerdict(
            outcome="failure",
            error="malformed partial batch response: " + "; ".join(problems),
            malformed=tuple(problems),
            response=response,
        )
    return BatchVerdict(
        outcome="partial",
        failed={tp: frozenset(offsets) for tp, offsets in failed.items()},
        response=response,
    )


def _check_identifier(
    item: Any, in_batch: Mapping[str, tuple[TP, set[int]]]
) -> tuple[str | None, tuple[TP, int] | None]:
    if not isinstance(item, Mapping) or "itemIdentifier" not in item:
        return f"expected an object with 'itemIdentifier', got {item!r}", None
    ident = item["itemIdentifier"]
    if not isinstance(ident, Mapping):
        return (
            f"itemIdentifier must be {{'partition': '<topic>-<n>', 'offset': <int>}}, got {ident!r}",
            None,
        )
    part, offset = ident.get("partition"), ident.get("offset")
    if not isinstance(part, str) or not part:
        return f"itemIdentifier.partition must be a '<topic>-<partition>' string, got {part!r}", None
    if not isinstance(offset, int) or isinstance(offset, bool):
        return f"itemIdentifier.offset must be an integer, got {offset!r}", None
    if part not in in_batch:
        return f"partition {part!r} is not in this batch", None
    tp, offsets = in_batch[part]
    if offset not in offsets:
        return f"offset {offset} of {part!r} is not in this batch", None
    return None, (tp, offset)
