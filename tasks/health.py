"""One target's health check, Prefect-free: the one orchestration.

    breaker.admit -> handshake (token host) -> token request -> endpoint checks -> TargetReport

``cxhealth run`` calls :func:`check_targets`; the flows call :func:`check_target`
(one Prefect task run per target); nothing else checks a target. Each stage is a
function that returns a frozen value — :class:`HandshakeResult`,
:class:`TokenResult`, :class:`EndpointsResult` — and :func:`assemble` turns them
into a frozen :class:`TargetReport`. Dictionaries appear only at the edges
(``TargetReport.to_dict()``: the JSON of contract §2, artifacts, events, Slack).

Breaker rules (issue 4): every host is admitted before it is touched; only
handshake failures count (one per failed check, however many probes its
diagnosis used); HTTP statuses never count; a rejected stage opens no socket.
What the breaker keeps about a failure (:func:`failure_summary`) carries the
host, the time and the fix, so a run turned away while it is open can still say
"open since … because …" and the fix.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from cxhealth.tasks.breaker import Breaker, BreakerState, BreakerStatus, Decision, Transition
from cxhealth.tasks.checks.endpoints import EndpointResult, check_endpoints
from cxhealth.tasks.checks.http import client_for
from cxhealth.tasks.checks.oauth import AccessToken, OAuthResult, check_token
from cxhealth.tasks.remedies import remediation_for
from cxhealth.tasks.targets import Target, TargetConfigError
from cxhealth.tasks.timefmt import utc_text
from cxhealth.tasks.addresses import diagnose_addresses
from cxhealth.tasks.hostlimit import limiter
from cxhealth.tasks.tls import Diagnosis, diagnose
from cxhealth.tasks.tls.proxy import PROXY_NOTHING_REACHED

STAGES = ("handshake", "oauth", "endpoints", "breaker_open")
CONFIG_ERROR = "config_error"

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


def failure_summary(cause: str, summary: str | None, remediation: Sequence[str], *, host: str,
                    stage: str, at: datetime) -> dict[str, Any]:
    """What the breaker keeps about the failure that opened it: enough to say
    "open since <at> because <cause> on <host>" and the first fixes (no secrets:
    a diagnosis has none)."""
    return {"cause": cause, "summary": summary, "remediation": list(remediation)[:3], "host": host,
            "stage": stage, "at": at.astimezone(timezone.utc).isoformat(timespec="seconds")}


# --- values -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BreakerView:
    """What a report says about a host's breaker (contract §2 ``breaker``)."""

    state: str = "closed"
    host: str | None = None
    reopen_at: datetime | None = None
    probe: bool = False
    fallback: str | None = None
    override: str | None = None
    override_reason: str | None = None
    failures_in_window: int | None = None
    last_failure: Mapping[str, Any] | None = None

    @classmethod
    def of_decision(cls, decision: Decision) -> "BreakerView":
        return cls(state=str(decision.state), host=decision.host, reopen_at=decision.reopen_at,
                   probe=decision.is_probe, fallback=decision.fallback,
                   override=str(decision.override) if decision.override else None,
                   override_reason=decision.override_reason,
                   last_failure=decision.last_failure if not decision.admitted else None)

    @classmethod
    def of_status(cls, status: BreakerStatus, decision: Decision | None = None) -> "BreakerView":
        return cls(state=str(status.state), host=status.host, reopen_at=status.reopen_at,
                   probe=bool(decision and decision.is_probe), fallback=status.fallback,
                   override=str(status.override) if status.override else None,
                   override_reason=status.override_reason, failures_in_window=status.failures_in_window)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "reopen_at": _reopen_text(self.reopen_at)}
        if self.host is not None:
            out["host"] = self.host
        if self.probe:
            out["probe"] = True
        if self.fallback:
            out["fallback"] = self.fallback
        if self.override:
            out["override"] = self.override
        if self.failures_in_window is not None:
            out["failures_in_window"] = self.failures_in_window
        if self.state != "closed" and self.last_failure is not None:
            out["last_failure"] = dict(self.last_failure)
        return out


