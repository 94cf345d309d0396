"""Payloads: every cause renders, validates with slack-sdk's block models, and fits.

Also home of the sample results the other alert tests use (``sample_result``).
"""

from __future__ import annotations

import json

import pytest
from slack_sdk.models.blocks import Block

from cxhealth.tasks.alerts import payload as P
from cxhealth.tasks.remedies import remediation_for
from cxhealth.tasks.tls.model import Cause
from cxhealth.tasks.alerts.payload import build_breaker_message, build_incident_message, derive_cause

# Every cause the engine can give (its one enum, not the payload's own list) and the flow's.
ALL_CAUSES = tuple(c.value for c in Cause if c is not Cause.OK) + P.FLOW_CAUSES


def sample_result(name: str = "genesys-prod", cause: str = "cert_expired", *, healthy: bool = False, **over) -> dict:
    """A contract §2 target report item failing with ``cause`` (or healthy)."""
    if healthy:
        stage = None
    elif cause == "oauth_failed":
        stage = "oauth"
    elif cause == "endpoint_failed":
        stage = "endpoints"
    elif cause == "breaker_open":
        stage = "breaker_open"
    elif cause == "unhealthy":
        stage = None
    else:
        stage = "handshake"
    hs_cause = cause if stage == "handshake" else "ok"
    result = {
        "name": name,
        "healthy": healthy,
        "stage": stage,
        "handshake": {
            "target": {"host": "login.mypurecloud.com", "port": 443, "sni": "login.mypurecloud.com", "address": "127.0.0.1"},
            "ok": hs_cause == "ok",
            "cause": hs_cause,
            "summary": f"Diagnosed {hs_cause} on login.mypurecloud.com:443 (evidence: verify code 10).",
            "remediation": ["Renew the certificate on the gateway.", "Re-run `cxhealth diagnose` to confirm."],
            "protocol": "TLSv1.3" if hs_cause == "ok" else None,
            "cipher": "TLS_AES_256_GCM_SHA384" if hs_cause == "ok" else None,
            "handshake_ms": 41.7,
            "chain": [
                {"subject": "CN=login.mypurecloud.com", "issuer": "CN=Lab Intermediate", "not_before": "2024-01-01T00:00:00Z",
                 "not_after": "2024-04-01T00:00:00Z", "san": ["login.mypurecloud.com"], "sha256": "ab" * 32, "is_ca": False},
                {"subject": "CN=Lab Intermediate", "issuer": "CN=Lab Root", "not_before": "2023-01-01T00:00:00Z",
                 "not_after": "2030-01-01T00:00:00Z", "san": [], "sha256": "cd" * 32, "is_ca": True},
            ],
            "warnings": [{"code": "tls12_only_policy", "message": "The client policy caps at TLS 1.2."}],
            "evidence": {"openssl_reason": "CERTIFICATE_VERIFY_FAILED", "verify_code": 10, "probes": ["verified", "unverified"]},
        },
        "oauth": {"ok": False, "status": 401, "ms": 12.0, "error": "invalid_client"} if stage == "oauth" else
                 ({"ok": True, "status": 200, "ms": 80.0, "error": None} if stage in ("endpoints", None) else None),
        "endpoints": (
            [{"path": "/api/v2/organizations/me", "ok": True, "status": 200, "ms": 30.0, "protocol": "TLSv1.3", "cause": None},
             {"path": "/api/v2/flows?pageSize=1", "ok": False, "status": 503, "ms": 31.0, "protocol": "TLSv1.2", "cause": None}]
            if stage == "endpoints" else []
        ),
        "breaker": {"state": "open" if stage == "breaker_open" else "closed",
                    "reopen_at": "2024-05-01T12:00:30Z" if stage == "breaker_open" else None},
        "flow_run_url": "http://127.0.0.1:4200/runs/flow-run/1234",
    }
    if cause == "unhealthy":
        result["cause"] = "unhealthy"
    result.update(over)
    # As the report stage does (tasks/health.py TargetReport.to_dict): the report carries what to do.
    result.setdefault("remediation", [] if healthy else remediation_for(result))
    return result


