"""A fake Genesys Cloud / NICE CXone / generic OAuth platform over real TLS.

Two TLS servers on 127.0.0.1 (random ports), certificates made at run time by
:mod:`lab.pki`:

* the **main** server (TLS 1.2-1.3) answers every lab host name: the Genesys
  login and API hosts, the NICE issuer (token + discovery) and API hosts, and a
  generic partner API — chosen by the Host header, as a real gateway would;
* the **cluster** server speaks **only TLS 1.3** and answers the Genesys API on
  ``api-tls13.genesys.cxlab.test``: the guide's section-1 trap — a client capped
  at TLS 1.2 gets its token from the login host, then fails downstream.

Nothing resolves ``*.cxlab.test`` (``.test`` is reserved): clients reach the lab
through ``resolve`` overrides (``host:port:127.0.0.1``, curl's ``--resolve``)
and trust it through :attr:`FakePlatform.ca_bundle`.

What it does on purpose: ``invalid_client`` on bad credentials (Genesys shape),
429 with ``Retry-After``, scripted 503/504 bursts, 401 on an unknown token, slow
answers, a paged WFM schedules endpoint that can break midway. What it records:
every request (method, host, path, query, headers, body, TLS version) and every
failed handshake, in memory only — never printed or logged, because they hold
the secrets the tests plant.

Usage::

    with FakePlatform() as fake:
        values = fake.target_values("genesys")    # plain values of a [[target]] (tests build the Target)
        env = fake.env()                          # its secrets, by variable name
        fake.fail("/oauth/token", 503, times=2)   # the next two token requests get 503
        ...
        assert fake.count(path="/oauth/token") == 3
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from cxhealth.lab.pki import CA, write_bundle

LAB_DOMAIN = "cxlab.test"
GENESYS_LOGIN = f"login.genesys.{LAB_DOMAIN}"
GENESYS_API = f"api.genesys.{LAB_DOMAIN}"
GENESYS_TLS13 = f"api-tls13.genesys.{LAB_DOMAIN}"   # served only by the TLS 1.3-only cluster
NICE_ISSUER = f"cxone.nice.{LAB_DOMAIN}"
NICE_API = f"api-na1.nice.{LAB_DOMAIN}"
PARTNER_AUTH = f"auth.partner.{LAB_DOMAIN}"
PARTNER_API = f"api.partner.{LAB_DOMAIN}"
MAIN_HOSTS = (GENESYS_LOGIN, GENESYS_API, NICE_ISSUER, NICE_API, PARTNER_AUTH, PARTNER_API)
ALL_HOSTS = MAIN_HOSTS + (GENESYS_TLS13,)


def partner_api_host(i: int) -> str:
    """The i-th extra partner host (``FakePlatform(partner_hosts=N)``): a fleet of targets spread
    over several hosts, each answering the token request like :data:`PARTNER_AUTH` and
    ``/v1/health`` like :data:`PARTNER_API`."""
    return f"api-{i}.partner.{LAB_DOMAIN}"

TOKEN_PATHS = ("/oauth/token", "/auth/token")
NICE_DISCOVERY = "/.well-known/cxone-configuration"
NICE_SERVER_TIME = "/inContactAPI/services/v25.0/server-time"
SCHEDULES_PREFIX = "/api/v2/workforcemanagement/businessunits/"
GENESYS_ENDPOINTS = ("/api/v2/organizations/me", "/api/v2/flows?pageSize=1")


@dataclass(frozen=True)
class Reply:
    """A scripted answer: status, headers, JSON body; optionally late, or a dropped connection."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    delay_s: float = 0.0
    close: bool = False  # drop the connection without answering


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (for tests; holds secrets, never printed)."""

    server: str            # "main" | "tls13"
    method: str
    host: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    tls_version: str | None
    sni: str | None = None   # the server name the client sent in its ClientHello

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("latin-1")).items()}

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password

    def __repr__(self) -> str:  # never show headers/body
        return f"RecordedRequest({self.server} {self.method} {self.host}{self.path})"


@dataclass(frozen=True)
class FakeCredentials:
    """The credentials the fake accepts; secrets are random per instance unless given."""

    genesys_client_id: str = "lab-genesys-client"
    genesys_client_secret: str = field(default_factory=lambda: "gs-" + secrets.token_urlsafe(16))
    nice_client_id: str = "lab-nice-app"
    nice_client_secret: str = field(default_factory=lambda: "nc-" + secrets.token_urlsafe(16))
    nice_access_key_id: str = "LABACCESSKEYID"
    nice_access_key_secret: str = field(default_factory=lambda: "nk-" + secrets.token_urlsafe(16))
    partner_client_id: str = "lab-partner"
    partner_client_secret: str = field(default_factory=lambda: "ps-" + secrets.token_urlsafe(16))
    nice_tenant_id: str = "11eb0000-lab0-tenant-0000-000000000001"

    def __repr__(self) -> str:
        return "FakeCredentials(***)"


ENV_NAMES = {
    "genesys": "LAB_GENESYS_CLIENT_SECRET",
    "nice": "LAB_NICE_CLIENT_SECRET",
    "nice_key": "LAB_NICE_ACCESS_KEY_SECRET",
    "generic": "LAB_PARTNER_CLIENT_SECRET",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # A fleet's burst of connections must queue, not be dropped: socketserver's default backlog is 5.
    request_queue_size = 1024

    def __init__(self, platform: "FakePlatform", label: str, context: ssl.SSLContext) -> None:
        self.platform = platform
        self.label = label
        self.ssl_context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # The handshake runs in the connection's thread, not in the accept loop.
        request.settimeout(5)
        # Headers and body go out as two writes: without NODELAY, Nagle + delayed ACK add ~40 ms.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.platform._record_handshake_failure(self.label, exc)
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: clients hang up
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # never print requests
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        request = RecordedRequest(
            server=self.server.label, method=self.command, host=host, path=parts.path,
            query=parse_qs(parts.query), headers={k.lower(): v for k, v in self.headers.items()},
            body=body, tls_version=self.connection.version() if isinstance(self.connection, ssl.SSLSocket) else None,
            sni=getattr(self.connection, "lab_sni", None),
        )
        reply = self.server.platform._handle(request)
        if reply.delay_s:
            self.server.platform._stopping.wait(reply.delay_s)
        if reply.close:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        payload = b"" if reply.body is None else (
            reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode())
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


def _json_error(status: int, **body: Any) -> Reply:
    return Reply(status, body={**body, "status": status} if "error" not in body else body)


class FakePlatform:
    """The fake platform (context manager; servers run in background threads).

    Args:
        credentials: what the token endpoints accept (random secrets by default).
        workdir: where the CA bundle and server certificate go (a temp dir by default).
        schedule_rows: rows the WFM schedules endpoint serves (paged).
    """

    def __init__(self, credentials: FakeCredentials | None = None, *, workdir: str | Path | None = None,
                 schedule_rows: int = 6, partner_hosts: int = 0) -> None:
        self.partner_hosts = tuple(partner_api_host(i) for i in range(1, partner_hosts + 1))
        self.credentials = credentials or FakeCredentials()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="cxhealth-fake-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._handshake_failures: list[tuple[str, str]] = []
        self._scripts: dict[tuple[str | None, str], deque[Reply]] = {}
        self._delays: dict[str, float] = {}
        self._tokens: set[str] = set()
        self._schedule_break: tuple[int, Reply] | None = None
        self._schedule_rows = [
            {"userId": f"agent-{i // 2 + 1}", "date": f"2024-05-0{i % 2 + 6}", "activity": "OnQueue",
             "startTime": f"2024-05-0{i % 2 + 6}T09:00:00Z", "lengthMinutes": 240}
            for i in range(schedule_rows)
        ]
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "FakePlatform":
        ca = CA.create_root("cxhealth lab fake-platform root", organization="cxhealth lab")
        leaf = ca.issue_leaf([*ALL_HOSTS, *self.partner_hosts], common_name=GENESYS_API, key_type="rsa")  # RSA: ECDHE-RSA suites (NICE)
        files = leaf.write(self.workdir / "pki", "fake-platform")
        self.ca_bundle = str(write_bundle(self.workdir / "pki" / "fake-platform-ca.pem", [ca.cert]))
        main = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        main.minimum_version, main.maximum_version = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
        main.load_cert_chain(files.chain, files.key)
        tls13 = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls13.minimum_version = tls13.maximum_version = ssl.TLSVersion.TLSv1_3
        tls13.load_cert_chain(files.chain, files.key)
        for label, ctx in (("main", main), ("tls13", tls13)):
            ctx.sni_callback = _remember_sni
            server = _Server(self, label, ctx)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"fake-platform-{label}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def close(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "FakePlatform":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses ---------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def tls13_port(self) -> int:
        return self._servers[1].server_address[1]

    def port_of(self, host: str) -> int:
        return self.tls13_port if host == GENESYS_TLS13 else self.port

    def url(self, host: str, path: str = "") -> str:
        return f"https://{host}:{self.port_of(host)}{path}"

    @property
    def resolve(self) -> list[str]:
        """``host:port:127.0.0.1`` for every lab host (curl's ``--resolve``)."""
        return [f"{h}:{self.port_of(h)}:127.0.0.1" for h in (*ALL_HOSTS, *self.partner_hosts)]

    # -- scripting -------------------------------------------------------------
    def script(self, path: str, *replies: Reply | int, host: str | None = None) -> None:
        """Queue answers for the next requests to *path* (optionally only on *host*)."""
        with self._lock:
            queue = self._scripts.setdefault((host, path), deque())
            queue.extend(r if isinstance(r, Reply) else Reply(r, body={"status": r, "code": f"lab.{r}"})
                         for r in replies)

    def fail(self, path: str, status: int = 503, *, times: int = 1, host: str | None = None,
             retry_after: str | None = None) -> None:
        """The next *times* requests to *path* get *status* (503/504 bursts)."""
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        self.script(path, *[Reply(status, headers, {"status": status, "code": "service.unavailable"})] * times,
                    host=host)

    def rate_limit(self, path: str, *, retry_after: str | None = "2", times: int = 1, host: str | None = None) -> None:
        """The next *times* requests to *path* get a Genesys-style 429 (``Retry-After`` unless None)."""
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        body = {"status": 429, "code": "too.many.requests.retry.after",
                "message": "Rate limit exceeded the maximum. Retry the request in [2] seconds"}
        self.script(path, *[Reply(429, headers + (("inin-ratelimit-allowed", "300"),), body)] * times, host=host)

    def set_delay(self, path: str, seconds: float) -> None:
        """Every request to *path* waits *seconds* before its answer (a slow endpoint)."""
        with self._lock:
            self._delays[path] = seconds

    def revoke_tokens(self) -> None:
        """Forget every issued token: API calls then get 401."""
        with self._lock:
            self._tokens.clear()

    def break_schedules(self, after_pages: int, reply: Reply | int = 503) -> None:
        """Schedules pages after *after_pages* fail with *reply* (a sync that breaks midway)."""
        with self._lock:
            self._schedule_break = (after_pages, reply if isinstance(reply, Reply) else Reply(reply))

    def mend_schedules(self) -> None:
        with self._lock:
            self._schedule_break = None

    @property
    def schedule_rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._schedule_rows]

    def schedules_path(self, business_unit: str = "bu-lab-1", week: str = "2024-05-06") -> str:
        return f"{SCHEDULES_PREFIX}{business_unit}/weeks/{week}/schedules"

    # -- what it saw -------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path in TOKEN_PATHS]

    @property
    def handshake_failures(self) -> list[tuple[str, str]]:
        """(server, error) per connection whose TLS handshake failed on the server side."""
        with self._lock:
            return list(self._handshake_failures)

    def count(self, *, path: str | None = None, host: str | None = None, server: str | None = None) -> int:
        return sum(1 for r in self.requests if (path is None or r.path == path)
                   and (host is None or r.host == host) and (server is None or r.server == server))

    def counts(self) -> dict[str, Counter]:
        """Requests per path, per host and per server."""
        reqs = self.requests
        return {"path": Counter(r.path for r in reqs), "host": Counter(r.host for r in reqs),
                "server": Counter(r.server for r in reqs)}

    def reset(self) -> None:
        """Forget recorded requests, handshake failures and scripts (tokens stay valid)."""
        with self._lock:
            self._requests.clear()
            self._handshake_failures.clear()
            self._scripts.clear()
            self._delays.clear()
            self._schedule_break = None

    def _record_handshake_failure(self, label: str, exc: BaseException) -> None:
        with self._lock:
            self._handshake_failures.append((label, type(exc).__name__))

    # -- targets pointing at the lab -----------------------------------------------
    def env(self) -> dict[str, str]:
        """The secrets of :meth:`target`'s targets, by environment variable name."""
        c = self.credentials
        return {ENV_NAMES["genesys"]: c.genesys_client_secret, ENV_NAMES["nice"]: c.nice_client_secret,
                ENV_NAMES["nice_key"]: c.nice_access_key_secret, ENV_NAMES["generic"]: c.partner_client_secret}

    def target_values(self, platform: str, **overrides: Any) -> dict[str, Any]:
        """Plain values of a target at the lab (the keys of a ``[[target]]``)."""
        c = self.credentials
        common: dict[str, Any] = {"ca_bundle": self.ca_bundle, "resolve": self.resolve, "timeout": 3.0}
        if platform == "genesys":
            values = {"name": "lab-genesys", "platform": "genesys", "client_id": c.genesys_client_id,
                      "client_secret_env": ENV_NAMES["genesys"], "token_url": self.url(GENESYS_LOGIN, "/oauth/token"),
                      "api_base": self.url(GENESYS_API), "endpoints": list(GENESYS_ENDPOINTS)}
        elif platform == "nice":
            values = {"name": "lab-nice", "platform": "nice", "client_id": c.nice_client_id,
                      "client_secret_env": ENV_NAMES["nice"], "access_key_id": c.nice_access_key_id,
                      "access_key_secret_env": ENV_NAMES["nice_key"], "issuer": self.url(NICE_ISSUER)}
        elif platform == "generic":
            values = {"name": "lab-partner", "platform": "generic", "client_id": c.partner_client_id,
                      "client_secret_env": ENV_NAMES["generic"], "token_url": self.url(PARTNER_AUTH, "/oauth/token"),
                      "api_base": self.url(PARTNER_API), "endpoints": ["/v1/health"]}
        else:
            raise ValueError(f"unknown platform {platform!r}: use genesys, nice or generic")
        return {**common, **values, **overrides}

    def targets_toml(self, platforms: Iterable[str] = ("genesys", "nice", "generic"), **defaults: Any) -> str:
        """A targets.toml (contract §2) with one target per platform, at the lab."""
        lines = ["[defaults]"]
        shared = {"ca_bundle": self.ca_bundle, "resolve": self.resolve, "timeout": 3.0, **defaults}
        lines += [f"{k} = {_toml(v)}" for k, v in shared.items()]
        for platform in platforms:
            values = self.target_values(platform)
            lines += ["", "[[target]]"]
            lines += [f"{k} = {_toml(v)}" for k, v in values.items() if k not in shared]
        return "\n".join(lines) + "\n"

    def write_targets(self, path: str | Path, **kwargs: Any) -> Path:
        path = Path(path)
        path.write_text(self.targets_toml(**kwargs), encoding="utf-8")
        return path

    # -- request handling (server threads) -------------------------------------------
    def _handle(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            scripted = None
            for key in ((request.host, request.path), (None, request.path)):
                queue = self._scripts.get(key)
                if queue:
                    scripted = queue.popleft()
                    break
            delay = self._delays.get(request.path, 0.0)
        if scripted is not None:
            return scripted if not delay or scripted.delay_s else Reply(**{**scripted.__dict__, "delay_s": delay})
        reply = self._route(request)
        return Reply(**{**reply.__dict__, "delay_s": delay}) if delay else reply

    def _route(self, r: RecordedRequest) -> Reply:
        c = self.credentials
        if r.server == "tls13" or r.host == GENESYS_API:
            return self._genesys_api(r) if r.method == "GET" else _json_error(405, code="method.not.allowed")
        if r.host == GENESYS_LOGIN and r.path == "/oauth/token" and r.method == "POST":
            return self._token(r, (c.genesys_client_id, c.genesys_client_secret), ("client_credentials",),
                               {"token_type": "bearer", "expires_in": 86400})
        if r.host == NICE_ISSUER and r.path == "/auth/token" and r.method == "POST":
            return self._token(r, (c.nice_client_id, c.nice_client_secret), ("password",),
                               {"token_type": "Bearer", "expires_in": 3600}, nice=True)
        if r.host == NICE_ISSUER and r.path == NICE_DISCOVERY and r.method == "GET":
            tenant = (r.query.get("tenantId") or [""])[0]
            if not tenant:
                return _json_error(400, error="invalid_request", error_description="tenantId is required")
            if tenant != c.nice_tenant_id:
                return _json_error(404, error="not_found", error_description="unknown tenant")
            return Reply(200, body={"private": False, "area": "na1", "cluster": "LAB1", "domain": LAB_DOMAIN,
                                    "api_endpoint": self.url(NICE_API), "auth_endpoint": self.url(NICE_ISSUER),
                                    "tenantId": tenant})
        if r.host == NICE_API and r.path == NICE_SERVER_TIME and r.method == "GET":
            return self._authorized(r) or Reply(200, body={"ServerTime": _now_iso()})
        if (r.host == PARTNER_AUTH or r.host in self.partner_hosts) and r.path == "/oauth/token" and r.method == "POST":
            return self._token(r, (c.partner_client_id, c.partner_client_secret), ("client_credentials", "password"),
                               {"token_type": "Bearer", "expires_in": 1800})
        if (r.host == PARTNER_API or r.host in self.partner_hosts) and r.path == "/v1/health" and r.method == "GET":
            return self._authorized(r) or Reply(200, body={"status": "ok"})
        return _json_error(404, code="not.found", message=f"no route for {r.method} {r.path} on {r.host}")

    def _token(self, r: RecordedRequest, client: tuple[str, str], grants: tuple[str, ...],
               answer: dict[str, Any], nice: bool = False) -> Reply:
        # Genesys shape for bad client credentials (platform-facts.md).
        invalid_client = Reply(401, body={"error": "invalid_client", "description": "authentication failed",
                                          "error_description": "authentication failed"})
        if r.basic_auth != client:
            return invalid_client
        if not r.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _json_error(400, error="invalid_request", error_description="form body expected")
        form = r.form
        grant = form.get("grant_type")
        if grant not in grants:
            return Reply(400, body={"error": "unsupported_grant_type", "description": f"use {' or '.join(grants)}"})
        if grant == "password":
            key = (self.credentials.nice_access_key_id, self.credentials.nice_access_key_secret)
            if (form.get("username"), form.get("password")) != key:
                return Reply(400, body={"error": "invalid_grant", "error_description": "bad access key"})
        token = "lab-at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        body = {"access_token": token, **answer}
        if nice:
            claims = {"iss": self.url(NICE_ISSUER), "sub": client[0], "tenantId": self.credentials.nice_tenant_id}
            body["refresh_token"] = "lab-rt-" + secrets.token_urlsafe(16)
            body["id_token"] = ".".join(_b64url(json.dumps(p).encode())
                                        for p in ({"alg": "none", "typ": "JWT"}, claims)) + ".lab"
        return Reply(200, body=body)

    def _authorized(self, r: RecordedRequest) -> Reply | None:
        value = r.headers.get("authorization", "")
        with self._lock:
            valid = value.startswith("Bearer ") and value[7:] in self._tokens
        if valid:
            return None
        return Reply(401, body={"status": 401, "code": "bad.credentials", "message": "Invalid login credentials."})

    def _genesys_api(self, r: RecordedRequest) -> Reply:
        denied = self._authorized(r)
        if denied:
            return denied
        path = r.path
        if path == "/api/v2/organizations/me":
            return Reply(200, body={"id": "org-lab-1", "name": "cxhealth lab", "thirdPartyOrgName": "cxlab"})
        if path == "/api/v2/flows":
            return Reply(200, body={"entities": [{"id": "flow-1", "name": "Inbound main", "type": "inboundcall"}],
                                    "pageSize": 1, "pageNumber": 1, "total": 1})
        if path == "/api/v2/tokens/me":
            return Reply(200, body={"name": "lab token", "organization": {"id": "org-lab-1"},
                                    "OAuthClient": {"id": self.credentials.genesys_client_id}})
        if path == "/api/v2/workforcemanagement/businessunits":
            return Reply(200, body={"entities": [{"id": "bu-lab-1", "name": "Lab BU"}]})
        if path == "/api/v2/workforcemanagement/managementunits":
            return Reply(200, body={"entities": [{"id": "mu-lab-1", "name": "Lab MU"}]})
        if path.startswith(SCHEDULES_PREFIX) and path.endswith("/schedules"):
            return self._schedules(r)
        return _json_error(404, code="not.found", message=f"no route for GET {path}")

    def _schedules(self, r: RecordedRequest) -> Reply:
        page = int((r.query.get("pageNumber") or ["1"])[0])
        size = int((r.query.get("pageSize") or ["2"])[0])
        with self._lock:
            broken = self._schedule_break
        if broken is not None and page > broken[0]:
            return broken[1]
        rows = self._schedule_rows
        chunk = rows[(page - 1) * size: page * size]
        page_count = max(1, -(-len(rows) // size))
        return Reply(200, body={"entities": chunk, "pageNumber": page, "pageSize": size, "pageCount": page_count,
                                "total": len(rows)})


def _remember_sni(ssl_socket: ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext) -> None:
    ssl_socket.lab_sni = server_name  # type: ignore[attr-defined]  # read back per request


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string for these (ASCII) values


def wait_until(predicate: Any, timeout: float = 2.0) -> bool:
    """Poll *predicate* briefly (server threads record a request just after answering)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())