@dataclass(frozen=True)
class Failure:
    """The first thing that went wrong in a target's check."""

    stage: str                    # one of STAGES
    cause: str                    # the engine's cause code, an HTTP/OAuth error code, or config_error
    summary: str                  # one line, names the host
    host: str | None = None
    remediation: tuple[str, ...] = ()


@dataclass(frozen=True)
class HandshakeResult:
    """The token host's handshake, diagnosed before any credential is sent."""

    host: str
    port: int
    decision: Decision | None = None
    diagnosis: Diagnosis | None = None          # None: refused by the breaker, or a configuration error
    breaker: BreakerView = BreakerView()
    transitions: tuple[Transition, ...] = ()
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class TokenResult:
    """The token request's verdict; the token itself only for the next stage, in memory."""

    oauth: OAuthResult | None = None
    token: AccessToken | None = field(default=None, repr=False, compare=False)
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and self.token is not None

    def without_token(self) -> "TokenResult":
        return replace(self, token=None)


@dataclass(frozen=True)
class EndpointsResult:
    """Every endpoint's verdict, the breaker transitions they caused, and the first failure."""

    endpoints: tuple[EndpointResult, ...] = ()
    transitions: tuple[Transition, ...] = ()
    breaker: BreakerView | None = None          # set when an API host's breaker refused the stage
    failure: Failure | None = None


@dataclass(frozen=True, repr=False)
class TargetReport:
    """One target's report (contract §2); :meth:`to_dict` is the JSON at the edges.

    Its repr is one short line: Prefect logs a failed task's state, data included.
    """

    name: str
    platform: str
    started_at: datetime
    ms: float | None = None
    handshake: HandshakeResult | None = None
    token: TokenResult | None = None
    endpoints: EndpointsResult | None = None
    failure: Failure | None = None
    breaker: BreakerView = BreakerView()

    def __repr__(self) -> str:
        return f"TargetReport({self.name!r}, healthy={self.healthy}, cause={self.cause!r})"

    @property
    def healthy(self) -> bool:
        return self.failure is None

    @property
    def stage(self) -> str | None:
        return self.failure.stage if self.failure else None

    @property
    def cause(self) -> str:
        return self.failure.cause if self.failure else "ok"

    @property
    def summary(self) -> str:
        return self.failure.summary if self.failure else "healthy"

    @property
    def host(self) -> str | None:
        """The host the failure is about (the token host, or an API host)."""
        if self.failure is not None and self.failure.host:
            return self.failure.host
        return self.handshake.host if self.handshake else None

    @property
    def transitions(self) -> tuple[Transition, ...]:
        return (self.handshake.transitions if self.handshake else ()) + \
               (self.endpoints.transitions if self.endpoints else ())

    def to_dict(self) -> dict[str, Any]:
        diagnosis = self.handshake.diagnosis if self.handshake else None
        oauth = self.token.oauth if self.token else None
        doc = {"name": self.name, "platform": self.platform, "healthy": self.healthy, "stage": self.stage,
                "cause": self.cause, "summary": self.summary, "host": self.host,
                "token_host": self.handshake.host if self.handshake else None,
                "handshake": diagnosis.to_dict() if diagnosis is not None else None,
                "oauth": oauth.to_dict() if oauth is not None else None,
                "endpoints": [e.to_dict() for e in (self.endpoints.endpoints if self.endpoints else ())],
                "breaker": self.breaker.to_dict(),
                "transitions": [transition_to_dict(t, self.name) for t in self.transitions],
                "started_at": self.started_at.isoformat(timespec="seconds"), "ms": self.ms,
                **({"config_error": self.failure.summary} if self.failure and self.failure.cause == CONFIG_ERROR
                   else {})}
        # What to do, decided once here (tasks/remedies.py) for every reader downstream: the CLI
        # table, the report artifact and Slack render this list, none of them re-derives it.
        doc["remediation"] = remediation_for(doc) if not self.healthy else []
        return doc


