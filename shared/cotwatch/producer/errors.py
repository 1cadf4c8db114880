"""What the producer raises. Every failure to hand a chunk to Kafka ends in one of these: nothing is dropped quietly."""

from __future__ import annotations


class ProducerError(RuntimeError):
    """Base class: a chunk could not be (or may not have been) delivered."""


class BrokerUnavailableError(ProducerError):
    """No broker answered within the configured blocking time (at connect, or for the topic's metadata)."""


class BackpressureTimeoutError(ProducerError):
    """The bounded send buffer stayed full for the configured blocking time; the chunk in hand was not sent."""


class DeliveryFailedError(ProducerError):
    """Kafka did not acknowledge one or more chunks of this trace (or did not do so in time)."""

    def __init__(self, message: str, *, undelivered: int) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class TraceClosedError(ProducerError):
    """Text was written to a trace that is already closed (its final chunk is out)."""
