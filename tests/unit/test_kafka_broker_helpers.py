"""Kafka broker helpers that need no JVM."""

from __future__ import annotations

import pytest


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from cotwatch_local import kafka_broker

    # Given a random source whose first draw encodes to "-..." (0xF8 -> '-' in URL-safe base64)
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    # When a cluster id is made, the dash-led one is skipped (the storage tool would read it as an option)
    cluster_id = kafka_broker.new_cluster_id()
    assert cluster_id == "EBAQEBAQEBAQEBAQEBAQEA"
    assert len(cluster_id) == 22


def test_the_kafka_version_is_pinned_in_the_pom() -> None:
    from cotwatch_local import repo_root
    from cotwatch_local.kafka_broker import pinned_kafka_version

    version = pinned_kafka_version(repo_root() / "infra" / "kafka" / "pom.xml")
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) >= (4, 1)
