"""A real egress proxy for the lab and the tests: Debian's squid (squid-openssl), on loopback.

``with SquidLab(hosts=..., ...) as squid:`` writes a configuration into a
temporary directory and runs ``squid -N -f squid.conf`` (no daemon, its own
pid file, logs and certificate database in that directory, no cache, no DNS
beyond its own hosts file), on random loopback ports, one per behaviour:

* ``plain``  — an open CONNECT tunnel (a ``dstdomain`` deny list answers 403);
* ``auth``   — Basic proxy authentication (``basic_ncsa_auth`` with an
  htpasswd file written here): no or wrong credentials get 407;
* ``bump``   — TLS inspection (``ssl_bump``) with a CA named like a known
  product ("Zscaler Root CA"): names in ``splice`` are tunnelled untouched,
  every other name is re-signed;
* ``bump_neutral`` — the same with a neutral corporate CA, for ``--expect-issuer``.

A CONNECT to a port where nothing listens gets squid's own 503
(ERR_CONNECT_FAIL); a name squid cannot resolve (nothing answers DNS on
127.0.0.1) gets squid 5.7's 500 ERR_CANNOT_FORWARD within about a second.
Leaving the ``with`` block stops squid (SIGTERM to the process this object
started, then SIGKILL) and deletes the directory. :func:`squid_binary` says
whether squid with ssl_bump is installed.

No Prefect here (the CLI's lab and demo paths stay light).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from . import pki

SQUID = "/usr/sbin/squid"
CERTGEN = "/usr/lib/squid/security_file_certgen"
NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth"
LOOPBACK = "127.0.0.1"
PROXY_USER = "cxlab-proxy-user"
PORT_NAMES = ("plain", "auth", "bump", "bump_neutral")


def squid_binary() -> str | None:
    """The squid binary, if it is installed with TLS inspection (``--enable-ssl-crtd``), else None."""
    path = shutil.which("squid") or (SQUID if os.path.exists(SQUID) else None)
    if path is None or not os.path.exists(CERTGEN) or not os.path.exists(NCSA_AUTH):
        return None
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--enable-ssl-crtd" in out else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _htpasswd_line(user: str, password: str) -> str:
    """An htpasswd line with an MD5-crypt hash (what basic_ncsa_auth reads), via htpasswd or openssl."""
    tool = shutil.which("htpasswd")
    if tool:
        out = subprocess.run([tool, "-n", "-i", "-m", user], input=password, capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return out.strip().splitlines()[0]
    out = subprocess.run(["openssl", "passwd", "-apr1", "-stdin"], input=password, capture_output=True,
                         text=True, timeout=10, check=True).stdout
    return f"{user}:{out.strip()}"


@dataclass
class SquidLab:
    """squid on loopback with the lab's behaviours (see the module docstring).

    Args:
        hosts: name -> address, squid's hosts file (the only names it resolves).
        deny: domains (``dstdomain`` syntax, ``.example.com`` for a whole domain)
            the ``plain`` and ``auth`` ports answer 403 for.
        splice: SNI names (``ssl::server_name`` syntax) the bump ports tunnel untouched.
        upstream_ca_bundle: the roots squid trusts when it connects upstream on the
            bump ports (the lab's public roots).
        password: the ``auth`` port's password for :data:`PROXY_USER`.
    """

    hosts: Mapping[str, str] = field(default_factory=dict)
    deny: Sequence[str] = ()
    splice: Sequence[str] = ()
    upstream_ca_bundle: str | None = None
    password: str = "cxlab-proxy-secret-7f3a9"
    ports: dict[str, int] = field(default_factory=dict, init=False)
    directory: Path | None = field(default=None, init=False)
    zscaler_ca: pki.CA | None = field(default=None, init=False)
    neutral_ca: pki.CA | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> "SquidLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> "SquidLab":
        binary = squid_binary()
        if binary is None:
            raise RuntimeError("squid with ssl_bump (Debian's squid-openssl) is not installed")
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="cxlab-squid-")
            self.directory = Path(self._tmp.name)
            for conf in self._write_files():
                with open(conf.with_suffix(".stderr"), "wb") as err:
                    self._procs.append(subprocess.Popen([binary, "-N", "-f", str(conf)], stdin=subprocess.DEVNULL,
                                                        stdout=subprocess.DEVNULL, stderr=err,
                                                        start_new_session=True))
            self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            try:  # squid's helpers (certgen, ncsa_auth) are in the session this object started
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"squid exited ({proc.returncode}): {self.log_tail()}")
            for port in list(pending):
                try:
                    with socket.create_connection((LOOPBACK, port), timeout=0.5):
                        pending.discard(port)
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"squid did not listen within {timeout:g} s: {self.log_tail()}")
            if pending:
                time.sleep(0.05)

    def log_tail(self, lines: int = 8) -> str:
        if self.directory is None:
            return ""
        text = ""
        for path in sorted(self.directory.glob("*.log")) + sorted(self.directory.glob("*.stderr")):
            if path.name.startswith("cache"):
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    # -- what tests use -------------------------------------------------------------------

    def url(self, name: str = "plain", user: str | None = None) -> str:
        """``http://[user@]127.0.0.1:PORT`` of one behaviour's port."""
        who = f"{user}@" if user else ""
        return f"http://{who}{LOOPBACK}:{self.ports[name]}"

    @property
    def access_log(self) -> Path:
        assert self.directory is not None
        return self.directory / "access.log"

    def access_lines(self) -> list[str]:
        """Every access-log line, of both squid processes."""
        assert self.directory is not None
        lines: list[str] = []
        for path in (self.access_log, self.directory / "access-neutral.log"):
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()
        return lines

    def wait_for_log(self, *needles: str, timeout: float = 10.0) -> str | None:
        """The first access-log line containing every needle, waiting for squid to write it
        (it logs a tunnel when the tunnel closes, a moment after the client hung up)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.access_lines():
                if all(n in line for n in needles):
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    @property
    def zscaler_ca_pem(self) -> Path:
        assert self.directory is not None
        return self.directory / "zscaler-ca-cert.pem"

    @property
    def neutral_ca_pem(self) -> Path:
        assert self.directory is not None
        return self.directory / "neutral-ca-cert.pem"

    # -- the configuration ----------------------------------------------------------------

    def _write_files(self) -> list[Path]:
        d = self.directory
        assert d is not None
        self.ports = {name: _free_port() for name in PORT_NAMES}
        self.zscaler_ca = pki.CA.create_root("Zscaler Root CA", organization="Zscaler Inc.", key_type="rsa")
        self.neutral_ca = pki.CA.create_root("Northwind Egress Gateway CA", organization="Northwind Traders",
                                             key_type="rsa")
        for label, ca in (("zscaler", self.zscaler_ca), ("neutral", self.neutral_ca)):
            (d / f"{label}-ca.pem").write_bytes(ca.pem + pki.key_to_pem(ca.key))
            (d / f"{label}-ca-cert.pem").write_bytes(ca.pem)
        (d / "hosts").write_text("".join(f"{addr} {name}\n" for name, addr in self.hosts.items()))
        (d / "htpasswd").write_text(_htpasswd_line(PROXY_USER, self.password) + "\n")
        (d / "htpasswd").chmod(0o644)
        for db in ("ssl_db", "ssl_db_neutral"):
            subprocess.run([CERTGEN, "-c", "-s", str(d / db), "-M", "4MB"], capture_output=True, timeout=30,
                           check=True)
        user = self._effective_user()
        if user is not None:
            subprocess.run(["chown", "-R", f"{user}:", str(d)], check=True, timeout=10)
            d.chmod(0o755)
        upstream = ""
        if self.upstream_ca_bundle:  # copied: squid's user may not read the caller's directory
            shutil.copyfile(self.upstream_ca_bundle, d / "upstream-ca.pem")
            upstream = f"tls_outgoing_options cafile={d}/upstream-ca.pem\n"
        main = self._conf(d, user, "main", [
            f"http_port {LOOPBACK}:{self.ports['plain']} name=plain",
            f"http_port {LOOPBACK}:{self.ports['auth']} name=auth",
            f"http_port {LOOPBACK}:{self.ports['bump']} name=bump ssl-bump tls-cert={d}/zscaler-ca.pem "
            "generate-host-certificates=on dynamic_cert_mem_cache_size=4MB"], "ssl_db", upstream)
        neutral = self._conf(d, user, "neutral", [
            f"http_port {LOOPBACK}:{self.ports['bump_neutral']} name=bump_neutral ssl-bump "
            f"tls-cert={d}/neutral-ca.pem generate-host-certificates=on dynamic_cert_mem_cache_size=4MB"],
            "ssl_db_neutral", upstream)
        paths = []
        for name, text in (("squid.conf", main), ("squid-neutral.conf", neutral)):
            (d / name).write_text(text)
            paths.append(d / name)
        return paths

    def _conf(self, d: Path, user: str | None, label: str, ports: list[str], ssl_db: str, upstream: str) -> str:
        suffix = "" if label == "main" else f"-{label}"
        deny = " ".join(self.deny) or "deny.invalid"
        splice = " ".join(self.splice) or "splice.invalid"
        port_lines = "\n".join(ports)
        return f"""# generated by cxhealth.lab.squid ({label})
{port_lines}
pid_filename {d}/squid{suffix}.pid
cache_log {d}/cache{suffix}.log
access_log stdio:{d}/access{suffix}.log squid
cache_store_log none
coredump_dir {d}
cache deny all
cache_mem 8 MB
shutdown_lifetime 0 seconds
pinger_enable off
netdb_filename none
icp_port 0
htcp_port 0
logfile_rotate 0
visible_hostname cxlab-squid
hosts_file {d}/hosts
dns_nameservers 127.0.0.1
dns_timeout 1 seconds
dns_retransmit_interval 1 seconds
connect_timeout 5 seconds
forward_timeout 10 seconds
{f'cache_effective_user {user}' if user else ''}
auth_param basic program {NCSA_AUTH} {d}/htpasswd
auth_param basic children 2 startup=1 idle=1
auth_param basic realm cxlab egress proxy
auth_param basic credentialsttl 1 minute
sslcrtd_program {CERTGEN} -s {d}/{ssl_db} -M 4MB
sslcrtd_children 3 startup=1 idle=1
{upstream}acl plain myportname plain
acl authport myportname auth
acl denied dstdomain -n {deny}
acl authed proxy_auth REQUIRED
acl step1 at_step SslBump1
acl spliced ssl::server_name {splice}
http_access deny denied
http_access allow authport authed
http_access deny authport
http_access allow all
ssl_bump peek step1
ssl_bump splice spliced
ssl_bump bump all
"""

    @staticmethod
    def _effective_user() -> str | None:
        """squid refuses to run as root: as root, let it switch to the ``proxy`` (or ``nobody``) user."""
        if os.geteuid() != 0:
            return None
        import pwd

        for name in ("proxy", "nobody"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        return None