# --- the stages -------------------------------------------------------------------------

def refusal(decision: Decision, host: str, stage_host_label: str = "") -> Failure:
    """The failure of a stage the breaker turned away: the last known cause, when it
    opened, when it probes, and the last diagnosis' fixes."""
    last = decision.last_failure or {}
    cause = str(last.get("cause") or "breaker_open")
    if decision.override is not None:
        why = (f"the breaker for {host} is forced open by an operator ({decision.override_reason or 'no reason given'}); "
               "no connection was made; it stays open until the override is cleared (cxhealth breaker clear)")
    else:
        since = f" since {utc_text(last['at'])}" if last.get("at") else ""
        because = f" because {cause}" if last else ""
        diagnosis = f"; the diagnosis then: {str(last['summary']).rstrip('.')}" if last.get("summary") else ""
        why = (f"the breaker for {host} is open{since}{because} (no connection was made; it lets one probe "
               f"through at {utc_text(decision.reopen_at) or 'a later run'}){diagnosis}")
    return Failure("breaker_open", cause, why[0].upper() + why[1:], host, tuple(last.get("remediation") or ()))


def handshake_lease_s(target: Target) -> float:
    """The worst case of the handshake stage (its probe lease): the name lookup plus the
    engine's budget of 3 timeouts (issue 14: a fixed 60 s let a second probe in while a
    probe with a 25 s timeout was still running)."""
    return 4 * float(target.timeout) + 5.0


def endpoints_lease_s(target: Target) -> float:
    """The worst case of the endpoints stage for an API host: every GET up to the retry
    policy's attempts and waits, within its budget."""
    from cxhealth.tasks.checks.retry import RetryPolicy

    retry = RetryPolicy()
    per_request = float(target.timeout) * retry.max_attempts + retry.max_backoff_s
    return len(target.endpoint_paths or ("/",)) * per_request + retry.budget_s + 5.0


def _early_failure(first: Any, endpoint: Any, policy: Any) -> tuple[str, str, tuple[str, ...]]:
    """Cause, summary and fixes the first failed probe alone shows (the diagnosis goes on and
    may refine them; the breaker counts the failure now)."""
    from cxhealth.tasks.tls import classify as cl
    from cxhealth.tasks.tls.model import Cause
    from cxhealth.tasks.tls.remediation import Facts, remediation_for

    codes = {10: Cause.CERT_EXPIRED, 9: Cause.CERT_NOT_YET_VALID, 62: Cause.HOSTNAME_MISMATCH,
             64: Cause.HOSTNAME_MISMATCH, 18: Cause.SELF_SIGNED, 19: Cause.SELF_SIGNED}
    summary = None
    if first.verify_code is not None:
        cause = codes.get(first.verify_code, Cause.UNTRUSTED_ROOT)
    else:
        try:
            verdict = cl.classify_handshake_failure(first, [first], host=endpoint.verify_name,
                                                    tls_min=policy.tls_min, tls_max=policy.tls_max,
                                                    client_cert_supplied=bool(policy.client_cert))
            cause, summary = verdict.cause, verdict.summary
        except Exception:  # noqa: BLE001 - a first guess must never cost the breaker its count
            cause = Cause.CONNECTION_RESET
    what = first.verify_message or first.reason or first.error_kind or "handshake failed"
    summary = summary or f"{endpoint.host}:{endpoint.port}: the handshake failed ({what})"
    fixes = remediation_for(cause, Facts(host=endpoint.host, port=endpoint.port, ca_bundle=policy.ca_bundle,
                                         tls_min=policy.tls_min, tls_max=policy.tls_max))
    return cause.value, summary, tuple(fixes)


