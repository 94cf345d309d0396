"""Turn a request that failed below HTTP into a result: the engine names its cause.

A handshake failure on the token or an endpoint host is not reported as
"connect error": the TLS engine diagnoses the host (its own bounded probes) and
the result carries the cause, summary and remediation. Text that came from a
server is reduced to safe codes, and any known secret is redacted from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

import httpx

from cxhealth.tasks.checks.http import RealHostnameMismatch
from cxhealth.tasks.tls.engine import DiagnoseOptions, diagnose
from cxhealth.tasks.tls.model import Diagnosis, Endpoint
from cxhealth.tasks.tls.policy import TLSPolicy

Diagnoser = Callable[[Endpoint, TLSPolicy, DiagnoseOptions], Awaitable[Diagnosis]]

# Failures that may be the TLS layer's (handshake, or the first read of a TLS 1.3
# connection whose server wanted a client certificate: platform-facts.md).
_DIAGNOSED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError)
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.:\-]{1,80}$")


def error_code(exc: BaseException) -> str:
    """``httpx.ConnectTimeout`` → ``"connect_timeout"``: a stable code for a transport failure."""
    name = type(exc).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def safe_code(value: object) -> str | None:
    """A server-sent error code, if it looks like one (``invalid_client``); else None."""
    return value if isinstance(value, str) and _SAFE_CODE.match(value) else None


def redact(text: object, secrets: Iterable[str], limit: int = 200) -> str | None:
    """Server-sent text with every known secret replaced by ``***``, cut to *limit* chars."""
    if not isinstance(text, str):
        return None
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:limit]


@dataclass(frozen=True)
class FailureExplanation:
    error: str
    cause: str | None
    summary: str | None
    remediation: tuple[str, ...] = ()
    diagnosis: dict[str, Any] | None = None


async def explain_failure(exc: BaseException, endpoint: Endpoint, policy: TLSPolicy, options: DiagnoseOptions,
                          diagnoser: Diagnoser | None = diagnose,
                          cache: dict[tuple[str, int], Diagnosis] | None = None) -> FailureExplanation:
    """Diagnose the host a request failed to reach (once per host when *cache* is shared)."""
    code = error_code(exc)
    if isinstance(exc.__cause__, RealHostnameMismatch):
        # Our check, not OpenSSL's: the engine verifies against the SNI name and would call this healthy.
        mismatch = exc.__cause__
        return FailureExplanation(
            error=code, cause="hostname_mismatch",
            summary=f"With SNI {mismatch.sni!r} the server's verified certificate does not cover the real host "
                    f"{mismatch.host!r}; nothing was sent.",
            remediation=(f"Remove the sni override, or set it to a name the certificate for {mismatch.host} covers.",
                         "Check that the resolve override points at the right server for this host."))
    if not isinstance(exc, _DIAGNOSED) or diagnoser is None:
        return FailureExplanation(error=code, cause=None,
                                  summary=f"the request to {endpoint.host}:{endpoint.port} failed: {code}")
    key = (endpoint.host, endpoint.port)
    found = cache.get(key) if cache is not None else None
    if found is None:
        found = await diagnoser(endpoint, policy, options)
        if cache is not None:
            cache[key] = found
    return FailureExplanation(error=code, cause=found.cause.value, summary=found.summary,
                              remediation=tuple(found.remediation), diagnosis=found.to_dict())
