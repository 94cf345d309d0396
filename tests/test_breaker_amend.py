"""While a breaker is open, a turned-away check reports the cause and the fix of the diagnosis that
opened it — not the first probe's guess that was recorded early (issue 13/14: ui saw 'untrusted_root,
trust the root' for a host behind an inspecting proxy)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from cxhealth.tasks.breaker import BreakerConfig, open_breaker
from cxhealth.tasks.breaker import machine
from cxhealth.tasks.breaker.machine import BreakerRecord
from tests.test_breaker_stores import REDIS_URL, delete_redis_prefix, require_redis


def test_amend_replaces_only_the_early_failure_it_recorded():
    record = BreakerRecord(last_failure='{"cause":"untrusted_root"}')
    amended = machine.amend_failure(record, '{"cause":"untrusted_root"}', '{"cause":"proxy_interception"}')
    assert amended is not None and json.loads(amended.last_failure)["cause"] == "proxy_interception"
    # a later failure recorded by someone else is never overwritten
    assert machine.amend_failure(record, '{"cause":"other"}', '{"cause":"proxy_interception"}') is None


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_caller_turned_away_reads_the_amended_cause_on_every_store(store, tmp_path):
    prefix = f"cxh-amend-{uuid.uuid4().hex[:8]}"
    if store == "redis":
        require_redis()
        url = REDIS_URL
    else:
        url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    breaker = open_breaker(url, BreakerConfig(threshold=1), **({"key_prefix": prefix} if store == "redis" else {}))
    try:
        host = "api.amend.example.test"
        decision = breaker.admit(host)
        early = {"cause": "untrusted_root", "summary": "first probe: verify code 20", "remediation": ["trust it"]}
        final = {"cause": "proxy_interception", "summary": "Zscaler re-signs it", "remediation": ["exempt it"]}
        assert breaker.record_failure(host, early, decision) is not None  # opened
        breaker.amend_failure(host, early, final, decision)
        turned_away = breaker.admit(host)
        assert not turned_away.admitted
        assert turned_away.last_failure["cause"] == "proxy_interception"
        assert turned_away.last_failure["remediation"] == ["exempt it"]
    finally:
        breaker.close()
        if store == "redis":
            delete_redis_prefix(prefix)


def test_the_run_turned_away_by_the_open_breaker_names_the_interception_and_its_fix(tls_lab, tmp_path):
    """Given a target behind an inspecting proxy (the lab's Zscaler-signed host) and threshold 2,
    when three checks run, then the third is turned away by the open breaker and still says
    proxy_interception with the inspection fix (not the early guess 'untrusted_root')."""
    from cxhealth.tasks.health import check_target
    from cxhealth.tasks.runtime import breaker_for
    from cxhealth.tasks.targets import load_targets

    s = tls_lab.scenarios["proxy_interception"]
    path = tmp_path / "targets.toml"
    path.write_text("\n".join([
        "[[target]]", 'name = "partner-behind-proxy"', 'platform = "generic"', 'client_id = "demo"',
        'client_secret_env = "DEMO_PARTNER_SECRET"',
        f'token_url = "https://{s.host}:{s.port}/oauth/token"', f'api_base = "https://{s.host}:{s.port}"',
        'endpoints = ["/v1/health"]', f'resolve = ["{s.host}:{s.port}:127.0.0.1"]',
        f"ca_bundle = {json.dumps(str(tls_lab.client_store))}", "timeout = 3", "",
        "[breaker]", "threshold = 2", "window_s = 60", "open_s = 300",
        f"store = {json.dumps('sqlite:///' + str(tmp_path / 'breaker.sqlite3'))}", "",
        "[history]", f"store = {json.dumps('sqlite:///' + str(tmp_path / 'history.sqlite3'))}", ""]), encoding="utf-8")
    config = load_targets(path)
    target = config.targets[0]

    async def three() -> list:
        breaker = breaker_for(config)
        try:
            return [await check_target(target, breaker, {"DEMO_PARTNER_SECRET": "x"}) for _ in range(3)]
        finally:
            breaker.close()

    reports = [r.to_dict() for r in asyncio.run(three())]
    assert [r["stage"] for r in reports] == ["handshake", "handshake", "breaker_open"]
    assert reports[0]["handshake"]["cause"] == "proxy_interception"
    third = reports[2]
    assert third["breaker"]["last_failure"]["cause"] == "proxy_interception", third["breaker"]
    text = json.dumps(third["remediation"])
    assert "inspection" in text.lower() and "trust the root" not in text.lower()
