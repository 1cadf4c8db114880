"""Tenant names and the topic -> tenant binding: strict names, forged tenants refused."""

from __future__ import annotations

import pytest

from cotwatch.tenancy import TenantBinding, check_tenant, parse_tenant_bindings


@pytest.mark.parametrize("name", ["../../etc", "Acme", "", "-lead", "a" * 64, "acme_labs", "acme labs", "a/b"])
def test_bad_tenant_names_are_rejected(name: str) -> None:
    # Given a name that could be a path, a key injection or just inconsistent; Then it is refused
    with pytest.raises(ValueError, match="not a tenant name"):
        check_tenant(name)


def test_bindings_parse_and_validate_every_name() -> None:
    # Given a mapping string with one single-tenant and one shared topic; When parsed; Then both are bound
    bindings = parse_tenant_bindings("traces-acme=acme-labs, traces=acme-labs|northwind-ai")
    assert bindings == {"traces-acme": {"acme-labs"}, "traces": {"acme-labs", "northwind-ai"}}
    # And a forged name, a bad topic or a topic bound twice fails at parse time (settings: cold start)
    for bad in ("traces=../../etc", "bad topic=acme", "t=a,t=b", "traces", "traces="):
        with pytest.raises(ValueError):
            parse_tenant_bindings(bad)


def test_resolve_binds_the_tenant_to_the_topic() -> None:
    binding = TenantBinding(parse_tenant_bindings("traces-acme=acme-labs,traces=acme-labs|northwind-ai"))
    # A single-tenant topic fills in an omitted tenant and accepts its own
    assert binding.resolve("traces-acme", None) == ("acme-labs", "", "")
    assert binding.resolve("traces-acme", "acme-labs") == ("acme-labs", "", "")
    # A payload naming another tenant, an unbound topic, or a shared topic without a tenant is refused
    cases: dict[tuple[str, str | None], str] = {("traces-acme", "northwind-ai"): "tenant_mismatch"}
    cases[("other", "acme-labs")] = "unbound_topic"
    cases[("traces", None)] = "tenant_missing"
    for (topic, tenant), reason in cases.items():
        resolved, why, detail = binding.resolve(topic, tenant)
        assert (resolved, why) == (None, reason) and detail


def test_a_shared_topic_accepts_any_valid_name_only() -> None:
    # Given the development binding "traces=*"; Then valid names pass, forged paths and '*' mixes do not
    binding = TenantBinding(parse_tenant_bindings("traces=*"))
    assert binding.resolve("traces", "acme-labs") == ("acme-labs", "", "")
    assert binding.resolve("traces", "../../etc")[1] == "tenant_mismatch"
    assert binding.resolve("traces", None)[1] == "tenant_missing"
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_tenant_bindings("traces=*|acme")


def test_scorer_settings_read_and_validate_tenant_bindings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from cotwatch.config import ScorerSettings

    env = {
        "ALERTS_TABLE": "alerts",
        "COUNTERS_TABLE": "counters",
        "TRACE_STATE_TABLE": "state",
        "DATA_BUCKET": "bucket",
        "ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Given no binding at all; Then the scorer refuses to start (fail closed), naming the variable
    monkeypatch.delenv("TENANT_BINDINGS", raising=False)
    with pytest.raises(ValidationError, match="TENANT_BINDINGS"):
        ScorerSettings()
    # Given a forged name in the binding; Then the cold start fails too
    monkeypatch.setenv("TENANT_BINDINGS", "traces=../../etc")
    with pytest.raises(ValidationError, match="not a tenant name"):
        ScorerSettings()
    # Given a valid binding; Then it is parsed once into sets of tenants
    monkeypatch.setenv("TENANT_BINDINGS", "traces-acme=acme-labs,shared=*")
    assert ScorerSettings().tenant_bindings == {"traces-acme": {"acme-labs"}, "shared": {"*"}}
