"""Cooldown per (tenant, model, category): a storm of alerts becomes one notification plus a digest.

The first alert of a scope opens a window and is published; alerts of the same scope inside the window
are stored as always (no alert is lost from the table) but held back from subscribers and counted in the
window. The window's count goes out as one ``digest`` message when the window ends (:class:`FlushDigests`, run
on a schedule) or, if an alert of that scope opens the following window first, before that alert. The window's members are a map keyed by alert id, so a redelivered alert is not counted
twice; the alert that opened a window is always let through again (its publish may have failed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cotwatch.alerts import Alert
from cotwatch.ports import AlertWrite, CooldownStore, Digest, DigestPublisher


def digest_of(alert: Alert, window: Mapping[str, Any] | None, window_seconds: int) -> Digest | None:
    """The digest of a closed window (``start`` epoch seconds, ``members`` id -> severity), if it held any."""
    return digest_for(alert.tenant, alert.model, alert.category, window, window_seconds)


def digest_for(
    tenant: str, model: str, category: str, window: Mapping[str, Any] | None, window_seconds: int
) -> Digest | None:
    if window is None or not window.get("members"):
        return None
    members = {str(k): int(v) for k, v in window["members"].items()}
    return Digest(
        tenant=tenant,
        model=model,
        category=category,
        severity=max(members.values()),
        count=len(members),
        alert_ids=tuple(sorted(members)),
        window_start=datetime.fromtimestamp(float(window["start"]), UTC),
        window_seconds=window_seconds,
    )


class CooldownPublisher:
    """An ``AlertPublisher`` that lets through one alert per scope and window and digests the rest."""

    def __init__(
        self,
        inner: DigestPublisher,
        cooldown: CooldownStore,
        window_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if window_seconds < 0:
            raise ValueError("the cooldown window cannot be negative")
        self._inner = inner
        self._cooldown = cooldown
        self._window_s = window_seconds
        self._clock = clock
        self.suppressed = 0  # held back by this instance (for the batch's log and tests)

    def publish(self, alert: Alert, event: AlertWrite) -> None:
        if self._window_s == 0:
            self._inner.publish(alert, event)
            return
        decision = self._cooldown.admit(alert, self._clock(), self._window_s)
        if decision.digest is not None:
            self._inner.publish_digest(decision.digest)
        if decision.notify:
            self._inner.publish(alert, event)
        else:
            self.suppressed += 1


@dataclass(frozen=True)
class DueWindow:
    """A cooldown window that has ended with alerts held back: its digest, and what the store needs to
    settle exactly this window (and not a newer one of the same scope)."""

    digest: Digest
    token: Any


class DigestWindows(Protocol):
    def due(self, now: datetime, window_seconds: int) -> list[DueWindow]:
        """Every window that ended before ``now`` and still holds alerts back."""
        ...

    def settle(self, window: DueWindow) -> bool:
        """Empty the window's held-back members if it is still that window; False if it changed."""
        ...


class FlushDigests:
    """Publishes the digest of each ended window, then settles it, so a storm that stops is still counted
    out when its window ends. Publish first: a crash in between re-sends the digest on the next run (at
    least once) rather than losing it; an alert opening the scope's next window at the same moment sends the
    same digest itself, so a digest can, rarely, arrive twice."""

    def __init__(
        self,
        windows: DigestWindows,
        publisher: DigestPublisher,
        window_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._windows = windows
        self._publisher = publisher
        self._window_s = window_seconds
        self._clock = clock

    def run(self) -> list[Digest]:
        if self._window_s == 0:
            return []
        sent: list[Digest] = []
        for window in self._windows.due(self._clock(), self._window_s):
            self._publisher.publish_digest(window.digest)
            self._windows.settle(window)
            sent.append(window.digest)
        return sent
