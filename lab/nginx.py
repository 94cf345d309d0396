"""A second, real TLS server stack for the lab: Debian's nginx.

:class:`NginxStack` writes one nginx.conf with a ``server`` block per case (each on
its own loopback port), starts ``nginx -p PREFIX -c CONF -e LOG -g 'daemon off;
pid …;'`` as a child process, waits until every port accepts, and stops that
process (by its PID, never by name) on exit. Everything lives in a temp dir.

OpenSSL 3 at its default security level refuses to *load* weak keys and MD5/SHA-1
certificates, and nginx loads certificates before it reads ``ssl_ciphers``; so the
process gets an OpenSSL config (``OPENSSL_CONF``) whose system default is
``@SECLEVEL=0``: the server may then serve what the cases need, and the client
under test keeps its own level (its refusal is what is being diagnosed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from .foreign import Case

NGINX = os.environ.get("CXHEALTH_NGINX", "/usr/sbin/nginx")
LOOPBACK = "127.0.0.1"


def nginx_path() -> str | None:
    """The nginx binary, or None when it is not installed."""
    if os.path.isfile(NGINX) and os.access(NGINX, os.X_OK):
        return NGINX
    return shutil.which("nginx")


class NginxError(RuntimeError):
    """nginx did not start (its error log's last lines are in the message)."""


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((LOOPBACK, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


_OPENSSL_CNF = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT:@SECLEVEL=0
"""


def _server_block(case: Case, port: int) -> str:
    s = case.server
    protocols = " ".join(v for v in ("TLSv1.2", "TLSv1.3") if s.tls_min <= v[4:] <= s.tls_max)
    lines = []
    if s.served_names is not None:  # the port's default server refuses every other name
        lines += ["    server {", f"        listen {LOOPBACK}:{port} ssl default_server;",
                  "        ssl_reject_handshake on;", "    }"]
    lines += [
        "    server {",
        f"        listen {LOOPBACK}:{port} ssl;",
        f"        server_name {' '.join(s.served_names) if s.served_names is not None else case.host};",
        f"        ssl_certificate {s.chain};",
        f"        ssl_certificate_key {s.key};",
        f"        ssl_protocols {protocols};",
        f"        ssl_ciphers {s.ciphers or 'DEFAULT:@SECLEVEL=0'};",
    ]
    if s.dhparam is not None:
        lines.append(f"        ssl_dhparam {s.dhparam};")
    if s.tls13_suites is not None:
        lines.append(f"        ssl_conf_command Ciphersuites {s.tls13_suites};")
    if s.verify_client is not None and s.client_ca is not None:
        lines += [f"        ssl_verify_client {s.verify_client};",
                  f"        ssl_client_certificate {s.client_ca};",
                  "        ssl_verify_depth 3;"]
    lines += [f'        location / {{ default_type text/plain; return 200 "nginx {case.name}: ok\\n"; }}', "    }"]
    return "\n".join(lines)


class NginxStack:
    """Serve ``cases`` with nginx on loopback; ``ports`` maps case name -> port."""

    def __init__(self, cases: Sequence[Case], *, start_timeout: float = 20.0) -> None:
        self.cases = [c for c in cases if "nginx" in c.stacks]
        self.ports: dict[str, int] = {}
        self.start_timeout = start_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "NginxStack":
        binary = nginx_path()
        if binary is None:
            raise NginxError("nginx is not installed (Debian: apt-get install nginx)")
        self._tmp = tempfile.TemporaryDirectory(prefix="cxnginx-")
        self.prefix = Path(self._tmp.name)
        try:
            for attempt in range(3):
                try:
                    self._start(binary)
                    return self
                except NginxError as exc:
                    self._stop()
                    if "Address already in use" not in str(exc) or attempt == 2:
                        raise
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def _start(self, binary: str) -> None:
        ports = _free_ports(len(self.cases))
        self.ports = {c.name: p for c, p in zip(self.cases, ports)}
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / sub).mkdir(exist_ok=True)
        conf = self.prefix / "nginx.conf"
        temp_paths = "\n".join(f"    {name}_temp_path {self.prefix / sub};" for name, sub in (
            ("client_body", "client_body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"), ("uwsgi", "uwsgi"),
            ("scgi", "scgi")))
        conf.write_text(
            "worker_processes 1;\n"
            f"error_log {self.error_log} warn;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            "    access_log off;\n"
            f"{temp_paths}\n"
            + "\n".join(_server_block(c, self.ports[c.name]) for c in self.cases)
            + "\n}\n")
        cnf = self.prefix / "openssl.cnf"
        cnf.write_text(_OPENSSL_CNF)
        env = {**os.environ, "OPENSSL_CONF": str(cnf)}
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.error_log),
             "-g", f"daemon off; pid {self.prefix / 'nginx.pid'};"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + self.start_timeout
        pending = set(self.ports.values())
        while pending:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode("utf-8", "replace")
                log = self.error_log.read_text("utf-8", "replace") if self.error_log.exists() else ""
                raise NginxError("nginx exited: " + (err + log).strip()[-800:])
            for port in list(pending):
                try:
                    with socket.create_connection((LOOPBACK, port), timeout=0.5):
                        pending.discard(port)
                except OSError:
                    pass
            if pending:
                if time.monotonic() > deadline:
                    raise NginxError(f"nginx did not listen on {len(pending)} port(s) within {self.start_timeout:g} s")
                time.sleep(0.02)

    def _stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # SIGTERM to the master we started: it stops its workers
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        self._stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
