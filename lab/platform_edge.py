"""A stand-in for a platform's edge: one loopback TLS server whose certificate covers the
platform's real host names (``login.mypurecloud.com``, ``api.mypurecloud.com``, ...).

For ``cxhealth proxy-audit`` in the lab and the tests: squid is asked (through
``--connect-to``) to tunnel to this server while the client sends the real
name as SNI and verifies the certificate against it, so squid's per-name
``ssl_bump`` rules see the platform's names. The certificate comes from a
fresh lab root (``ca_bundle``), never from a public CA.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Sequence

from . import pki

LOOPBACK = "127.0.0.1"
EDGE_DOMAIN = "edge.cxlab.test"


class PlatformEdge:
    """``with PlatformEdge(["login.mypurecloud.com", "api.mypurecloud.com"]) as edge:`` — ``edge.port``,
    ``edge.ca_bundle``, ``edge.connections`` (accepted TLS handshakes), ``edge.connect_to()``."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.hosts = list(hosts)
        self.connections = 0
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> "PlatformEdge":
        self._tmp = tempfile.TemporaryDirectory(prefix="cxlab-edge-")
        d = Path(self._tmp.name)
        root = pki.CA.create_root("CX Lab Platform Edge Root", organization="CX Lab Public Trust")
        issuing = root.create_intermediate("CX Lab Platform Edge Issuing CA", organization="CX Lab Public Trust")
        files = issuing.issue_leaf(self.hosts, key_type="rsa").write(d, "edge")
        self.ca_bundle = str(pki.write_bundle(d / "edge-root.pem", [root.cert]))
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ctx.load_cert_chain(files.chain, files.key)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="cxlab-edge", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    @staticmethod
    def dial_name(host: str) -> str:
        """The name a proxy is asked to CONNECT to for ``host``: it keeps the real name (so a
        proxy's per-name rules still read naturally) under the lab's domain."""
        return f"{host}.{EDGE_DOMAIN}"

    def hosts_file(self) -> dict[str, str]:
        """name -> address entries for a proxy's hosts file (squid's ``hosts_file``)."""
        return {self.dial_name(h): LOOPBACK for h in self.hosts}

    def connect_to(self) -> list[str]:
        """``--connect-to`` arguments that send every host's tunnel here."""
        return [arg for h in self.hosts for arg in ("--connect-to", f"{h}:443:{self.dial_name(h)}:{self.port}")]

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self._ctx.wrap_socket(conn, server_side=True) as tls:
                with self._lock:
                    self.connections += 1
                try:
                    data = tls.recv(4096)
                    if data:
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                except (OSError, ssl.SSLError):
                    pass
        except (OSError, ssl.SSLError):
            conn.close()
