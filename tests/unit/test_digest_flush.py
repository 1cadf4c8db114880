"""The digest flush on in-memory fakes: an ended window's held-back alerts go out once, when it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cotwatch.adapters.memory import MemoryCooldownStore, MemoryPublisher
from cotwatch.alerts import Alert, alert_id
from cotwatch.cooldown import CooldownPublisher, FlushDigests
from cotwatch.detection.models import Disposition
from cotwatch.ports import AlertWrite

T0 = datetime(2026, 12, 7, 15, tzinfo=UTC)


def alert(n: int, severity: int, model: str = "m") -> Alert:
    return Alert(
        alert_id=alert_id("acme", f"t{n}", "cyber"), tenant="acme", trace_id=f"t{n}", model=model, category="cyber",
        severity=severity, score=0.5, threshold=0.4, disposition=Disposition.COMPLIED, chunk_seq=0, evidence=(),
        scorer_version="s", calibration_version="c", created_at=T0, source="t-0@0",
    )  # fmt: skip


def test_held_back_alerts_are_flushed_once_when_the_window_ends() -> None:
    # Given a 600 s cooldown and a storm of three alerts of one scope, plus one of another model
    now = [T0]
    windows, sink = MemoryCooldownStore(), MemoryPublisher()
    cooldown = CooldownPublisher(sink, windows, 600, clock=lambda: now[0])
    flush = FlushDigests(windows, sink, 600, clock=lambda: now[0])
    for n, severity in enumerate([2, 3, 4]):
        cooldown.publish(alert(n, severity), AlertWrite.CREATED)
    cooldown.publish(alert(9, 1, model="other"), AlertWrite.CREATED)

    # When the flush runs inside the window, Then nothing goes out
    now[0] = T0 + timedelta(seconds=600)
    assert flush.run() == []
    # When it runs after the window, Then one digest of the two held back (highest severity 4), once
    now[0] = T0 + timedelta(seconds=601)
    [digest] = flush.run()
    assert (digest.count, digest.severity, digest.alert_ids) == (
        2,
        4,
        tuple(sorted([alert(1, 3).alert_id, alert(2, 4).alert_id])),
    )
    assert sink.digests == [digest]
    assert flush.run() == []
    # And the scope's next alert opens a new window with no second digest
    cooldown.publish(alert(5, 2), AlertWrite.CREATED)
    assert sink.digests == [digest]


def test_no_cooldown_means_nothing_to_flush() -> None:
    windows, sink = MemoryCooldownStore(), MemoryPublisher()
    assert FlushDigests(windows, sink, 0).run() == []
