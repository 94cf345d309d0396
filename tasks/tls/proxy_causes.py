"""The proxy-level causes: what a failed CONNECT means, and what to do about it.

Pure functions over the probe's evidence (``ProbeResult.proxy``: the proxy's
URL, where it came from, its status line, the schemes it offered, the first
line of its error body, squid's ``X-Squid-Error``). ``classify`` and
``remediation`` dispatch the four ``proxy_*`` causes here.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from .model import Cause
from .proxy import PROXY_AUTH_REQUIRED, PROXY_REFUSED, PROXY_UNREACHABLE, PROXY_UPSTREAM_FAILURE, authority

PROXY_CAUSES = frozenset({Cause.PROXY_UNREACHABLE, Cause.PROXY_AUTH_REQUIRED, Cause.PROXY_REFUSED,
                          Cause.PROXY_UPSTREAM_FAILURE})
_KIND_CAUSE = {PROXY_UNREACHABLE: Cause.PROXY_UNREACHABLE, PROXY_AUTH_REQUIRED: Cause.PROXY_AUTH_REQUIRED,
               PROXY_REFUSED: Cause.PROXY_REFUSED, PROXY_UPSTREAM_FAILURE: Cause.PROXY_UPSTREAM_FAILURE}

# squid's error page names (X-Squid-Error: NAME ERRNO), in words.
_SQUID_ERRORS = {
    "ERR_DNS_FAIL": "the proxy cannot resolve the host name",
    "ERR_CONNECT_FAIL": "the proxy's connection to the host failed",
    "ERR_READ_TIMEOUT": "the host did not answer the proxy in time",
    "ERR_READ_ERROR": "the proxy's connection to the host broke",
    "ERR_WRITE_ERROR": "the proxy could not write to the host",
    "ERR_LIFETIME_EXP": "the proxy's connection to the host outlived its lifetime",
    "ERR_SECURE_CONNECT_FAIL": "the proxy's TLS connection to the host failed",
    "ERR_SOCKET_FAILURE": "the proxy could not open a socket",
    "ERR_ZERO_SIZE_OBJECT": "the host closed the proxy's connection without an answer",
    "ERR_SHUTTING_DOWN": "the proxy is shutting down",
    "ERR_INVALID_URL": "the proxy finds the requested host:port invalid",
    "ERR_INVALID_REQ": "the proxy finds the request invalid",
    "ERR_UNSUP_REQ": "the proxy does not support this request",
    "ERR_FORWARDING_DENIED": "the proxy refuses to forward it",
    "ERR_ACCESS_DENIED": "an access rule of the proxy denies it",
    "ERR_CACHE_ACCESS_DENIED": "the proxy requires authentication",
    "ERR_GATEWAY_FAILURE": "the proxy's gateway failed",
    "ERR_CANNOT_FORWARD": "the proxy cannot forward the request (no DNS answer for the host or no route to it)",
}


def _squid_reason(evidence: Mapping[str, Any]) -> str | None:
    raw = evidence.get("x_squid_error")
    if not raw:
        return None
    name, _, errno_text = str(raw).partition(" ")
    words = _SQUID_ERRORS.get(name)
    detail = ""
    if errno_text.strip().isdigit() and int(errno_text) > 0:
        detail = f": {os.strerror(int(errno_text)).lower()}"
    return f"{words}{detail} ({raw})" if words else str(raw)


def proxy_verdict(kind: str, message: str | None, evidence: Mapping[str, Any] | None, host: str,
                  port: int) -> tuple[Cause, str, dict[str, Any]]:
    """(cause, summary, details) for a connection the proxy did not tunnel."""
    ev = dict(evidence or {})
    cause = _KIND_CAUSE[kind]
    url = ev.get("url", "the proxy")
    source = ev.get("source")
    via = f"{url} (from {source})" if source and source != "--proxy" else str(url)
    target = f"{host}:{port}"
    status = ev.get("status_line")
    said = f"'{status}'" if status else None
    body = ev.get("body_first_line")
    squid = _squid_reason(ev)
    details: dict[str, Any] = {"proxy_url": url, "proxy_source": source, "connect_target": ev.get("connect_target", target),
                               "host": host, "port": port}
    if cause is Cause.PROXY_UNREACHABLE:
        summary = f"The proxy {via} cannot be used: {message or 'no answer'}; nothing reached {target}."
    elif cause is Cause.PROXY_AUTH_REQUIRED:
        schemes = list(ev.get("auth_schemes") or [])
        details.update(auth_schemes=schemes, credentials_sent=bool(ev.get("credentials_sent")),
                       proxy_user=ev.get("user"), password_from=ev.get("password_from"))
        offered = ", ".join(schemes) if schemes else "no scheme (no Proxy-Authenticate header)"
        if ev.get("credentials_sent"):
            who = f"the credentials of {ev.get('user')!r}"
            summary = f"The proxy {via} answered CONNECT {target} with {said}: it rejected {who}; it offers {offered}."
        elif ev.get("user"):
            summary = (f"The proxy {via} answered CONNECT {target} with {said}: it requires authentication and the "
                       f"user {ev.get('user')!r} was given without a password (--proxy-password-env VAR); it offers "
                       f"{offered}.")
        else:
            summary = (f"The proxy {via} answered CONNECT {target} with {said}: it requires authentication and no "
                       f"credentials were configured; it offers {offered}.")
    elif cause is Cause.PROXY_REFUSED:
        why = f" ({squid})" if squid else ""
        summary = (f"The proxy {via} refused to tunnel to {target}: {said}{why}"
                   + (f", '{body}'" if body and (not squid or body not in squid) else "")
                   + (": an egress rule of the proxy blocks this host or port."
                      if not ev.get("x_squid_error") or str(ev.get("x_squid_error")).split(" ")[0]
                      in ("ERR_ACCESS_DENIED", "ERR_FORWARDING_DENIED")
                      else ": the proxy will not tunnel this request."))
        details["squid_error"] = ev.get("x_squid_error")
    else:
        why = f": {squid}" if squid else ""
        summary = (f"The proxy {via} could not reach {target}{why}; it answered CONNECT with {said}"
                   + (f", '{body}'" if body else "") + ".")
        details["squid_error"] = ev.get("x_squid_error")
    details["status_line"] = status
    details["body_first_line"] = body
    return cause, summary, details


def proxy_remediation(cause: Cause, details: Mapping[str, Any], allow_list: str) -> tuple[str, ...]:
    """What to do, most likely fix first. ``allow_list``: the platform's domain patterns (or the host)."""
    url = details.get("proxy_url") or "the proxy"
    source = details.get("proxy_source")
    host, port = details.get("host", "the host"), details.get("port", 443)
    target = f"{host}:{port}"
    where = {"--proxy": "--proxy", None: "the proxy setting"}.get(source, str(source))
    bypass = (f"If {host} is meant to be reached directly, not through the proxy, exempt it: NO_PROXY={host} "
              "(or .its-domain), --no-proxy on the command line, or no_proxy = true for the target.")
    ticket = (f"Ticket for the network team: CONNECT {target} through {url} is answered "
              f"'{details.get('status_line') or 'nothing'}'"
              + (f" ({details.get('squid_error')})" if details.get("squid_error") else "")
              + ": the proxy cannot reach the host; ask them to check the proxy's DNS and its route to "
              f"{allow_list} on port {port}.")
    if cause is Cause.PROXY_UNREACHABLE:
        return (f"Check the proxy address in {where} ({url}): host, port and that it is an HTTP proxy; "
                f"`curl -x {url} https://{authority(str(host), int(port))}/` from this machine must connect.",
                "If the proxy moved or is down, ask the network team for the current egress proxy (and whether a PAC "
                "file names a different one for these hosts).",
                bypass)
    if cause is Cause.PROXY_AUTH_REQUIRED:
        schemes = [s.lower() for s in details.get("auth_schemes") or []]
        steps = []
        if schemes and "basic" not in schemes:
            steps.append(f"The proxy offers only {', '.join(details.get('auth_schemes') or [])} (Windows/Kerberos "
                         "authentication), which cxhealth does not speak: ask the network team for a Basic-auth "
                         f"service account, or a rule that lets this machine reach {allow_list} without authentication.")
        if details.get("credentials_sent"):
            steps.append(f"The proxy rejected the user {details.get('proxy_user')!r}: check the password in "
                         f"{details.get('password_from') or 'the password variable'} (expired, locked, or a typo) and "
                         "that this account may use the proxy.")
        else:
            steps.append("Give the proxy credentials: the user in the proxy URL (http://USER@proxy:port) and the "
                         "password by name: export PROXY_PASSWORD=... and --proxy-password-env PROXY_PASSWORD "
                         "(proxy_password_env in targets.toml); never the password on the command line.")
        steps.append(f"Or ask the network team to allow {allow_list} for this machine without proxy authentication.")
        return tuple(steps)
    if cause is Cause.PROXY_REFUSED:
        steps = [f"Ask the network team to allow CONNECT to {allow_list} on port {port} through {url}"
                 + (f" (the rule that matched: {details.get('squid_error')})" if details.get("squid_error") else "")
                 + "."]
        if port != 443:
            steps.append(f"Many proxies allow CONNECT only to port 443 (squid's SSL_ports): port {port} may need its "
                         "own rule.")
        steps.append(bypass)
        return tuple(steps)
    return (f"The proxy cannot reach {target}: check the host name and port, then the proxy's own DNS and egress "
            "from its side (the proxy resolves and connects, not this machine, so a --resolve entry for the host "
            "does not apply through it).",
            ticket,
            bypass)