def _first_probe_signature(first: Any) -> str:
    """What the first (verified) handshake saw, as a key: two checks with the same key met the same failure."""
    return ":".join(str(getattr(first, k, None)) for k in ("error_kind", "reason", "verify_code"))


def _recent(summary: Mapping[str, Any], now: datetime, window_s: float = 300.0) -> bool:
    try:
        at = datetime.fromisoformat(str(summary.get("at")).replace("Z", "+00:00"))
    except ValueError:
        return False
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return 0 <= (now - at).total_seconds() <= window_s


async def handshake_stage(target: Target, breaker: Breaker, *, clock: Clock = utcnow) -> HandshakeResult:
    """Diagnose the token host before any credential is sent (under its breaker)."""
    try:
        endpoint = target.endpoints_to_diagnose()[0]
    except (TargetConfigError, ValueError) as exc:
        return HandshakeResult(host="", port=0, failure=Failure("handshake", CONFIG_ERROR, str(exc)))
    host = endpoint.host
    decision = await breaker.admit_async(host, handshake_lease_s(target))
    view = BreakerView.of_decision(decision)
    if not decision.admitted:
        return HandshakeResult(host, endpoint.port, decision, breaker=view, failure=refusal(decision, host))
    early: dict[str, Any] = {}  # the failure as soon as it is known (issue 14: not after the whole diagnosis)

    async def on_handshake_failure(first: Any) -> None:
        if early.get("recorded"):
            return  # one failure per check, however many addresses (diagnosed at once) fail
        if first.error_kind in PROXY_NOTHING_REACHED:
            return  # the proxy failed this target: nothing reached the host (its breaker is not fed)
        early["recorded"] = True
        cause, summary, fixes = _early_failure(first, endpoint, policy)
        early["summary"] = failure_summary(cause, summary, fixes, host=host, stage="handshake", at=clock())
        early["summary"]["first_probe"] = signature = _first_probe_signature(first)
        # The same first-probe evidence was fully diagnosed by a check moments ago (within the window):
        # record that verdict, not this guess — this check may be cut short once the breaker opens.
        previous = (await asyncio.to_thread(breaker.status, host)).last_failure or {}
        if (previous.get("first_probe") == signature and previous.get("complete")
                and _recent(previous, clock(), breaker.config.window_s)):
            early["summary"] = dict(previous)
        early["t"] = await asyncio.to_thread(breaker.record_failure, host, early["summary"], decision)

    async def should_continue() -> bool:
        """An admitted diagnosis stops its extra probes once the host's breaker is open."""
        if early.get("t") is not None:
            early["stopped"] = True
            return False  # this very check opened (or reopened) it
        status = await asyncio.to_thread(breaker.status, host)
        go_on = status.state is BreakerState.CLOSED or (decision.is_probe and status.state is BreakerState.HALF_OPEN)
        early["stopped"] = early.get("stopped") or not go_on
        return go_on

    try:
        policy = target.policy()
        options = replace(target.diagnose_options(), on_handshake_failure=on_handshake_failure,
                          should_continue=should_continue)
        # Every address of the token host (several: resolve = ["h:443:a,b"], or DNS), contract §4.
        # One of the host's slots (hostlimit) for the whole diagnosis, taken before its deadline starts.
        async with limiter().slot(endpoint.host, endpoint.port):
            diagnosis: Diagnosis = await diagnose_addresses(endpoint, policy, options,
                                                            target.addresses_for(endpoint.host, endpoint.port))
    except (TargetConfigError, ValueError, OSError) as exc:  # e.g. a ca_bundle that cannot be read
        await asyncio.to_thread(breaker.release, host, decision)
        return HandshakeResult(host, endpoint.port, decision, breaker=view,
                               failure=Failure("handshake", CONFIG_ERROR, f"target {target.name!r}: {exc}", host))
    except BaseException:
        await asyncio.to_thread(breaker.release, host, decision)
        raise
    failure = None
    if diagnosis.ok:
        t = await asyncio.to_thread(breaker.record_success, host, decision)
    elif diagnosis.cause.value in PROXY_NOTHING_REACHED and not early.get("recorded"):
        # This target's proxy failed it; other targets reach the host directly or through another
        # proxy: the host's breaker is neither opened nor closed by it (its slot is freed).
        failure = Failure("handshake", diagnosis.cause.value, f"{host}:{endpoint.port}: {diagnosis.summary}", host,
                          tuple(diagnosis.remediation))
        await asyncio.to_thread(breaker.release, host, decision)
        t = None
    else:
        failure = Failure("handshake", diagnosis.cause.value, f"{host}:{endpoint.port}: {diagnosis.summary}", host,
                          tuple(diagnosis.remediation))
        if early.get("recorded"):
            t = early.get("t")
        else:
            t = await asyncio.to_thread(breaker.record_failure, host,
                                        failure_summary(diagnosis.cause.value, diagnosis.summary,
                                                        diagnosis.remediation, host=host, stage="handshake",
                                                        at=clock()), decision)
        if early.get("recorded") and not early.get("stopped"):
            # The whole diagnosis' verdict replaces the early guess in the store (callers turned away
            # while it is open read the cause and the fix) and in the transition this check hands out.
            final = failure_summary(diagnosis.cause.value, diagnosis.summary, diagnosis.remediation,
                                    host=host, stage="handshake", at=clock())
            final.update(first_probe=early["summary"].get("first_probe"), complete=True)
            await asyncio.to_thread(breaker.amend_failure, host, early["summary"], final, decision)
            if t is not None:
                t = replace(t, summary=final)
        elif t is not None and early.get("recorded"):
            t = replace(t, summary=early["summary"])  # cut short: the best verdict known is what was recorded
    if t is not None or not diagnosis.ok:
        view = BreakerView.of_status(await asyncio.to_thread(breaker.status, host), decision)
    return HandshakeResult(host, endpoint.port, decision, diagnosis, view, (t,) if t is not None else (), failure)


