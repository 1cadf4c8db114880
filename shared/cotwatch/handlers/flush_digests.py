"""The ``flush_digests`` Lambda handler around :class:`~cotwatch.cooldown.FlushDigests`: invoked every minute
by an EventBridge schedule, it publishes the digest of each cooldown window that has ended with alerts held
back, so a storm that stops is still counted out when its window ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from cotwatch import observability as obs
from cotwatch.cooldown import FlushDigests

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def make_handler(flush: FlushDigests, *, logger: Logger | None = None) -> Handler:
    logger = logger or Logger(service=obs.SERVICE)

    @logger.inject_lambda_context
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        sent = flush.run()
        held = sum(d.count for d in sent)
        if sent:
            logger.info("flushed cooldown digests", extra={"digests": len(sent), "alerts_held_back": held})
        return {"digests": len(sent), "alerts": held}

    handler: Handler = lambda_handler
    return handler
