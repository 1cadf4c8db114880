"""A local stand-in for Lambda's self-managed Kafka event source mapping (see :mod:`.event_source`).

Split along the ESM's own concerns: :mod:`.records` (consumer records to event records, event sizes),
:mod:`.batching`, :mod:`.responses` (reading a partial batch response), :mod:`.retries`, :mod:`.destinations`
(on-failure), :mod:`.config` (settings and stats) and :mod:`.event_source`, the poller that moves records
between them and a Kafka consumer.
"""

from cotwatch_local.poller.batching import Batch, BatchAccumulator
from cotwatch_local.poller.config import PollerConfig, PollerStats
from cotwatch_local.poller.destinations import FailedRecords, InMemoryDestination, OnFailureDestination, S3Destination
from cotwatch_local.poller.event_source import EventSourcePoller
from cotwatch_local.poller.records import EventSizer, group_by_partition, partition_key, record_from_consumer
from cotwatch_local.poller.responses import BatchVerdict, parse_batch_response, verdict_for_error
from cotwatch_local.poller.retries import PartitionAction, RetryTracker, leading_expired

__all__ = [
    "Batch",
    "BatchAccumulator",
    "BatchVerdict",
    "EventSizer",
    "EventSourcePoller",
    "FailedRecords",
    "InMemoryDestination",
    "OnFailureDestination",
    "PartitionAction",
    "PollerConfig",
    "PollerStats",
    "RetryTracker",
    "S3Destination",
    "group_by_partition",
    "leading_expired",
    "parse_batch_response",
    "partition_key",
    "record_from_consumer",
    "verdict_for_error",
]
