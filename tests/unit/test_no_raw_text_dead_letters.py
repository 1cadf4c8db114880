"""Dead letters that may be a no-raw-text tenant's keep digests, sizes and coordinates only."""

from __future__ import annotations

import base64
import hashlib

from cotwatch.detection.monitor import TraceMonitor
from cotwatch.kafka_event import KafkaBatch, KafkaRecord
from cotwatch.score_traces import ScoreTraces
from cotwatch.tenancy import TenantBinding

from .conftest import Adapters

SECRET = "the admin password is Tr0ub4dor&3x"
VALUE = ('{"trace_id": "t-9", "seq": "zero", "model": "m", "text": "' + SECRET + '"}').encode()


def _dead_letter(monitor: TraceMonitor, bindings: dict[str, frozenset[str]], topic: str) -> dict[str, object]:
    adapters = Adapters()
    use_case = ScoreTraces(
        monitor,
        adapters.alerts,
        adapters.publisher,
        adapters.states,
        adapters.counters,
        adapters.dead_letters,
        tenants=TenantBinding(bindings),
        no_raw_text_tenants=frozenset({"vault"}),
    )
    record = KafkaRecord(
        topic=topic, partition=2, offset=41, key=b"t-9", value=VALUE, headers=(("note", SECRET.encode()),)
    )
    report = use_case.process_batch(KafkaBatch(event_source="SelfManagedKafka", records=[record]))
    assert report.dead_lettered == 1
    (letter,) = adapters.dead_letters.letters.values()
    return letter.model_dump(mode="json")


def test_a_no_raw_text_tenants_dead_letter_has_digests_and_offsets_only(monitor: TraceMonitor) -> None:
    # Given a topic bound to a no-raw-text tenant, and a record on it that fails validation
    letter = _dead_letter(monitor, {"traces-vault": frozenset({"vault"})}, "traces-vault")
    # Then the letter has the reason, the coordinates and digests of what arrived, and no raw value
    assert letter["reason"] == "schema_violation" and letter["raw_text_withheld"] is True
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("traces-vault", 2, 41)
    assert letter["value_b64"] is None and letter["key_b64"] is None
    assert letter["value_sha256"] == "sha256:" + hashlib.sha256(VALUE).hexdigest()
    assert letter["value_bytes"] == len(VALUE)
    assert letter["key_sha256"] == "sha256:" + hashlib.sha256(b"t-9").hexdigest()
    assert letter["headers"] == [["note", ""]]
    # And no part of the payload is anywhere in it, not even in the detail
    stored = str(letter)
    for word in ("Tr0ub4dor", "password", "zero", base64.b64encode(VALUE).decode()[:16]):
        assert word not in stored


def test_a_shared_any_tenant_topic_withholds_too(monitor: TraceMonitor) -> None:
    # Given a topic any tenant may write ('*'), while a no-raw-text tenant exists: the letter's tenant is unknown
    letter = _dead_letter(monitor, {"traces": frozenset({"*"})}, "traces")
    # Then the raw value is withheld (fail closed)
    assert letter["raw_text_withheld"] is True and letter["value_b64"] is None


def test_other_tenants_dead_letters_keep_the_redacted_value(monitor: TraceMonitor) -> None:
    # Given a topic bound only to ordinary tenants
    letter = _dead_letter(monitor, {"traces-acme": frozenset({"acme"})}, "traces-acme")
    # Then the value is kept (redacted) for replay, and the secret is not in it
    assert letter["raw_text_withheld"] is False
    value = base64.b64decode(str(letter["value_b64"])).decode()
    assert '"seq": "zero"' in value and "Tr0ub4dor" not in value
