"""The egress proxy as a value: which proxy a connection uses, and what its answer means.

Pure (no I/O): parsing proxy URLs, curl's environment rules, the CONNECT
request and the reading of the proxy's answer. :mod:`.connection` does the
network steps for both the probe and the httpx client, so the two agree.

Choosing a proxy follows curl (lib/url.c, lib/noproxy.c):

* an explicit proxy (``--proxy``, a target's ``proxy``) wins over the
  environment; otherwise ``https_proxy``, ``HTTPS_PROXY``, ``all_proxy``,
  ``ALL_PROXY`` (first set, non-empty) — every target is ``https://``;
* ``no_proxy`` / ``NO_PROXY`` applies to both (curl checks it before either):
  ``*`` alone bypasses everything; otherwise a comma- or blank-separated list
  where ``example.com`` (or ``.example.com``) matches ``example.com`` and every
  name under it (never ``notexample.com``), trailing dots ignored, IP addresses
  and CIDR ranges for IP hosts. Nothing more: ``host:PORT`` and ``*.example.com``
  entries never match, as in curl 7.88 (checked with ``curl -v``); an empty
  ``no_proxy`` falls through to ``NO_PROXY``, as in curl;
* ``ignore_environment`` (``--no-proxy``, a target's ``no_proxy = true``)
  ignores all of these variables.

Only ``http://`` proxies are supported (a CONNECT tunnel over plain HTTP to
the proxy, as nearly every corporate egress proxy offers); ``https://``
proxies, SOCKS and PAC files are refused by name. A password never sits in a
value here: a :class:`Proxy` names where it comes from (an environment
variable), and :func:`proxy_password` reads it only when the tunnel is opened.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

DEFAULT_PROXY_PORT = 1080  # curl's default for a proxy URL without a port
ENV_PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
ENV_NO_PROXY_VARS = ("no_proxy", "NO_PROXY")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ANSWER_HEAD = 16 * 1024   # bytes of the proxy's answer head we read at most
MAX_BODY_PEEK = 4 * 1024      # bytes of an error body read for its first line


class ProxyConfigError(ValueError):
    """A proxy setting that cannot be used; the message is one line and never holds a password."""


# --- the proxy as a value ---------------------------------------------------------------------

@dataclass(frozen=True)
class Proxy:
    """One HTTP proxy. ``url`` is what reports show: scheme, user, host, port — never a password.

    ``password_env`` names the environment variable holding the password;
    ``password_in_env_url`` names a proxy variable (``HTTPS_PROXY``) whose
    own URL carries it (curl's convention, honoured for the environment only).
    ``address`` pins the proxy's IP (a ``--resolve`` entry for the proxy's name).
    """

    host: str
    port: int
    username: str | None = None
    password_env: str | None = None
    password_in_env_url: str | None = None
    source: str = "--proxy"
    address: str | None = None

    @property
    def url(self) -> str:
        user = f"{_quote_user(self.username)}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{user}{host}:{self.port}"

    @property
    def has_credentials(self) -> bool:
        return self.username is not None and (self.password_env is not None or self.password_in_env_url is not None)

    def with_address(self, address: str | None) -> "Proxy":
        return Proxy(self.host, self.port, self.username, self.password_env, self.password_in_env_url,
                     self.source, address)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "source": self.source}
        if self.username:
            out["user"] = self.username
            out["password_from"] = (f"${self.password_env}" if self.password_env
                                    else f"${self.password_in_env_url}" if self.password_in_env_url else None)
        if self.address:
            out["address"] = self.address
        return out


def _quote_user(user: str) -> str:
    return user.replace("%", "%25").replace("@", "%40").replace(":", "%3A")


_UNSUPPORTED = {
    "https": "https:// proxies (TLS to the proxy itself)",
    "socks4": "SOCKS proxies", "socks4a": "SOCKS proxies", "socks5": "SOCKS proxies", "socks5h": "SOCKS proxies",
    "socks": "SOCKS proxies",
}


def parse_proxy_url(text: str, *, source: str = "--proxy", password_env: str | None = None,
                    allow_password: bool = False) -> Proxy:
    """``http://[user@]host[:port]`` (the scheme may be left out, as curl allows).

    A password in the URL is refused (it would sit in shell history, process
    lists and files) unless ``allow_password`` (an environment variable, where
    curl reads it); the error never repeats the URL when it holds one.

    Raises:
        ProxyConfigError: one line naming ``source`` and what to write instead.
    """
    raw = (text or "").strip()
    if not raw:
        raise ProxyConfigError(f"{source}: empty proxy URL; expected http://[user@]host:port")
    has_password = _has_password(raw)
    shown = "(the URL is not repeated: it holds a password)" if has_password else repr(raw)
    if raw.lower().endswith((".pac", ".dat")) or raw.lower().startswith(("file:", "pac+")):
        raise ProxyConfigError(f"{source}: {shown} looks like a PAC file, which is not supported: give the proxy "
                               "the PAC file returns for the platform's hosts as http://host:port")
    url = raw if "://" in raw else f"http://{raw}"
    scheme = url.split("://", 1)[0].lower()
    if scheme != "http":
        what = _UNSUPPORTED.get(scheme, f"{scheme}:// proxies")
        raise ProxyConfigError(f"{source}: {what} are not supported; only http:// proxies (a CONNECT tunnel, "
                               "as curl -x http://host:port) are")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ProxyConfigError(f"{source}: {shown} has an invalid port; expected http://[user@]host:port "
                               "with a port from 1 to 65535") from None
    host = parts.hostname
    if not host or any(c in host for c in " \t\\/") or (parts.path not in ("", "/")) or parts.query or parts.fragment:
        raise ProxyConfigError(f"{source}: {shown} is not a proxy URL; expected http://[user@]host:port")
    if port is not None and not 1 <= port <= 65535 or port == 0:
        raise ProxyConfigError(f"{source}: {shown}: port out of range 1-65535")
    username = unquote(parts.username) if parts.username else None
    if has_password and not allow_password:
        var = password_env or "PROXY_PASSWORD"
        how = (f"--proxy-password-env {var} (proxy_password_env = \"{var}\" in targets.toml)"
               if source.startswith("--") else
               f"proxy_password_env = \"{var}\" in the target (--proxy-password-env {var} on the command line)")
        raise ProxyConfigError(f"{source}: the proxy URL holds a password; remove it from the URL (keep "
                               f"http://USER@host:port) and pass it by name: export {var}=... and {how}")
    if password_env is not None:
        if not _ENV_NAME.match(password_env):
            raise ProxyConfigError(f"{source}: proxy password variable {password_env!r} is not an environment "
                                   "variable name like PROXY_PASSWORD")
        if username is None:
            raise ProxyConfigError(f"{source}: a proxy password (${password_env}) needs a user name in the "
                                   "proxy URL: http://USER@host:port")
    env_url = source.lstrip("$") if (has_password and allow_password and password_env is None) else None
    return Proxy(host=host.lower(), port=port or DEFAULT_PROXY_PORT, username=username,
                 password_env=password_env, password_in_env_url=env_url, source=source)


def _has_password(raw: str) -> bool:
    url = raw if "://" in raw else f"http://{raw}"
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    return bool(at) and ":" in userinfo


def proxy_password(proxy: Proxy, env: Mapping[str, str] | None = None) -> str | None:
    """The proxy password, read now from where ``proxy`` names it (None without one)."""
    source = os.environ if env is None else env
    if proxy.password_env:
        return source.get(proxy.password_env) or None
    if proxy.password_in_env_url:
        raw = source.get(proxy.password_in_env_url, "")
        url = raw if "://" in raw else f"http://{raw}"
        try:
            password = urlsplit(url).password
        except ValueError:
            return None
        return unquote(password) if password else None
    return None


def check_password_available(proxy: Proxy, env: Mapping[str, str] | None = None) -> None:
    """Raise a one-line error when the named password variable is unset or empty."""
    source = os.environ if env is None else env
    if proxy.password_env and not source.get(proxy.password_env):
        state = "empty" if proxy.password_env in source else "not set"
        raise ProxyConfigError(f"proxy password variable {proxy.password_env} is {state}; export it with the "
                               "proxy password (it is read by name, never from the command line)")


# --- which proxy ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProxySettings:
    """How a client picks its proxy: an explicit one, or the environment (unless ignored)."""

    explicit: Proxy | None = None
    ignore_environment: bool = False
    password_env: str | None = None   # applies to a proxy from the environment too

    def choose(self, host: str, port: int, env: Mapping[str, str] | None = None) -> Proxy | None:
        return choose_proxy(host, port, self, env)


DIRECT = ProxySettings(ignore_environment=True)


def environment_proxy(env: Mapping[str, str] | None = None, password_env: str | None = None) -> Proxy | None:
    """The proxy the environment sets for https:// URLs (curl's order), or None."""
    source = os.environ if env is None else env
    for name in ENV_PROXY_VARS:
        value = source.get(name)
        if value and value.strip():
            return parse_proxy_url(value, source=f"${name}", password_env=password_env, allow_password=True)
    return None