def assert_valid_and_fits(message: P.SlackMessage, budget: int = 9000) -> None:
    assert message.text and len(message.text) <= P.MAX_FALLBACK_TEXT
    assert 1 <= len(message.blocks) <= P.MAX_BLOCKS
    for raw in message.blocks:
        block = Block.parse(dict(raw))  # slack-sdk's own model, from the dict we send
        assert block is not None, raw
        block.validate_json()
        if raw["type"] == "header":
            assert len(raw["text"]["text"]) <= P.MAX_HEADER
        if raw["type"] == "section":
            if "text" in raw:
                assert len(raw["text"]["text"]) <= P.MAX_SECTION
            for f in raw.get("fields", []):
                assert len(f["text"]) <= P.MAX_FIELD
            assert len(raw.get("fields", [])) <= P.MAX_FIELDS
    assert message.size <= budget
    assert message.size < 12000


@pytest.mark.parametrize("cause", ALL_CAUSES)
def test_every_cause_renders_a_valid_payload_that_names_target_cause_and_severity(cause: str) -> None:
    # Given a target failing with this cause
    result = sample_result(cause=cause)
    # When the incident payload is built
    message = build_incident_message(result, now=1_714_564_800.0)
    # Then it validates, fits, and its header says what broke where
    assert_valid_and_fits(message)
    header = message.blocks[0]["text"]["text"]
    assert "genesys-prod" in header and cause in header
    assert ("CRITICAL" in header) or ("MAJOR" in header)
    assert cause in message.text and "genesys-prod" in message.text
    rendered = json.dumps(message.to_dict())
    assert "login.mypurecloud.com" in rendered  # host field
    assert "Flow run" in rendered  # context link


def test_derive_cause_prefers_the_flows_cause_then_the_failed_stage() -> None:
    assert derive_cause(sample_result(cause="hostname_mismatch")) == "hostname_mismatch"
    assert derive_cause(sample_result(cause="oauth_failed")) == "oauth_failed"
    assert derive_cause(sample_result(cause="endpoint_failed")) == "endpoint_failed"
    assert derive_cause(sample_result(cause="breaker_open")) == "breaker_open"
    assert derive_cause(sample_result(cause="oauth_failed") | {"cause": "pin_mismatch"}) == "pin_mismatch"
    ep = sample_result(cause="endpoint_failed")
    ep["endpoints"][1]["cause"] = "protocol_version_mismatch"
    assert derive_cause(ep) == "protocol_version_mismatch"


def test_remediation_fields_and_evidence_are_in_the_payload() -> None:
    message = build_incident_message(sample_result(cause="cert_expired"), occurrences=3)
    rendered = json.dumps(message.to_dict(), ensure_ascii=False)
    assert "What to do" in rendered and "Renew the certificate" in rendered
    for label in ("Host", "Stage", "Protocol", "Cipher", "Chain depth", "Handshake", "Breaker", "Attempts"):
        assert f"*{label}*" in rendered
    assert "seen 3×" in rendered
    assert "CERTIFICATE_VERIFY_FAILED" in rendered
    assert not message.truncated


def test_breaker_open_payload_shows_state_and_reopen_time() -> None:
    message = build_incident_message(sample_result(cause="breaker_open"))
    rendered = json.dumps(message.to_dict())
    assert "2024-05-01T12:00:30Z" in rendered and "open" in rendered


def test_oversized_input_is_truncated_cleanly_never_an_error() -> None:
    # Given a result with absurd sizes everywhere
    result = sample_result(name="n" * 400, cause="incomplete_chain")
    hs = result["handshake"]
    hs["summary"] = "S<&>" * 5000
    hs["remediation"] = [f"step {i} " + "r" * 500 for i in range(200)]
    hs["chain"] = hs["chain"] * 40
    hs["warnings"] = [{"code": "weak_signature", "message": "w" * 3000}] * 30
    hs["evidence"] = {"dump": "e```" * 50_000}
    result["endpoints"] = [{"path": "/p" * 300, "ok": False, "status": 500, "ms": 1, "protocol": "TLSv1.2", "cause": None}] * 100
    result["breaker"]["reopen_at"] = "t" * 5000
    # When the payload is built
    message = build_incident_message(result, budget=9000)
    # Then it still validates and fits, and says it was cut
    assert_valid_and_fits(message)
    assert message.truncated
    header = message.blocks[0]["text"]["text"]
    assert header.endswith(P.ELLIPSIS)
    # escaping never leaves half an entity at a cut
    for raw in message.blocks:
        text = raw.get("text", {}).get("text", "") if isinstance(raw.get("text"), dict) else ""
        assert "&am…" not in text and "&l…" not in text and "&g…" not in text


