"""What to do about a failed target: one rule for every place that says it
(the CLI table, the Prefect report artifact, the Slack payload).

The failed stage decides: a handshake failure's diagnosis has its own list; an
endpoint or token failure leads with that connection's own fix, then the
stage's checklist; an open breaker leads with the fix of the diagnosis that
opened it (kept by the breaker), then says what happens until the probe.
"""

from __future__ import annotations

from typing import Any, Mapping

STAGE_REMEDIATION = {
    "oauth": (
        "Check the client id and the secret in the variable named by client_secret_env (and access_key_* for NICE).",
        "Check that the OAuth client is active and has the client-credentials grant on the platform.",
        "Check token_url / region: a 401/400 from the wrong region looks like bad credentials.",
    ),
    "endpoints": (
        "Check the failing paths' HTTP status: 401/403 is a missing scope or role on the OAuth client, 5xx is the platform.",
        "Compare the TLS version and cipher per endpoint: gateways may route paths to clusters with different TLS settings.",
        "Check the platform's status page before changing anything locally.",
    ),
    "breaker_open": (
        "Until the probe time every run fails fast without a connection; then one probe is let through "
        "and a healthy probe closes the breaker.",
        "`cxhealth breaker status --targets FILE` shows the breaker; this incident's Slack thread has the full diagnosis.",
    ),
}


def remediation_for(result: Mapping[str, Any]) -> list[str]:
    """What to do, most likely fix first: the diagnosis' own list for a handshake
    failure, a stage's checklist otherwise (a healthy handshake's list is no advice)."""
    given = result.get("remediation")
    if isinstance(given, list) and given:
        return [str(r) for r in given if r]
    stage = result.get("stage")
    hs = result.get("handshake") if isinstance(result.get("handshake"), Mapping) else {}
    if result.get("cause") == "config_error":
        return [f"Fix this target's configuration (the error names its source): {result.get('summary')}",
                "Then run again: the other targets were checked regardless."]
    specific: list[str] = []
    if stage == "endpoints":  # the failing connection's own diagnosis first (e.g. "allow TLS 1.3")
        failing = [e for e in result.get("endpoints") or () if isinstance(e, Mapping) and not e.get("ok")]
        specific = [str(r) for e in failing[:1] for r in e.get("remediation") or () if r]
        if specific and failing[0].get("cause") not in (None, "ok"):
            return specific  # the connection failed (its TLS cause): an HTTP-status checklist does not apply
    elif stage == "oauth" and isinstance(result.get("oauth"), Mapping):
        specific = [str(r) for r in result["oauth"].get("remediation") or () if r]
        status = result["oauth"].get("status")
        if specific and status is not None and status not in (400, 401, 403):
            return specific  # a 2xx, 429 or 5xx: the credential checklist would contradict the evidence
    elif stage == "breaker_open":  # the diagnosis that opened the breaker still says what to fix
        breaker = result.get("breaker") if isinstance(result.get("breaker"), Mapping) else {}
        last = breaker.get("last_failure") if isinstance(breaker.get("last_failure"), Mapping) else {}
        specific = [str(r) for r in last.get("remediation") or () if r]
    if stage in STAGE_REMEDIATION:
        return specific + [r for r in STAGE_REMEDIATION[stage] if r not in specific]
    return [str(r) for r in hs.get("remediation") or () if r]
