"""The OAuth token smoke test: obtain a token the way the integration does.

One POST to the target's token URL with its platform's grant (Genesys and
generic: client credentials; NICE: password grant with an access key; always
HTTP Basic client authentication), over the target's verifying TLS client,
under the retry rules of :mod:`tasks.checks.retry`.

The result says status, latency, ``token_type``/``expires_in`` validity and the
error body's ``error`` code. The token itself leaves only inside an
:class:`AccessToken` (its repr hides it) for the endpoint checks; neither the
token nor any secret appears in a result, a log line or an exception message.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import httpx

from cxhealth.tasks.checks.failures import Diagnoser, explain_failure, redact, safe_code
from cxhealth.tasks.checks.http import client_for, tls_facts, total_deadline_s, within_deadline
from cxhealth.tasks.checks.retry import Clock, RetryPolicy, send_with_retry
from cxhealth.tasks.hostlimit import limiter
from cxhealth.tasks.platforms import host_port, tenant_id_from_id_token
from cxhealth.tasks.targets import Secret, Target
from cxhealth.tasks.tls.engine import diagnose

_NOT_SET = object()


class AccessToken:
    """A bearer token for the endpoint checks; never printed, pickled or put in a result."""

    __slots__ = ("_secret", "token_type", "expires_in", "tenant_id")

    def __init__(self, value: str, token_type: str, expires_in: int, tenant_id: str | None = None) -> None:
        self._secret = Secret(value, "access_token")
        self.token_type = token_type
        self.expires_in = expires_in
        self.tenant_id = tenant_id

    def authorization(self) -> str:
        return f"Bearer {self._secret.reveal()}"

    def __repr__(self) -> str:
        return f"AccessToken(***, token_type={self.token_type!r}, expires_in={self.expires_in})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an AccessToken is not picklable: keep it in the process that obtained it")


@dataclass(frozen=True)
class OAuthResult:
    """The token smoke test's verdict: contract §2's ``oauth`` object."""

    ok: bool
    status: int | None
    ms: float | None
    error: str | None
    attempts: int
    url: str
    grant: str
    host: str = ""                    # the token host (what a breaker keys on)
    waits_s: tuple[float, ...] = ()
    stopped: str | None = None
    error_description: str | None = None
    token_type: str | None = None
    expires_in: int | None = None
    protocol: str | None = None
    cipher: str | None = None
    cause: str | None = None          # the TLS cause of the connection ("ok", or the engine's code)
    summary: str | None = None
    remediation: tuple[str, ...] = ()
    diagnosis: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "status": self.status, "ms": self.ms, "error": self.error,
            "error_description": self.error_description, "attempts": self.attempts,
            "waits_s": list(self.waits_s), "stopped": self.stopped, "url": self.url, "host": self.host,
            "grant": self.grant,
            "token_type": self.token_type, "expires_in": self.expires_in, "protocol": self.protocol,
            "cipher": self.cipher, "cause": self.cause, "summary": self.summary,
            "remediation": list(self.remediation), "diagnosis": self.diagnosis,
        }


@dataclass(frozen=True)
class TokenCheck:
    """The result (safe to show) and the token (only for the next stage, in-process)."""

    result: OAuthResult
    token: AccessToken | None = field(default=None, repr=False)


def token_request_parts(target: Target, env: Mapping[str, str] | None = None
                        ) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(headers, form, secrets) of *target*'s token request; secrets resolved now, at use time.

    Raises:
        TargetConfigError: a secret's environment variable is not set (names the variable).
    """
    profile = target.profile()
    client_secret = target.client_secret(env)
    basic = base64.b64encode(f"{target.client_id}:{client_secret.reveal()}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}
    secrets = [client_secret.reveal(), basic]
    if profile.grant == "password":
        key_secret = target.access_key_secret(env)
        form = {"grant_type": "password", "username": target.access_key_id or "", "password": key_secret.reveal()}
        secrets.append(key_secret.reveal())
    else:
        form = {"grant_type": "client_credentials"}
    return headers, form, secrets


async def check_token(target: Target, *, client: httpx.AsyncClient | None = None,
                      env: Mapping[str, str] | None = None, retry_policy: RetryPolicy = RetryPolicy(),
                      clock: Clock | None = None, diagnoser: Diagnoser | None = diagnose) -> TokenCheck:
    """Run the token smoke test for *target*.

    Args:
        target: the target (its platform profile decides URL and grant).
        client: an HTTP client from :func:`tasks.checks.http.client_for`; built (and closed) if None.
        env: where secrets are looked up (default ``os.environ``).
        retry_policy, clock: the retry rules and the clock they run on (tests inject a fake).
        diagnoser: the TLS engine, run when the connection itself fails.

    Returns:
        TokenCheck: ``.result`` (``to_dict()`` for reports) and ``.token`` (None unless ok).

    Raises:
        TargetConfigError: a secret's environment variable is missing.
    """
    profile = target.profile()
    headers, form, secrets = token_request_parts(target, env)
    own_client = client is None
    client = client or client_for(target)
    last_ms: list[float] = []

    async def send() -> httpx.Response:
        # a slot of the host first (hostlimit): the wait is neither timed nor under the deadline
        async with limiter().slot(*host_port(profile.token_url)):
            started = time.perf_counter()
            try:
                return await within_deadline(client.post(profile.token_url, headers=headers, data=form),
                                             total_deadline_s(target.timeout))
            finally:
                last_ms.append(round((time.perf_counter() - started) * 1000, 1))

    try:
        outcome = await send_with_retry(send, retry_policy, clock)
    finally:
        if own_client:
            await client.aclose()
    base = dict(url=profile.token_url, host=host_port(profile.token_url)[0], grant=profile.grant,
                attempts=outcome.attempts, waits_s=outcome.waits, stopped=outcome.stopped,
                ms=last_ms[-1] if last_ms else None)
    if outcome.response is None:
        assert outcome.error is not None
        explained = await explain_failure(outcome.error, target.endpoint_for(*host_port(profile.token_url)),
                                          target.policy(), target.diagnose_options(), diagnoser)
        return TokenCheck(OAuthResult(ok=False, status=None, error=explained.error, cause=explained.cause,
                                      summary=explained.summary, remediation=explained.remediation,
                                      diagnosis=explained.diagnosis, **base))
    return _read_token_response(outcome.response, secrets, base)


def _read_token_response(response: httpx.Response, secrets: list[str], base: dict[str, Any]) -> TokenCheck:
    protocol, cipher = tls_facts(response)
    status = response.status_code
    common = dict(status=status, protocol=protocol, cipher=cipher, cause="ok", **base)
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not 200 <= status < 300:
        code = safe_code(body.get("error")) if isinstance(body, dict) else None
        if code is None and isinstance(body, dict):
            code = safe_code(body.get("code"))  # Genesys 429: "too.many.requests.retry.after"
        description = None
        if isinstance(body, dict):
            text = body.get("error_description") or body.get("description") or body.get("message")
            description = redact(text, secrets)
        return TokenCheck(OAuthResult(ok=False, error=code or f"http_{status}", error_description=description,
                                      summary=f"the token endpoint answered HTTP {status}"
                                              + (f" ({code})" if code else ""),
                                      remediation=_status_fix(status), **common))
    if not isinstance(body, dict):
        return TokenCheck(OAuthResult(ok=False, error="invalid_token_response",
                                      summary=f"the token endpoint answered HTTP {status} but not with a JSON object",
                                      remediation=(_NOT_A_TOKEN_ANSWER,), **common))
    token_type = body.get("token_type")
    expires_in = body.get("expires_in")
    access_token = body.get("access_token")
    shown_type = token_type if isinstance(token_type, str) and len(token_type) < 40 else None
    shown_expiry = _seconds(expires_in)
    problem = None
    if not isinstance(access_token, str) or not access_token:
        problem = ("missing_access_token", f"the token endpoint answered HTTP {status} without an access_token",
                   _NOT_A_TOKEN_ANSWER)
    elif token_type is not None and (shown_type is None or shown_type.lower() != "bearer"):
        problem = ("invalid_token_type", f"the token endpoint issued a token of type {shown_type!r}, not bearer",
                   "The credentials were accepted (HTTP 200), but the token is not a Bearer token and the API calls "
                   "send it as one: check the OAuth client's token settings on the platform (e.g. sender-constrained "
                   "or DPoP tokens) and the grant.")
    elif expires_in is not None and (shown_expiry is None or shown_expiry <= 0):
        problem = ("invalid_expires_in", "expires_in is not a positive number of seconds",
                   "The credentials were accepted (HTTP 200), but expires_in is not a positive number of seconds, "
                   "so the integration cannot tell when to refresh: check what answers at token_url (a gateway "
                   "or proxy rewriting the answer?).")
    if problem:
        return TokenCheck(OAuthResult(ok=False, error=problem[0], summary=problem[1], token_type=shown_type,
                                      expires_in=shown_expiry, remediation=(problem[2],), **common))
    # RFC 6749 §5.1: token_type is required and expires_in recommended; a server that omits them
    # still issued a token the API calls can use (as a Bearer token): said, not failed.
    notes = [n for n, missing in (("no token_type: used as a Bearer token", token_type is None),
                                  ("no expires_in", expires_in is None)) if missing]
    token = AccessToken(access_token, shown_type or "bearer", shown_expiry or 0,  # type: ignore[arg-type]
                        tenant_id_from_id_token(body.get("id_token")))
    facts = [shown_type] if shown_type else []
    facts += [f"expires in {shown_expiry} s"] if shown_expiry is not None else []
    return TokenCheck(OAuthResult(ok=True, error=None, token_type=shown_type, expires_in=shown_expiry,
                                  summary=f"token obtained ({', '.join(facts + notes)})", **common),
                      token)


_NOT_A_TOKEN_ANSWER = ("The credentials may well be right: what answers at token_url is not an OAuth token "
                       "endpoint's answer (a login page, a proxy's or gateway's own page?). Check token_url and "
                       "the grant type.")


def _status_fix(status: int) -> tuple[str, ...]:
    """The token endpoint's own refusal, read by its status (the stage's checklist follows for 4xx)."""
    if status == 429:
        return ("The token endpoint throttled this client (HTTP 429): request a token less often (reuse it "
                "until it expires) and check what else shares this OAuth client.",)
    if status >= 500:
        return (f"The token endpoint failed (HTTP {status}): a platform-side error, not the credentials "
                "(503/504 were retried within the budget). Check the platform's status page.",)
    return ()


def _seconds(value: Any) -> int | None:
    """expires_in as a whole number of seconds: a JSON number, or digits in a string (as some
    servers, e.g. Azure AD v1, send it); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 12:
        return int(value)
    return None