def environment_no_proxy(env: Mapping[str, str] | None = None) -> str:
    """``no_proxy``, else ``NO_PROXY``: as curl, an empty (set but blank-free empty) ``no_proxy``
    counts as unset and ``NO_PROXY`` is read (curl_getenv returns NULL for an empty value)."""
    source = os.environ if env is None else env
    for name in ENV_NO_PROXY_VARS:
        value = source.get(name)
        if value:
            return value
    return ""


def choose_proxy(host: str, port: int, settings: ProxySettings,
                 env: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy to reach ``host:port`` through, or None for a direct connection.

    Raises:
        ProxyConfigError: the environment's proxy variable is unusable (SOCKS, a bad URL, ...).
    """
    if settings.ignore_environment:
        return settings.explicit
    if no_proxy_matches(host, port, environment_no_proxy(env)):
        return None
    if settings.explicit is not None:
        return settings.explicit
    return environment_proxy(env, settings.password_env)


def no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
    """Does ``no_proxy`` exempt ``host`` — exactly as curl 7.88 (lib/noproxy.c) decides?

    * the whole value ``*`` (nothing else: not `` *``, not ``a.test,*``) exempts every host;
    * otherwise a list separated by commas and/or blanks; a name entry matches that
      name and every name under it (``example.com`` and ``.example.com`` alike; never
      ``notexample.com``), case-insensitively, trailing dots ignored;
    * for an IP host, an address or a CIDR range (``10.0.0.0/8``; IPv6 unbracketed);
    * curl has no other forms: an entry with a port (``host:443``), a bracketed
      ``[::1]`` or a pattern such as ``*.example.com`` never matches (curl treats it
      as a literal name), so it is ignored here too — a NO_PROXY shared with curl
      sends both tools the same way. ``port`` is accepted for the callers, unused.
    """
    text = no_proxy or ""
    if text == "*":
        return True
    if not text.strip(", \t\r\n\f\v"):
        return False  # no entry (the common case: no NO_PROXY at all)
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    ip = _ip(name)
    if ip is None:
        name = name.rstrip(".")
    for token in re.split(r"[,\s]+", text):
        if not token:
            continue
        token = token.lower()
        if ip is not None:
            if _ip_matches(ip, token):
                return True
            continue
        token = token.rstrip(".")
        if token.startswith("."):
            token = token[1:]
        if not token:
            continue
        if name == token or name.endswith("." + token):
            return True
    return False


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_matches(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, token: str) -> bool:
    try:
        network = ipaddress.ip_network(token, strict=False)
    except ValueError:
        return False
    return ip.version == network.version and ip in network


# --- the CONNECT exchange (sans I/O) --------------------------------------------------------------

def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(host: str, port: int, proxy: Proxy, env: Mapping[str, str] | None = None,
                    user_agent: str = "cxhealth/0.1") -> bytes:
    """The CONNECT request, with Basic proxy authentication when the proxy has credentials."""
    target = authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", f"User-Agent: {user_agent}",
             "Proxy-Connection: Keep-Alive"]
    auth = proxy_authorization(proxy, env)
    if auth:
        lines.append(auth.rstrip("\r\n"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def proxy_authorization(proxy: Proxy, env: Mapping[str, str] | None = None) -> str:
    """The ``Proxy-Authorization: Basic ...`` header line (with CRLF), or "" without credentials."""
    password = proxy_password(proxy, env) if proxy.username else None
    if not proxy.username or password is None:
        return ""
    token = base64.b64encode(f"{proxy.username}:{password}".encode("utf-8")).decode("ascii")
    return f"Proxy-Authorization: Basic {token}\r\n"


@dataclass(frozen=True)
class ProxyAnswer:
    """What the proxy said to CONNECT: the status and the evidence a verdict rests on."""

    status: int | None
    status_line: str
    headers: tuple[tuple[str, str], ...] = ()
    body_first_line: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def header_values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self.headers if k.lower() == lowered]

    @property
    def auth_schemes(self) -> list[str]:
        """The schemes of every ``Proxy-Authenticate`` header (``Basic``, ``Negotiate``, ``NTLM``)."""
        out = []
        for value in self.header_values("Proxy-Authenticate"):
            scheme = value.strip().split(" ", 1)[0]
            if scheme and scheme not in out:
                out.append(scheme)
        return out

    @property
    def content_length(self) -> int | None:
        value = self.header("Content-Length")
        return int(value) if value and value.strip().isdigit() else None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status_line": self.status_line, "status": self.status}
        schemes = self.auth_schemes
        if schemes:
            out["auth_schemes"] = schemes
            out["proxy_authenticate"] = [_short(v, 200) for v in self.header_values("Proxy-Authenticate")][:4]
        for name in ("X-Squid-Error", "Server", "Via"):
            value = self.header(name)
            if value:
                out[name.lower().replace("-", "_")] = _short(value, 200)
        if self.body_first_line:
            out["body_first_line"] = self.body_first_line
        return out


def head_complete(buffer: bytes) -> int:
    """The index just past the answer head's blank line, or -1 while incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4
    end = buffer.find(b"\n\n")
    return end + 2 if end >= 0 else -1


class NotHTTPAnswer(ValueError):
    """The peer answered CONNECT with something that is not HTTP (not a proxy)."""


def parse_answer_head(head: bytes) -> ProxyAnswer:
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    status_line = lines[0].strip()
    match = re.match(r"^HTTP/\d(?:\.\d)? (\d{3})(?: .*)?$", status_line)
    if not match:
        raise NotHTTPAnswer(_short(status_line.encode("latin-1").decode("ascii", "replace"), 80))
    headers = []
    for line in lines[1:]:
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if sep:
            headers.append((key.strip(), value.strip()))
    return ProxyAnswer(status=int(match.group(1)), status_line=_short(status_line, 200), headers=tuple(headers))


def body_first_line(body: bytes, content_type: str | None = None) -> str | None:
    """The first line of text of an error body (HTML tags stripped: squid's pages are HTML)."""
    text = body.decode("utf-8", "replace")
    if "html" in (content_type or "").lower() or "<html" in text[:500].lower() or "<!doctype" in text[:200].lower():
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.S | re.I)
        if title and title.group(1).strip():
            return _short(" ".join(_unescape(title.group(1)).split()), 200)
        text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
        text = re.sub(r"<[^>]+>", "\n", text)
        text = _unescape(text)
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return _short(line, 200)
    return None


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- kinds of proxy failure (ProbeResult.error_kind) and their verdicts ---------------------------