async def token_stage(target: Target, client: Any, env: Mapping[str, str] | None = None) -> TokenResult:
    """The curl-equivalent token request on *client*. The token never goes into a report."""
    try:
        checked = await check_token(target, client=client, env=env)
    except TargetConfigError as exc:  # a secret that is not set: this target's problem, named
        return TokenResult(failure=Failure("oauth", CONFIG_ERROR, str(exc)))
    oauth = checked.result
    if oauth.ok and checked.token is not None:
        return TokenResult(oauth, checked.token)
    cause = oauth.cause if oauth.cause not in (None, "ok") else (oauth.error or f"http_{oauth.status}")
    return TokenResult(oauth, None, Failure("oauth", str(cause),
                                            f"token request to {oauth.host}: {oauth.summary or oauth.error or oauth.status}",
                                            oauth.host or None, tuple(oauth.remediation)))


async def endpoints_stage(target: Target, breaker: Breaker, token: AccessToken, client: Any, *,
                          token_host: str | None = None, clock: Clock = utcnow) -> EndpointsResult:
    """GET each endpoint with the token. Every host is admitted by the breaker
    before its first request (a NICE API host is known only after discovery);
    the token host was admitted by the handshake stage."""
    token_host = token_host or target.endpoints_to_diagnose()[0].host
    decisions: dict[str, Decision] = {}
    refusals: dict[str, Failure] = {}

    async def admit(host: str) -> str | None:
        if host == token_host:
            return None
        if host not in decisions:
            decision = await breaker.admit_async(host, endpoints_lease_s(target))
            decisions[host] = decision
            if not decision.admitted:
                refusals[host] = refusal(decision, host)
        return refusals[host].summary if host in refusals else None

    results: Sequence[EndpointResult] = await check_endpoints(target, token, client=client, admit=admit)
    failed_hosts: dict[str, EndpointResult] = {}
    for r in results:
        if r.cause not in (None, "ok") and r.host not in failed_hosts:
            failed_hosts[r.host] = r
    transitions: list[Transition] = []
    for host, decision in decisions.items():
        if not decision.admitted:
            continue
        bad = failed_hosts.get(host)
        if bad is not None and str(bad.cause) in PROXY_NOTHING_REACHED:
            await asyncio.to_thread(breaker.release, host, decision)  # the proxy failed: not the host
            continue
        if bad is not None:
            t = await asyncio.to_thread(breaker.record_failure, host,
                                        failure_summary(str(bad.cause), bad.summary, bad.remediation, host=host,
                                                        stage="endpoints", at=clock()), decision)
        else:
            t = await asyncio.to_thread(breaker.record_success, host, decision)
        if t is not None:
            transitions.append(t)
    failure: Failure | None = None
    view: BreakerView | None = None
    if refusals:
        host, failure = next(iter(refusals.items()))
        view = BreakerView.of_decision(decisions[host])
    first_bad = next((r for r in results if not r.ok), None)
    if failure is None and first_bad is not None:
        cause = first_bad.cause if first_bad.cause not in (None, "ok") else (first_bad.error or f"http_{first_bad.status}")
        failure = Failure("endpoints", str(cause),
                          f"{first_bad.path} on {first_bad.host}: {first_bad.summary or first_bad.error or first_bad.status}",
                          first_bad.host or None, tuple(first_bad.remediation))
    return EndpointsResult(tuple(results), tuple(transitions), view, failure)


