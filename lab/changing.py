"""A lab host that changes between runs: what the history (contract §4) must notice.

A tiny generic OAuth platform (as :mod:`lab.switchable`: ``POST /oauth/token``,
``GET /v1/health``) whose TLS changes when told to, while it keeps serving:

* ``set_versions("1.3", "1.3")`` — the version range (a gateway pool going TLS 1.3-only);
* ``set_cipher("ECDHE-ECDSA-AES128-GCM-SHA256")`` — the TLS 1.2 cipher suite;
* ``rotate_intermediate()`` — a new intermediate CA (and a leaf from it);
* ``renew_leaf()`` — a new leaf from the same intermediate, expiring later;
* ``rekey_leaf()`` — a new leaf key from the same intermediate, same expiry;
* ``slow(0.2)`` — every handshake waits that long first (a congested path);
* ``break_()`` / ``recover()`` — an expired certificate, then a valid one again.

It may listen on several loopback addresses at one port (``addresses=("127.0.0.2",
"127.0.0.3")``), each with its own version range, cipher, delay and breakage
(``address=`` on the methods): the pool whose members differ. Targets reach it
through ``resolve = ["host:port:addr,addr"]``; nothing resolves the name.
Like the other lab servers it never prints requests (they carry the secret).
"""

from __future__ import annotations

import secrets
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

from cxhealth.lab.pki import CA, IssuedCert, utcnow, write_bundle
from cxhealth.lab.switchable import _Handler

ENV_NAME = "LAB_CHANGING_CLIENT_SECRET"
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class Profile:
    """How one address of the host behaves now."""

    tls_min: str = "1.2"
    tls_max: str = "1.3"
    ciphers: str | None = None
    delay_s: float = 0.0
    broken: bool = False