PROXY_UNREACHABLE = "proxy_unreachable"
PROXY_AUTH_REQUIRED = "proxy_auth_required"
PROXY_REFUSED = "proxy_refused"
PROXY_UPSTREAM_FAILURE = "proxy_upstream_failure"
PROXY_KINDS = frozenset({PROXY_UNREACHABLE, PROXY_AUTH_REQUIRED, PROXY_REFUSED, PROXY_UPSTREAM_FAILURE})
# The proxy itself failed the client (down, credentials, an egress rule): nothing reached the target
# host, so it is no failure of that host's (its breaker, shared with direct targets, does not count it).
# An upstream failure is the proxy's attempt to reach the host failing: that one counts.
PROXY_NOTHING_REACHED = frozenset({PROXY_UNREACHABLE, PROXY_AUTH_REQUIRED, PROXY_REFUSED})
# squid's error page names (``X-Squid-Error: NAME ERRNO``) -> the kind of failure they mean. A name
# squid uses when it could not reach or talk to the target is an upstream failure whatever the
# status (squid answers ERR_CANNOT_FORWARD with 500 and ERR_DNS_FAIL with 503); an access rule,
# a malformed request or missing credentials is a refusal (or authentication).
SQUID_AUTH_ERRORS = frozenset({"ERR_CACHE_ACCESS_DENIED", "ERR_PROXY_AUTH_REQUIRED"})
SQUID_REFUSAL_ERRORS = frozenset({
    "ERR_ACCESS_DENIED", "ERR_CACHE_MGR_ACCESS_DENIED", "ERR_FORWARDING_DENIED", "ERR_INVALID_URL",
    "ERR_INVALID_REQ", "ERR_INVALID_RESP", "ERR_UNSUP_REQ", "ERR_UNSUP_HTTPVERSION", "ERR_TOO_BIG",
    "ERR_NO_RELAY", "ERR_ONLY_IF_CACHED_MISS", "ERR_PROTOCOL_UNKNOWN", "ERR_REQUEST_START_TIMEOUT",
    "ERR_REQUEST_PARSE_TIMEOUT", "ERR_URN_RESOLVE", "ERR_PRECONDITION_FAILED", "ERR_CONFLICT_HOST",
})
SQUID_UPSTREAM_ERRORS = frozenset({
    "ERR_DNS_FAIL", "ERR_CONNECT_FAIL", "ERR_CANNOT_FORWARD", "ERR_READ_TIMEOUT", "ERR_READ_ERROR",
    "ERR_WRITE_ERROR", "ERR_GATEWAY_FAILURE", "ERR_LIFETIME_EXP", "ERR_SOCKET_FAILURE", "ERR_ZERO_SIZE_OBJECT",
    "ERR_SECURE_CONNECT_FAIL", "ERR_SHUTTING_DOWN",
})


