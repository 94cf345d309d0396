"""One target's health check, Prefect-free: breaker -> handshake -> token -> endpoints.

The same steps run in-process (`cxhealth run`) and as Prefect tasks (flows/):
the stage functions here are what the @task wrappers in tasks/handshake.py,
tasks/oauth.py and tasks/endpoints.py call.

Breaker rules (issue 4): every host is admitted before it is touched; only
handshake failures count (one per failed check, however many probes its
diagnosis used); HTTP statuses never count; a rejected stage opens no socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

from cxhealth.tasks.breaker import Breaker, Decision, Transition
from cxhealth.tasks.checks.endpoints import EndpointResult, check_endpoints
from cxhealth.tasks.checks.http import client_for
from cxhealth.tasks.checks.oauth import AccessToken, OAuthResult, check_token
from cxhealth.tasks.targets import Target
from cxhealth.tasks.tls import Diagnosis, diagnose

STAGES = ("handshake", "oauth", "endpoints", "breaker_open")


def _reopen_text(when: datetime | None) -> str | None:
    """A reopen time to the second, rounded *up*: a caller who waits until it is let through."""
    if when is None:
        return None
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when.isoformat()


def transition_to_dict(t: Transition, target: str | None = None) -> dict[str, Any]:
    return {"kind": str(t.kind), "host": t.host, "target": target,
            "at": t.at.isoformat(timespec="seconds") if t.at else None,
            "reopen_at": _reopen_text(t.reopen_at),
            "summary": t.summary, "trips": t.trips, "fallback": t.fallback}


def breaker_view(decision: Decision | None) -> dict[str, Any]:
    if decision is None:
        return {"state": "closed", "reopen_at": None}
    out: dict[str, Any] = {"state": str(decision.state),
                           "reopen_at": _reopen_text(decision.reopen_at),
                           "host": decision.host}
    if decision.is_probe:
        out["probe"] = True
    if decision.fallback:
        out["fallback"] = decision.fallback
    if decision.override:
        out["override"] = str(decision.override)
    return out


def failure_summary(diagnosis: Mapping[str, Any]) -> dict[str, Any]:
    """What the breaker keeps about the failure that opened it (no secrets: a diagnosis has none)."""
    return {"cause": diagnosis.get("cause"), "summary": diagnosis.get("summary"),
            "remediation": list(diagnosis.get("remediation") or [])[:3]}


@dataclass
class TargetRun:
    """The report of one target (contract §2) as it is being built."""

    name: str
    platform: str
    stage: str | None = None
    cause: str = "ok"
    handshake: dict[str, Any] | None = None
    oauth: dict[str, Any] | None = None
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    breaker: dict[str, Any] = field(default_factory=lambda: {"state": "closed", "reopen_at": None})
    transitions: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    ms: float | None = None

    @property
    def healthy(self) -> bool:
        return self.stage is None

    def fail(self, stage: str, cause: str, summary: str) -> None:
        if self.stage is None:
            self.stage, self.cause, self.summary = stage, cause, summary

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "platform": self.platform, "healthy": self.healthy, "stage": self.stage,
                "cause": self.cause, "summary": self.summary or "healthy", "handshake": self.handshake,
                "oauth": self.oauth, "endpoints": self.endpoints, "breaker": self.breaker,
                "transitions": self.transitions, "started_at": self.started_at, "ms": self.ms}


# --- the stages ------------------------------------------------------------------------

def _rejected(run: TargetRun, decision: Decision, host: str) -> None:
    last = decision.last_failure or {}
    if decision.override is not None:
        why = (f"the breaker for {host} is forced open by an operator ({decision.override_reason or 'no reason given'}); "
               "no connection was made; it stays open until the override is cleared (cxhealth breaker clear)")
    else:
        when = _reopen_text(decision.reopen_at) or "later"
        why = (f"the breaker for {host} is open (last failure: {last.get('cause', 'unknown')}); "
               f"no connection was made; it lets one probe through at {when}")
    run.breaker = breaker_view(decision)
    run.breaker["last_failure"] = last or None
    run.fail("breaker_open", str(last.get("cause") or "breaker_open"), why[0].upper() + why[1:])


async def handshake_stage(target: Target, breaker: Breaker, run: TargetRun) -> bool:
    """Diagnose the token host before any credential is sent. True when healthy."""
    endpoint = target.endpoints_to_diagnose()[0]
    decision = await asyncio.to_thread(breaker.admit, endpoint.host)
    run.breaker = breaker_view(decision)
    if not decision.admitted:
        _rejected(run, decision, endpoint.host)
        return False
    diagnosis: Diagnosis = await diagnose(endpoint, target.policy(), target.diagnose_options())
    doc = diagnosis.to_dict()
    run.handshake = doc
    if diagnosis.ok:
        t = await asyncio.to_thread(breaker.record_success, endpoint.host, decision)
    else:
        t = await asyncio.to_thread(breaker.record_failure, endpoint.host, failure_summary(doc), decision)
        run.fail("handshake", doc["cause"], f"{endpoint.host}:{endpoint.port}: {doc['summary']}")
    if t is not None:
        run.transitions.append(transition_to_dict(t, run.name))
    if t is not None or not diagnosis.ok:
        status = await asyncio.to_thread(breaker.status, endpoint.host)
        run.breaker = {"state": str(status.state), "host": status.host,
                       "reopen_at": _reopen_text(status.reopen_at),
                       "failures_in_window": status.failures_in_window}
    return diagnosis.ok


async def http_stages(target: Target, breaker: Breaker, run: TargetRun,
                      env: Mapping[str, str] | None = None) -> None:
    """Token smoke test, then endpoint checks, on one verified client."""
    async with client_for(target) as client:
        token = await oauth_stage(target, run, env, client)
        if token is not None:
            await endpoints_stage(target, breaker, run, token, client)


async def oauth_stage(target: Target, run: TargetRun, env: Mapping[str, str] | None = None,
                      client: Any = None) -> AccessToken | None:
    """The curl-equivalent token request. Returns the token (never put in a report) or None."""
    token_check = await check_token(target, client=client, env=env)
    oauth: OAuthResult = token_check.result
    run.oauth = oauth.to_dict()
    if not oauth.ok or token_check.token is None:
        cause = oauth.cause if oauth.cause not in (None, "ok") else (oauth.error or f"http_{oauth.status}")
        run.fail("oauth", str(cause), f"token request to {oauth.host}: {oauth.summary or oauth.error or oauth.status}")
        return None
    return token_check.token


async def endpoints_stage(target: Target, breaker: Breaker, run: TargetRun, token: AccessToken,
                          client: Any = None) -> None:
    """GET each endpoint with the token. Every host is admitted by the breaker
    before its first request (a NICE API host is known only after discovery);
    the token host was admitted by the handshake stage."""
    token_host = target.endpoints_to_diagnose()[0].host
    decisions: dict[str, Decision] = {}
    refusals: dict[str, str] = {}

    async def admit(host: str) -> str | None:
        if host == token_host:
            return None
        if host not in decisions:
            decision = await asyncio.to_thread(breaker.admit, host)
            decisions[host] = decision
            if not decision.admitted:
                _rejected(run, decision, host)
                refusals[host] = run.summary if run.stage == "breaker_open" else f"the breaker for {host} is open"
        return refusals.get(host)

    results: Sequence[EndpointResult] = await check_endpoints(target, token, client=client, admit=admit)
    run.endpoints = [r.to_dict() for r in results]
    failed_hosts: dict[str, EndpointResult] = {}
    for r in results:
        if r.cause not in (None, "ok") and r.host not in failed_hosts:
            failed_hosts[r.host] = r
    for host, decision in decisions.items():
        if not decision.admitted:
            continue
        bad = failed_hosts.get(host)
        if bad is not None:
            t = await asyncio.to_thread(breaker.record_failure, host,
                                        {"cause": bad.cause, "summary": bad.summary, "remediation": list(bad.remediation)[:3]},
                                        decision)
        else:
            t = await asyncio.to_thread(breaker.record_success, host, decision)
        if t is not None:
            run.transitions.append(transition_to_dict(t, run.name))
    first_bad = next((r for r in results if not r.ok), None)
    if first_bad is not None:
        cause = first_bad.cause if first_bad.cause not in (None, "ok") else (first_bad.error or f"http_{first_bad.status}")
        run.fail("endpoints", str(cause), f"{first_bad.path} on {first_bad.host}: {first_bad.summary or first_bad.error or first_bad.status}")


async def check_target(target: Target, breaker: Breaker, env: Mapping[str, str] | None = None) -> TargetRun:
    """The whole check of one target, in-process."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    run = TargetRun(name=target.name, platform=target.platform)
    try:
        if await handshake_stage(target, breaker, run):
            await http_stages(target, breaker, run, env)
    finally:
        run.ms = round((loop.time() - start) * 1000, 1)
    return run


async def check_targets(targets: Sequence[Target], breaker: Breaker,
                        env: Mapping[str, str] | None = None) -> list[TargetRun]:
    """All targets concurrently; reports in input order."""
    return list(await asyncio.gather(*(check_target(t, breaker, env) for t in targets)))