def test_a_tiny_budget_still_yields_a_valid_message() -> None:
    message = build_incident_message(sample_result(cause="cert_expired"), budget=600)
    assert_valid_and_fits(message, budget=600)
    assert message.truncated


def test_mrkdwn_control_characters_are_escaped() -> None:
    message = build_incident_message(sample_result(cause="cert_expired", name="a<b>&c"))
    summary_block = message.blocks[1]["text"]["text"]
    assert "<" not in summary_block.replace("&lt;", "")
    rendered = json.dumps(message.to_dict())
    assert "<!channel>" not in rendered


def test_flow_run_link_only_for_http_urls() -> None:
    msg = build_incident_message(sample_result(flow_run_url="javascript:alert(1)"))
    assert "Flow run" not in json.dumps(msg.to_dict())


@pytest.mark.parametrize("kind", ["opened", "reopened"])
def test_breaker_transition_payload_validates(kind: str) -> None:
    message = build_breaker_message(
        {"kind": kind, "host": "api.mypurecloud.com", "at": 1_714_564_800.0, "reopen_at": "2024-05-01T12:00:30Z",
         "summary": {"failures": 2, "window_s": 60, "open_s": 30}}
    )
    assert_valid_and_fits(message)
    assert "api.mypurecloud.com" in message.text and kind in message.text


def test_resolve_and_resolved_root_payloads_validate() -> None:
    assert_valid_and_fits(P.build_resolve_message("genesys-prod", "cert_expired", opened_at=0, resolved_at=600))
    assert_valid_and_fits(
        P.build_resolved_root("genesys-prod", "cert_expired", summary="x" * 4000, opened_at=0, resolved_at=600)
    )
    update = P.build_update_message(sample_result(cause="breaker_open"), cause="cert_expired", occurrences=4)
    assert_valid_and_fits(update)


def test_remediation_follows_the_failed_stage() -> None:
    oauth = json.dumps(build_incident_message(sample_result(cause="oauth_failed")).to_dict())
    assert "client_secret_env" in oauth and "Renew the certificate" not in oauth
    endpoints = json.dumps(build_incident_message(sample_result(cause="endpoint_failed")).to_dict())
    assert "scope" in endpoints and "Renew the certificate" not in endpoints


def test_an_endpoint_failure_leads_with_that_connections_own_fix() -> None:
    result = {"name": "t", "healthy": False, "stage": "endpoints", "handshake": {"remediation": []},
              "endpoints": [{"path": "/a", "ok": True, "remediation": []},
                            {"path": "/b", "ok": False, "cause": "protocol_version_mismatch",
                             "remediation": ["Allow TLS 1.3 in the client policy: set tls_max = \"1.3\"."]}]}
    steps = remediation_for(result)
    assert steps[0].startswith("Allow TLS 1.3")
    # the connection failed its TLS: no HTTP-status checklist after it (it would not fit the evidence)
    assert not any("HTTP status" in s for s in steps)
    # an endpoint that answered (HTTP 403 over a good connection) gets the stage's checklist
    http = {**result, "endpoints": [{"path": "/b", "ok": False, "cause": "ok", "status": 403, "remediation": []}]}
    assert any("HTTP status" in s for s in remediation_for(http))


@pytest.mark.parametrize("cause", [c.value for c in Cause if c is not Cause.OK])
def test_an_endpoint_failing_with_any_engine_cause_is_the_incidents_cause(cause: str) -> None:
    """A connection that failed its TLS (weak_crypto, invalid_chain, a proxy cause, ...) names the
    incident by that cause, not the generic endpoint_failed."""
    result = {"name": "t", "healthy": False, "stage": "endpoints", "handshake": {"cause": "ok"},
              "endpoints": [{"path": "/a", "ok": True, "cause": "ok"}, {"path": "/b", "ok": False, "cause": cause}]}
    assert derive_cause(result) == cause