def squid_error_name(answer: "ProxyAnswer") -> str | None:
    raw = answer.header("X-Squid-Error")
    return raw.strip().split(" ", 1)[0].upper() if raw and raw.strip() else None


def kind_of_answer(answer: ProxyAnswer) -> str:
    """A non-2xx answer to CONNECT -> the error kind (the cause code of contract §1).

    squid's error name decides when it is one we know; otherwise 407 is
    authentication, any 5xx the proxy failing to reach the target, the rest
    (403, 405, a 301 to a captive portal, ...) a refusal.
    """
    name = squid_error_name(answer)
    if name in SQUID_AUTH_ERRORS or answer.status == 407:
        return PROXY_AUTH_REQUIRED
    if name in SQUID_UPSTREAM_ERRORS:
        return PROXY_UPSTREAM_FAILURE
    if name in SQUID_REFUSAL_ERRORS:
        return PROXY_REFUSED
    if answer.status is not None and 500 <= answer.status <= 599:
        return PROXY_UPSTREAM_FAILURE
    return PROXY_REFUSED


@dataclass(frozen=True)
class ProxyFailure:
    """A tunnel that could not be opened: the kind, a message, the evidence (no secret in any)."""

    kind: str
    reason: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_fields(self) -> dict[str, Any]:
        return {"error_kind": self.kind, "reason": self.reason, "message": self.message}


