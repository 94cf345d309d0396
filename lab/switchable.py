"""A lab host that fails its TLS handshake until told to recover.

The breaker's fleet test needs one host whose handshake fails (an expired
certificate: ``cert_expired``) and later succeeds, with every TCP connection it
accepted recorded with its wall-clock time, so the test can say "nobody touched
this host while its breaker was open" and "one check per half-open".

Once recovered it is a tiny generic OAuth platform (contract §2 ``platform =
"generic"``): ``POST /oauth/token`` (client_credentials, HTTP Basic) and
``GET /v1/health`` with the bearer token, so the target turns fully healthy.

Usage::

    with SwitchableTLSServer() as flaky:          # presents an expired certificate
        values = flaky.target_values("flaky")      # a [[target]] table
        env = flaky.env()                          # its secret, by variable name
        ...
        flaky.recover()                            # presents a valid one from now on
        flaky.connections()                        # [Connection(at, healthy, outcome)]

Certificates come from :mod:`lab.pki` (a private root of its own, in a temporary
directory); nothing resolves the host name: targets reach it through ``resolve``.
Like the other lab servers it never prints requests (they carry the secret).
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
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cxhealth.lab.pki import CA, utcnow, write_bundle

ENV_NAME = "LAB_FLAKY_CLIENT_SECRET"


@dataclass(frozen=True)
class Connection:
    """One accepted TCP connection.

    Attributes:
        at: wall-clock time of the accept (epoch seconds; the breaker's Redis
            store uses the same machine's clock).
        healthy: whether the valid certificate was being presented.
        outcome: ``handshake_failed`` | ``handshake_only`` (a diagnosis probe:
            TLS completed, no request) | ``http`` (carried at least one request).
    """

    at: float
    healthy: bool
    outcome: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: "SwitchableTLSServer") -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        owner = self.owner
        accepted_at = time.time()
        with owner._lock:
            healthy = owner._healthy
            context = owner._valid if healthy else owner._expired
        request.settimeout(5)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        outcome = "handshake_failed"
        try:
            try:
                tls = context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            outcome = "handshake_only"
            try:
                if _Handler(tls, client_address, self).served:  # the constructor serves the connection
                    outcome = "http"
            finally:
                try:
                    tls.close()
                except OSError:
                    pass
        finally:
            with owner._lock:
                owner._connections.append(Connection(accepted_at, healthy, outcome))

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: clients hang up
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    served = False

    def log_message(self, format: str, *args: Any) -> None:  # never print requests
        pass

    def do_GET(self) -> None:
        self.served = True
        owner = self.server.owner
        if self.path.split("?", 1)[0] != "/v1/health":
            self._json(404, {"error": "not_found"})
            return
        value = self.headers.get("Authorization", "")
        with owner._lock:
            valid = value.startswith("Bearer ") and value[7:] in owner._tokens
        if not valid:
            self._json(401, {"error": "invalid_token"})
            return
        self._json(200, {"status": "ok"})

    def do_POST(self) -> None:
        self.served = True
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path != "/oauth/token":
            self._json(404, {"error": "not_found"})
            return
        auth = self.headers.get("Authorization", "")
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":") if auth.startswith("Basic ") \
                else ("", "", "")
        except ValueError:
            user, password = "", ""
        if (user, password) != (owner.client_id, owner.client_secret):
            self._json(401, {"error": "invalid_client"})
            return
        grant = (parse_qs(body.decode("latin-1")).get("grant_type") or [""])[0]
        if grant != "client_credentials":
            self._json(400, {"error": "unsupported_grant_type"})
            return
        token = "lab-flaky-at-" + secrets.token_urlsafe(16)
        with owner._lock:
            owner._tokens.add(token)
        self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class SwitchableTLSServer:
    """An HTTPS lab host on 127.0.0.1 that presents an expired certificate until
    :meth:`recover` (and again after :meth:`break_`). Context manager.

    Args:
        host: the host name in its certificates (default: a random
            ``flaky-<hex>.cxlab.test``, so breaker keys never collide across runs).
        client_id: what the token endpoint accepts (the secret is random).
    """

    def __init__(self, host: str | None = None, *, client_id: str = "lab-flaky-client") -> None:
        self.host = host or f"flaky-{secrets.token_hex(4)}.cxlab.test"
        self.client_id = client_id
        self.client_secret = "fl-" + secrets.token_urlsafe(16)
        self._lock = threading.Lock()
        self._healthy = False
        self._connections: list[Connection] = []
        self._tokens: set[str] = set()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never the secret
        return f"SwitchableTLSServer({self.host}, healthy={self._healthy})"

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "SwitchableTLSServer":
        self._tmp = tempfile.TemporaryDirectory(prefix="cxlab-switchable-")
        directory = Path(self._tmp.name)
        ca = CA.create_root("cxhealth lab switchable root", organization="cxhealth lab")
        now = utcnow()
        valid = ca.issue_leaf([self.host]).write(directory, "valid")
        expired = ca.issue_leaf([self.host], not_before=now - timedelta(days=100),
                                not_after=now - timedelta(days=10)).write(directory, "expired")
        self.ca_bundle = str(write_bundle(directory / "ca.pem", [ca.cert]))
        self._valid = self._context(valid.chain, valid.key)
        self._expired = self._context(expired.chain, expired.key)
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="switchable-tls", daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _context(chain: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(chain, key)
        return ctx

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "SwitchableTLSServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- switching -------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        with self._lock:
            return self._healthy

    def recover(self) -> float:
        """Present the valid certificate from now on; returns the switch time."""
        with self._lock:
            self._healthy = True
            return time.time()

    def break_(self) -> float:
        """Present the expired certificate again; returns the switch time."""
        with self._lock:
            self._healthy = False
            return time.time()

    # -- what it saw -------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    def connections(self, since: float | None = None, until: float | None = None) -> list[Connection]:
        """Accepted connections, in accept order, optionally within [since, until)."""
        with self._lock:
            found = list(self._connections)
        return [c for c in found if (since is None or c.at >= since) and (until is None or c.at < until)]

    # -- a target at this host -------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {ENV_NAME: self.client_secret}

    def target_values(self, name: str = "lab-flaky", **overrides: Any) -> dict[str, Any]:
        """A generic-platform ``[[target]]`` at this host (token and API on it)."""
        base = f"https://{self.host}:{self.port}"
        values: dict[str, Any] = {
            "name": name, "platform": "generic", "client_id": self.client_id, "client_secret_env": ENV_NAME,
            "token_url": f"{base}/oauth/token", "api_base": base, "endpoints": ["/v1/health"],
            "ca_bundle": self.ca_bundle, "resolve": [f"{self.host}:{self.port}:127.0.0.1"], "timeout": 3.0,
        }
        return {**values, **overrides}