class _AddressServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: "ChangingTLSServer", address: str, port: int) -> None:
        self.owner = owner
        self.address = address
        super().__init__((address, port), _Handler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        context, delay = self.owner._context_for(self.address)
        request.settimeout(5)
        if delay:
            time.sleep(delay)
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
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


class ChangingTLSServer:
    """An HTTPS lab host whose TLS changes on command. Context manager.

    Args:
        host: the certificate's host name (default a random ``changing-<hex>.cxlab.test``).
        addresses: the loopback addresses it listens on, all at one port.
        token_issuer: another lab host whose issued tokens this one accepts (an API host).
    """

    def __init__(self, host: str | None = None, *, addresses: Sequence[str] = ("127.0.0.1",),
                 client_id: str = "lab-changing-client",
                 token_issuer: "ChangingTLSServer | None" = None) -> None:
        self.host = host or f"changing-{secrets.token_hex(4)}.cxlab.test"
        self.addresses = tuple(addresses)
        self.client_id = client_id
        self.client_secret = "ch-" + secrets.token_urlsafe(16)
        self.secret_env = f"{ENV_NAME}_{secrets.token_hex(3).upper()}"  # one per server: several can share an env
        self._lock = threading.Lock()
        # An API host that accepts the tokens another lab host issues (a login host and an API
        # host, as Genesys' login.* and api.*): ``token_issuer=login_server``.
        self._tokens: set[str] = token_issuer._tokens if token_issuer is not None else set()
        self._profiles = {a: Profile() for a in self.addresses}
        self._servers: list[_AddressServer] = []
        self._threads: list[threading.Thread] = []
        self._contexts: dict[tuple, ssl.SSLContext] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._serial = 0

    def __repr__(self) -> str:  # never the secret
        return f"ChangingTLSServer({self.host}, {','.join(self.addresses)})"

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> "ChangingTLSServer":
        self._tmp = tempfile.TemporaryDirectory(prefix="cxlab-changing-")
        self._dir = Path(self._tmp.name)
        self._root = CA.create_root("cxhealth lab changing root", organization="cxhealth lab")
        self._intermediates = (self._root.create_intermediate("cxhealth lab changing intermediate A"),
                               self._root.create_intermediate("cxhealth lab changing intermediate B"))
        self._intermediate = 0
        self.ca_bundle = str(write_bundle(self._dir / "ca.pem", [self._root.cert]))
        now = utcnow()
        self._leaf = self._issue(not_after=now + timedelta(days=90))
        self._expired = self._write(self._intermediates[0].issue_leaf(
            [self.host], not_before=now - timedelta(days=100), not_after=now - timedelta(days=10)))
        for _ in range(50):  # one port free on every address
            servers: list[_AddressServer] = []
            try:
                servers.append(_AddressServer(self, self.addresses[0], 0))
                for address in self.addresses[1:]:
                    servers.append(_AddressServer(self, address, servers[0].server_address[1]))
                break
            except OSError:
                for s in servers:
                    s.server_close()
        else:  # pragma: no cover
            raise RuntimeError("no port free on every lab address")
        self._servers = servers
        for s in servers:
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                 name=f"changing-tls-{s.address}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers, self._threads = [], []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "ChangingTLSServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._servers[0].server_address[1]

    # -- certificates ----------------------------------------------------------------
    def _write(self, issued: IssuedCert) -> tuple[Path, Path, IssuedCert]:
        self._serial += 1
        files = issued.write(self._dir, f"leaf{self._serial}")
        return files.chain, files.key, issued

    def _issue(self, *, not_after: Any) -> tuple[Path, Path, IssuedCert]:
        ca = self._intermediates[self._intermediate]
        return self._write(ca.issue_leaf([self.host], not_after=not_after))

    @property
    def leaf(self) -> IssuedCert:
        return self._leaf[2]

    def _context_for(self, address: str) -> tuple[ssl.SSLContext, float]:
        with self._lock:
            profile = self._profiles[address]
            chain, key, _ = self._expired if profile.broken else self._leaf
            cache_key = (profile.tls_min, profile.tls_max, profile.ciphers, str(chain))
            ctx = self._contexts.get(cache_key)
            if ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = _VERSIONS[profile.tls_min]
                ctx.maximum_version = _VERSIONS[profile.tls_max]
                if profile.ciphers:
                    ctx.set_ciphers(profile.ciphers)
                ctx.load_cert_chain(chain, key)
                self._contexts[cache_key] = ctx
            return ctx, profile.delay_s

    # -- changes ------------------------------------------------------------------------
    def _change(self, address: str | None, **values: Any) -> None:
        with self._lock:
            for a in ([address] if address else self.addresses):
                self._profiles[a] = replace(self._profiles[a], **values)

    def set_versions(self, tls_min: str, tls_max: str, *, address: str | None = None) -> None:
        self._change(address, tls_min=tls_min, tls_max=tls_max)

    def set_cipher(self, ciphers: str | None, *, address: str | None = None) -> None:
        self._change(address, ciphers=ciphers)

    def slow(self, seconds: float, *, address: str | None = None) -> None:
        self._change(address, delay_s=seconds)

    def break_(self, *, address: str | None = None) -> None:
        self._change(address, broken=True)

    def recover(self, *, address: str | None = None) -> None:
        self._change(address, broken=False)

    def rotate_intermediate(self) -> None:
        """A CA rotation: the other intermediate issues the leaf (same expiry)."""
        with self._lock:
            self._intermediate = 1 - self._intermediate
            self._leaf = self._issue(not_after=self.leaf.cert.not_valid_after_utc)

    def renew_leaf(self, days: int = 30) -> None:
        """A renewal: a new leaf (and key) from the same intermediate, expiring *days* later."""
        with self._lock:
            self._leaf = self._issue(not_after=self.leaf.cert.not_valid_after_utc + timedelta(days=days))

    def rekey_leaf(self) -> None:
        """A new leaf key from the same intermediate, expiring at the same time (not a renewal)."""
        with self._lock:
            self._leaf = self._issue(not_after=self.leaf.cert.not_valid_after_utc)

    # -- a target at this host ---------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {self.secret_env: self.client_secret}

    def target_values(self, name: str = "lab-changing", **overrides: Any) -> dict[str, Any]:
        """A generic-platform ``[[target]]`` at this host (token and API on it)."""
        base = f"https://{self.host}:{self.port}"
        values: dict[str, Any] = {
            "name": name, "platform": "generic", "client_id": self.client_id, "client_secret_env": self.secret_env,
            "token_url": f"{base}/oauth/token", "api_base": base, "endpoints": ["/v1/health"],
            "ca_bundle": self.ca_bundle, "resolve": [f"{self.host}:{self.port}:{','.join(self.addresses)}"],
            "timeout": 3.0,
        }
        return {**values, **overrides}
