"""Downstream endpoint checks: a GET per configured endpoint, with the bearer token.

Per request: status, latency, and the TLS version and cipher of the connection
that carried it — gateways route paths to clusters with different TLS settings
(the guide's section-1 trap), and this is where that drift becomes visible. A
connection that fails is diagnosed by the TLS engine (its cause, not "connect
error"), once per host; the host's remaining endpoints are then not attempted
(another handshake would fail the same way and only feed the breaker).

NICE targets without ``api_base`` first read the discovery document (reported
as the first endpoint result) to learn the API host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import httpx

from cxhealth.tasks.checks.failures import Diagnoser, explain_failure, safe_code
from cxhealth.tasks.checks.http import client_for, tls_connection, tls_facts, total_deadline_s, within_deadline
from cxhealth.tasks.checks.oauth import AccessToken, OAuthResult, check_token
from cxhealth.tasks.checks.retry import Clock, RetryPolicy, send_with_retry
from cxhealth.tasks.hostlimit import limiter
from cxhealth.tasks.platforms import DiscoveryError, api_base_from_discovery, host_port
from cxhealth.tasks.targets import Target
from cxhealth.tasks.tls.engine import diagnose
from cxhealth.tasks.tls.model import Diagnosis
from cxhealth.tasks.tls.proxy import ProxyConfigError

_HTTP_ERRORS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}

# Consulted before the first request to each host: None admits, a string is why not
# (the circuit breaker's hook; a discovered NICE API host is only known here).
Admit = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class EndpointResult:
    """One endpoint's verdict: an item of contract §2's ``endpoints`` list."""

    path: str
    url: str
    host: str
    ok: bool
    status: int | None
    ms: float | None
    protocol: str | None
    cipher: str | None
    cause: str | None            # TLS cause of the connection: "ok", the engine's code, or None (not attempted)
    error: str | None
    attempts: int
    waits_s: tuple[float, ...] = ()
    stopped: str | None = None
    skipped: bool = False
    summary: str | None = None
    remediation: tuple[str, ...] = ()
    diagnosis: dict[str, Any] | None = field(default=None, compare=False)
    proxy: str | None = None     # the proxy URL the request went through (no credentials), None when direct
    # The new verified connection this request opened, for the history (contract §4):
    # ``address``, ``handshake_ms``, ``chain``; None on a reused connection or a failure.
    tls: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "url": self.url, "host": self.host, "proxy": self.proxy, "ok": self.ok,
            "status": self.status,
            "ms": self.ms, "protocol": self.protocol, "cipher": self.cipher, "cause": self.cause,
            "error": self.error, "attempts": self.attempts, "waits_s": list(self.waits_s),
            "stopped": self.stopped, "skipped": self.skipped, "summary": self.summary,
            "remediation": list(self.remediation), "diagnosis": self.diagnosis,
            **({"tls": self.tls} if self.tls else {}),
        }


@dataclass(frozen=True)
class HttpChecks:
    """Both HTTP stages of one target."""

    oauth: OAuthResult
    endpoints: tuple[EndpointResult, ...] = ()

    @property
    def ok(self) -> bool:
        return self.oauth.ok and all(e.ok for e in self.endpoints)

    def to_dict(self) -> dict[str, Any]:
        return {"oauth": self.oauth.to_dict(), "endpoints": [e.to_dict() for e in self.endpoints]}


def endpoint_url(api_base: str, endpoint: str) -> str:
    return endpoint if endpoint.startswith("https://") else api_base.rstrip("/") + endpoint


class _Run:
    """One pass over a target's endpoints, sharing the client and the per-host diagnoses."""

    def __init__(self, target: Target, client: httpx.AsyncClient, retry_policy: RetryPolicy,
                 clock: Clock | None, diagnoser: Diagnoser | None, admit: Admit | None = None) -> None:
        self.target, self.client, self.retry_policy, self.clock = target, client, retry_policy, clock
        self.diagnoser = diagnoser
        self.admit = admit
        self.diagnoses: dict[tuple[str, int], Diagnosis] = {}
        self.failed_hosts: dict[tuple[str, int], EndpointResult] = {}

    async def get(self, path: str, url: str, headers: Mapping[str, str],
                  params: Mapping[str, str] | None = None) -> tuple[EndpointResult, httpx.Response | None]:
        key = host_port(url)
        if key in self.failed_hosts:
            prior = self.failed_hosts[key]
            return EndpointResult(path=path, url=url, host=key[0], ok=False, status=None, ms=None, protocol=None,
                                  cipher=None, cause=prior.cause, error=prior.error, attempts=0, skipped=True,
                                  summary=f"not attempted: {key[0]}:{key[1]} already failed "
                                          f"({prior.cause or prior.error})",
                                  remediation=prior.remediation), None
        if self.admit is not None:
            refused = await self.admit(key[0])
            if refused is not None:
                return EndpointResult(path=path, url=url, host=key[0], ok=False, status=None, ms=None, protocol=None,
                                      cipher=None, cause=None, error="breaker_open", attempts=0, skipped=True,
                                      summary=f"not attempted: {refused}"), None
        last_ms: list[float] = []
        tls_ms: list[float] = []
        events: set[str] = set()  # the trace events of the request being sent

        async def trace(event: str, info: Mapping[str, Any]) -> None:  # httpcore's request trace
            events.add(event)
            if event == "connection.start_tls.started":
                tls_ms[:] = [time.perf_counter()]
            elif event == "connection.start_tls.complete" and tls_ms:
                tls_ms[:] = [tls_ms[0], time.perf_counter()]

        async def get_once() -> httpx.Response:
            events.clear()
            return await self.client.get(url, headers=headers, params=params, extensions={"trace": trace})

        async def get_or_replay() -> httpx.Response:
            try:
                return await get_once()
            except _STALE_ERRORS:
                if not stale_keepalive(events):
                    raise
            # The pooled connection had been closed by the server while idle (its keep-alive
            # timeout ran out as the request went): the GET is sent once more, on a new connection.
            return await get_once()

        async def send() -> httpx.Response:
            # a slot of the host first (hostlimit): the wait is neither timed nor under the deadline
            async with limiter().slot(*host_port(url)):
                started = time.perf_counter()
                try:
                    return await within_deadline(get_or_replay(), total_deadline_s(self.target.timeout))
                finally:
                    last_ms.append(round((time.perf_counter() - started) * 1000, 1))

        outcome = await send_with_retry(send, self.retry_policy, self.clock)
        common = dict(path=path, url=url, host=key[0], attempts=outcome.attempts, waits_s=outcome.waits,
                      stopped=outcome.stopped, ms=last_ms[-1] if last_ms else None)
        if outcome.response is None:
            assert outcome.error is not None
            explained = await explain_failure(outcome.error, self.target.endpoint_for(*key), self.target.policy(),
                                              self.target.diagnose_options(), self.diagnoser, self.diagnoses)
            result = EndpointResult(ok=False, status=None, protocol=None, cipher=None, cause=explained.cause,
                                    error=explained.error, summary=explained.summary,
                                    remediation=explained.remediation, diagnosis=explained.diagnosis,
                                    proxy=self.proxy_url(key), **common)
            if explained.cause not in (None, "ok"):
                self.failed_hosts[key] = result
            return result, None
        response = outcome.response
        protocol, cipher = tls_facts(response)
        status = response.status_code
        ok = 200 <= status < 300
        error = None if ok else _HTTP_ERRORS.get(status, f"http_{status}")
        summary = f"HTTP {status} over {protocol or 'TLS'}"
        if status == 401:
            summary = "HTTP 401: the token was refused (expired, revoked, or issued for another environment)"
        elif status == 403:
            summary = "HTTP 403: the OAuth client lacks the permission this endpoint needs"
        elif not ok:
            code = _body_code(response)
            summary += f" ({code})" if code else ""
        proxy = self.proxy_url(key)
        tls = None
        if len(tls_ms) == 2:  # this request opened the connection: its handshake is the host's observation
            tls = tls_connection(response, proxied=proxy is not None)
            if tls is not None:
                tls["handshake_ms"] = round((tls_ms[1] - tls_ms[0]) * 1000, 2)
        return EndpointResult(ok=ok, status=status, protocol=protocol, cipher=cipher, cause="ok", error=error,
                              summary=summary, proxy=proxy, tls=tls, **common), response

    def proxy_url(self, key: tuple[str, int]) -> str | None:
        """The proxy this host's requests go through: the client's choice (the target's proxy settings)."""
        try:
            proxy = self.target.endpoint_for(*key).proxy
        except ProxyConfigError:
            return None
        return proxy.url if proxy is not None else None


