"""Wall-clock totals per pipeline stage, for ``cotwatch bench``: where a batch's time goes.

The scorer's use case and monitor wrap their steps in :meth:`StageClock.stage`; the cost is two
``perf_counter`` calls and a dict update per step, so the hooks stay on in production (they change no
behaviour and nothing reads them there). Times are exclusive: a stage opened inside another is not
counted twice (its time is taken out of the enclosing stage's total).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DECODE = "decode"
WINDOW = "window"
EMBED = "embed"  # the encoder call: tokenization and the model (the benchmark separates the two)
HEADS_CUES = "heads_cues"
PERSIST = "persist"  # DynamoDB / S3 reads and writes: trace state, identities, alerts, counters, dead letters
PUBLISH = "publish"  # alert notifications (SNS, behind the cooldown)
STAGES = (DECODE, WINDOW, EMBED, HEADS_CUES, PERSIST, PUBLISH)


class StageClock:
    """Accumulates exclusive seconds per stage name; one clock per process (:data:`CLOCK`), per thread stack."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._totals: dict[str, float] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        stack: list[float] = self._local.__dict__.setdefault("children", [])
        stack.append(0.0)  # time spent in stages nested inside this one
        started = self._now()
        try:
            yield
        finally:
            elapsed = self._now() - started
            nested = stack.pop()
            if stack:
                stack[-1] += elapsed
            with self._lock:
                self._totals[name] = self._totals.get(name, 0.0) + elapsed - nested

    def totals(self) -> dict[str, float]:
        with self._lock:
            return dict(self._totals)

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()


CLOCK = StageClock()