def route(endpoint: Any, settings: ProxySettings, resolve: Mapping[tuple[str, int], str] | None = None,
          env: Mapping[str, str] | None = None) -> Any:
    """``endpoint`` with the proxy it is reached through (``settings``' choice for its host and port).

    Through a proxy the proxy resolves the target's name, so a ``--resolve``
    entry for the target no longer applies (curl behaves the same); an entry
    for the proxy's own name and port pins the proxy's address.
    """
    from dataclasses import replace

    proxy = settings.choose(endpoint.host, endpoint.port, env)
    if proxy is None:
        return endpoint
    pinned = (resolve or {}).get((proxy.host, proxy.port))
    if pinned is None and _ip(proxy.host.strip("[]")) is not None:
        pinned = proxy.host.strip("[]")
    return replace(endpoint, proxy=proxy.with_address(pinned), address=None)


def settings_from_options(proxy_url: str | None, password_env: str | None, ignore_environment: bool,
                          env: Mapping[str, str] | None = None, *, where: str = "--proxy") -> ProxySettings:
    """Check the proxy options of a command or a target now, so a bad one is one line before any connection.

    Raises:
        ProxyConfigError: a bad URL, an unsupported scheme, a password in the URL, an
            unset password variable, or an unusable proxy in the environment.
    """
    if password_env is not None and not _ENV_NAME.match(password_env):
        raise ProxyConfigError(f"proxy password variable {password_env!r} is not an environment variable name "
                               "like PROXY_PASSWORD")
    explicit = parse_proxy_url(proxy_url, source=where, password_env=password_env) if proxy_url else None
    settings = ProxySettings(explicit=explicit, ignore_environment=ignore_environment, password_env=password_env)
    from_env = None if (ignore_environment or explicit is not None) else environment_proxy(env, password_env)
    if password_env is not None:
        if explicit is None and from_env is None:
            raise ProxyConfigError(f"a proxy password variable ({password_env}) is named but no proxy is in use "
                                   "(no --proxy, no HTTPS_PROXY/ALL_PROXY in the environment)")
        check_password_available(explicit or from_env, env)  # type: ignore[arg-type]
    return settings