# What a request on a kept-alive connection meets when the server closed it while idle.
_STALE_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def stale_keepalive(events: set[str]) -> bool:
    """Whether a failed request went out on a reused connection and got no byte of an answer.

    A server may close an idle keep-alive connection at the moment a client takes it from
    its pool (nginx, Apache, load balancers: each has an idle timeout); the request then
    meets a closed connection. Such a GET is sent again once on a new connection, as
    browsers and Go's ``net/http`` do for idempotent requests. Never after a new
    connection failed (no TCP connect or TLS handshake is ever retried), never once
    response headers had arrived, never for the token POST.
    """
    return ("connection.connect_tcp.started" not in events
            and "http11.receive_response_headers.complete" not in events)


def _body_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return safe_code(body.get("code") or body.get("error")) if isinstance(body, dict) else None


async def check_endpoints(target: Target, token: AccessToken, *, client: httpx.AsyncClient | None = None,
                          api_base: str | None = None, retry_policy: RetryPolicy = RetryPolicy(),
                          clock: Clock | None = None, diagnoser: Diagnoser | None = diagnose,
                          admit: Admit | None = None) -> tuple[EndpointResult, ...]:
    """GET each of *target*'s endpoints with *token*; sequential, in the configured order.

    Args:
        target: the target; ``target.endpoint_paths`` are paths under the API base or https URLs.
        token: from :func:`tasks.checks.oauth.check_token`.
        client: from :func:`tasks.checks.http.client_for`; built (and closed) if None.
        api_base: overrides the profile's (and skips NICE discovery).
        retry_policy, clock, diagnoser: as for :func:`check_token`.
        admit: asked before the first request to each host (the breaker); a refused
            host's endpoints are skipped with ``error="breaker_open"`` and no connection.

    Returns:
        One :class:`EndpointResult` per endpoint, preceded by the discovery request's
        for NICE targets that discover their API base.
    """
    own_client = client is None
    client = client or client_for(target)
    run = _Run(target, client, retry_policy, clock, diagnoser, admit)
    results: list[EndpointResult] = []
    try:
        profile = target.profile()
        base = api_base or profile.api_base
        if base is None and profile.discovery_url:
            discovery, base = await _discover(run, profile.discovery_url, target.tenant_id or token.tenant_id)
            results.append(discovery)
        headers = {"Authorization": token.authorization()}
        for endpoint in target.endpoint_paths:
            if base is None and not endpoint.startswith("https://"):
                results.append(EndpointResult(path=endpoint, url="", host="", ok=False, status=None, ms=None,
                                              protocol=None, cipher=None, cause=None, error="discovery_failed",
                                              attempts=0, skipped=True,
                                              summary="not attempted: the API base could not be discovered"))
                continue
            result, _ = await run.get(endpoint, endpoint_url(base or "", endpoint), headers)
            results.append(result)
    finally:
        if own_client:
            await client.aclose()
    return tuple(results)