def assemble(target: Target, started_at: datetime, ms: float | None, handshake: HandshakeResult | None,
             token: TokenResult | None = None, endpoints: EndpointsResult | None = None) -> TargetReport:
    """The report of one target from its stages' values: the first failure wins."""
    failure = next((s.failure for s in (handshake, token, endpoints) if s is not None and s.failure is not None), None)
    view = handshake.breaker if handshake is not None else BreakerView()
    if endpoints is not None and endpoints.breaker is not None:
        view = endpoints.breaker
    return TargetReport(name=target.name, platform=target.platform, started_at=started_at, ms=ms,
                        handshake=handshake, token=token.without_token() if token is not None else None,
                        endpoints=endpoints, failure=failure, breaker=view)


async def check_target(target: Target, breaker: Breaker, env: Mapping[str, str] | None = None, *,
                       clock: Clock = utcnow) -> TargetReport:
    """The whole check of one target: handshake, then token and endpoints on one verified client.

    Never raises for the target's own trouble (an unreachable host, a missing
    secret, a CA file that cannot be read): that is the report's failure.
    """
    started_at, start = clock(), time.perf_counter()
    handshake = await handshake_stage(target, breaker, clock=clock)
    token = endpoints = None
    if handshake.ok:
        try:
            client = client_for(target)
        except (TargetConfigError, ValueError, OSError) as exc:
            token = TokenResult(failure=Failure("oauth", CONFIG_ERROR, f"target {target.name!r}: {exc}"))
        else:
            async with client:
                token = await token_stage(target, client, env)
                if token.ok:
                    assert token.token is not None
                    endpoints = await endpoints_stage(target, breaker, token.token, client,
                                                      token_host=handshake.host, clock=clock)
    ms = round((time.perf_counter() - start) * 1000, 1)
    return assemble(target, started_at, ms, handshake, token, endpoints)


def config_error_report(name: str, error: str, *, platform: str = "?", clock: Clock = utcnow) -> TargetReport:
    """The report of a target whose configuration could not be loaded at all (e.g. its block)."""
    return TargetReport(name=name, platform=platform, started_at=clock(), ms=0.0,
                        failure=Failure("handshake", CONFIG_ERROR, error))


async def check_targets(targets: Sequence[Target], breaker: Breaker,
                        env: Mapping[str, str] | None = None) -> list[TargetReport]:
    """All targets concurrently; reports in input order."""
    return list(await asyncio.gather(*(check_target(t, breaker, env) for t in targets)))