async def _discover(run: _Run, discovery_url: str, tenant_id: str | None) -> tuple[EndpointResult, str | None]:
    path = urlsplit(discovery_url).path
    if not tenant_id:
        return EndpointResult(path=path, url=discovery_url, host=host_port(discovery_url)[0], ok=False, status=None,
                              ms=None, protocol=None, cipher=None, cause=None, error="tenant_id_unknown", attempts=0,
                              skipped=True,
                              summary="no tenant id: the id_token carried none; set tenant_id on the target"), None
    result, response = await run.get(path, discovery_url, {}, params={"tenantId": tenant_id})
    if response is None or not result.ok:
        return result, None
    try:
        return result, api_base_from_discovery(response.json())
    except (ValueError, DiscoveryError) as exc:
        message = str(exc) if isinstance(exc, DiscoveryError) else "the discovery document is not JSON"
        invalid = {**_fields(result), "ok": False, "error": "discovery_invalid", "summary": message}
        return EndpointResult(**invalid), None


def _fields(result: EndpointResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in EndpointResult.__dataclass_fields__}


async def run_http_checks(target: Target, *, env: Mapping[str, str] | None = None,
                          client: httpx.AsyncClient | None = None, retry_policy: RetryPolicy = RetryPolicy(),
                          clock: Clock | None = None, diagnoser: Diagnoser | None = diagnose) -> HttpChecks:
    """The token smoke test, then (if it passed) the endpoint checks, on one client.

    The token never leaves this call: use it from one task so it is never persisted.
    """
    own_client = client is None
    client = client or client_for(target)
    try:
        token_check = await check_token(target, client=client, env=env, retry_policy=retry_policy, clock=clock,
                                        diagnoser=diagnoser)
        if token_check.token is None:
            return HttpChecks(token_check.result)
        endpoints = await check_endpoints(target, token_check.token, client=client, retry_policy=retry_policy,
                                          clock=clock, diagnoser=diagnoser)
        return HttpChecks(token_check.result, endpoints)
    finally:
        if own_client:
            await client.aclose()
