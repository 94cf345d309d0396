"""TLSLab: local TLS servers that reproduce every failure mode of contract §1.

``with TLSLab() as lab:`` starts one server per scenario on 127.0.0.1 (random
ports), all on one asyncio loop in one background thread, with every
certificate and trust bundle in one temporary directory. Leaving the ``with``
block stops the servers, joins the thread and removes the directory.

Each :class:`Scenario` says what a naive client should see and what
``cxhealth diagnose`` should conclude (``cause``, ``warnings``), and carries the
exact command-line arguments a person would pass (``diagnose_args``).

Why TLS is done by hand (``ssl.MemoryBIO``) rather than by asyncio's
``start_server(ssl=...)``: when a server-side handshake fails, asyncio's
SSL transport closes the socket without sending the pending TLS alert, so the
client would see an EOF instead of ``protocol_version`` / ``handshake_failure``
/ ``unrecognized_name`` / ``certificate_required``, which is exactly the
evidence the scenarios exist to produce. Here the alert is always flushed, and
the socket is closed "lingering" (FIN, then drain the client's bytes) so that
unread client data cannot turn the close into a reset that would hide it.

No Prefect here: the CLI path that starts the lab must stay light.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from cryptography.hazmat.primitives import serialization

from . import pki

LOOPBACK = "127.0.0.1"
DOMAIN = "cxlab.test"
#: The subject text of the lab's public CAs: what ``--expect-issuer`` names.
PUBLIC_ISSUER = "CX Lab Public"
ZSCALER_ORG = "Zscaler Inc."

# How long a lab server waits on a silent peer before it gives up: long enough
# for any client timeout under test, short enough not to pile up.
_PEER_IDLE_S = 30.0
_LINGER_S = 2.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ConnectionCounter:
    """A thread-safe counter of accepted TCP connections (or AIA fetches).

    The server thread increments it; tests read and reset it from theirs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    @property
    def value(self) -> int:
        with self._lock:
            return self._value

    def increment(self) -> int:
        with self._lock:
            self._value += 1
            return self._value

    def reset(self) -> int:
        """Set the count to zero; returns the count it had."""
        with self._lock:
            old, self._value = self._value, 0
            return old

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"ConnectionCounter({self.value})"


@dataclass(frozen=True)
class Scenario:
    """One lab endpoint and what a diagnosis of it must conclude.

    Attributes:
        name: scenario key in ``TLSLab.scenarios``.
        cause: the contract §1 cause code ``cxhealth diagnose`` must report.
        warnings: the warning codes it must report too (mostly on healthy
            handshakes; ``tls12_only_policy`` goes with every ``--tls-max 1.2``).
        host, port: the TARGET; ``host`` is in the leaf's SANs unless the
            scenario is about that. Lab hosts do not resolve: see ``resolve``.
        address: where the server listens (``None`` for ``dns_failure``: there
            is nothing to connect to).
        description: one line, what the scenario simulates.
        diagnose_args: the exact extra ``cxhealth diagnose`` arguments
            (``--resolve``, ``--ca-bundle``, ``--reference-ca-bundle``, and the
            scenario's own flags).
        connections: TCP connections this scenario's server accepted.
        ca_bundle .. client_key, timeout: the same client settings as
            ``diagnose_args``, structured, for tests that build their own client.
        chain_pem: the PEM file the server sends (leaf first), if TLS.
        aia_url, aia_fetches: the leaf's AIA caIssuers URL and its fetch count.
        target: ``https://host:port``.
    """

    name: str
    cause: str
    host: str
    port: int
    description: str
    connections: ConnectionCounter
    warnings: tuple[str, ...] = ()
    address: str | None = LOOPBACK
    ca_bundle: str | None = None
    reference_ca_bundle: str | None = None
    resolve: bool = True
    send_sni: bool = True
    tls_max: str | None = None
    pins: tuple[str, ...] = ()
    expect_issuers: tuple[str, ...] = ()
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float | None = None
    chain_pem: str | None = None
    aia_url: str | None = None
    aia_fetches: ConnectionCounter | None = None
    target: str = field(init=False)
    diagnose_args: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", f"https://{self.host}:{self.port}")
        object.__setattr__(self, "diagnose_args", self._args())

    @property
    def is_healthy(self) -> bool:
        return self.cause == "ok"

    def command(self, program: str = "cxhealth") -> list[str]:
        """The full command line, e.g. to print or to run."""
        return [program, "diagnose", self.target, *self.diagnose_args]

    def _args(self) -> tuple[str, ...]:
        args: list[str] = []
        if self.resolve and self.address:
            args += ["--resolve", f"{self.host}:{self.port}:{self.address}"]
        if self.ca_bundle:
            args += ["--ca-bundle", self.ca_bundle]
        if self.reference_ca_bundle:
            args += ["--reference-ca-bundle", self.reference_ca_bundle]
        if not self.send_sni:
            args += ["--no-sni"]
        if self.tls_max:
            args += ["--tls-max", self.tls_max]
        for pin in self.pins:
            args += ["--pin", pin]
        for issuer in self.expect_issuers:
            args += ["--expect-issuer", issuer]
        if self.client_cert:
            args += ["--client-cert", self.client_cert]
        if self.client_key:
            args += ["--client-key", self.client_key]
        if self.timeout is not None:
            args += ["--timeout", f"{self.timeout:g}"]
        return tuple(args)


# --------------------------------------------------------------------------
# Per-connection behaviours (run on the lab's loop)


class _ServerTLS:
    """Server side of TLS over an asyncio stream, through memory BIOs.

    See the module docstring for why: alerts must reach the client.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
        self.reader, self.writer = reader, writer
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self._in, self._out, server_side=True)

    async def flush(self) -> None:
        data = self._out.read()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _feed(self) -> None:
        data = await self.reader.read(65536)
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                await self._feed()
            except ssl.SSLError:
                await self.flush()  # the alert: the whole point of a failure scenario
                raise
        await self.flush()  # Finished, and TLS 1.3 session tickets

    async def read(self, n: int = 65536) -> bytes:
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                await self.flush()
                await self._feed()
            except ssl.SSLZeroReturnError:
                return b""

    async def write(self, data: bytes) -> None:
        self.obj.write(data)
        await self.flush()

    async def close_notify(self) -> None:
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass  # we do not wait for the peer's close_notify
        await self.flush()


async def _drain_until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def _lingering_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """FIN, then read until the peer closes (bounded).

    Closing a socket with unread input makes Linux send RST, and a client
    that gets RST may never read the alert or response we just sent.
    """
    try:
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(_drain_until_eof(reader), _LINGER_S)
    except (OSError, asyncio.TimeoutError):
        pass


async def _read_http_request(read: Callable[[], Awaitable[bytes]]) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = await read()
        if not chunk:
            break
        data += chunk
    return data


def _http_response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _tls_http(ctx: ssl.SSLContext, body: bytes) -> Handler:
    """TLS, then a minimal HTTP/1.1 server: any request gets ``200 OK``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = _ServerTLS(reader, writer, ctx)
        try:
            await asyncio.wait_for(tls.handshake(), _PEER_IDLE_S)
        except ssl.SSLError:
            await _lingering_close(reader, writer)
            return
        request = await asyncio.wait_for(_read_http_request(tls.read), _PEER_IDLE_S)
        if request.split(b" ", 1)[0].isalpha():
            await tls.write(_http_response("200 OK", body))
        await tls.close_notify()
        await _lingering_close(reader, writer)

    return handle


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read everything, answer nothing: a handshake that never ends."""
    await _drain_until_eof(reader)


async def _reset_after_client_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the ClientHello, then RST (SO_LINGER 0): no TLS alert at all."""
    await asyncio.wait_for(reader.read(65536), _PEER_IDLE_S)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _plain_http_400(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A plain HTTP server: a ClientHello is not HTTP, so ``400 Bad Request``."""
    await asyncio.wait_for(reader.read(65536), _PEER_IDLE_S)
    writer.write(_http_response("400 Bad Request", b"This port speaks plain HTTP.\n"))
    await writer.drain()
    await _lingering_close(reader, writer)


# --------------------------------------------------------------------------
# Server-side TLS contexts


def _server_context(files: pki.PemFiles, *, tls_min: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
                    tls_max: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, ciphers: str | None = None,
                    client_ca: Path | None = None, sni_host: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = tls_min
    ctx.maximum_version = tls_max
    if ciphers:
        ctx.set_ciphers(ciphers)
    ctx.load_cert_chain(files.chain, files.key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    if sni_host is not None:
        ctx.sni_callback = _require_sni(sni_host)
    return ctx


def _require_sni(expected: str) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    def callback(sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> int | None:
        # OpenSSL calls this even when the ClientHello has no SNI (name None).
        if server_name is None or server_name.lower() != expected:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    return callback


# --------------------------------------------------------------------------
# The lab


@dataclass(frozen=True)
class LabCAs:
    """The lab's certificate authorities, for tests that build their own chains.

    public: the root every client trusts (the simulated system store);
    public_issuing: its intermediate, issuing the healthy leaves;
    new_root / new_issuing: a newer public root, only in the reference store;
    legacy_sha1_root / legacy_issuing: a public root whose self-signature is
        SHA-1 (in both stores), and its SHA-256 intermediate;
    private / private_issuing: a company CA nobody trusts;
    zscaler / zscaler_issuing: an inspection product's CA;
    corp_inspection / corp_inspection_issuing: a corporate inspection CA that is
        not a known product name;
    client: issues the lab's client certificate (mTLS scenarios).
    """

    public: pki.CA
    public_issuing: pki.CA
    new_root: pki.CA
    new_issuing: pki.CA
    legacy_sha1_root: pki.CA
    legacy_issuing: pki.CA
    private: pki.CA
    private_issuing: pki.CA
    zscaler: pki.CA
    zscaler_issuing: pki.CA
    corp_inspection: pki.CA
    corp_inspection_issuing: pki.CA
    client: pki.CA


class TLSLab:
    """Every TLS failure scenario on 127.0.0.1, in one background thread.

    Example::

        with TLSLab() as lab:
            s = lab.scenarios["cert_expired"]
            subprocess.run(s.command())          # cxhealth diagnose ... --resolve ...
            fleet = lab.healthy_fleet(200)        # 200 more healthy endpoints

    ``TLSLab(scenarios=False)`` starts no scenario servers (only the PKI and the
    loop), for benchmarks that need just ``healthy_fleet``.

    Paths for tests that build their own clients: ``client_store`` (the
    simulated system store), ``reference_store`` (the up-to-date public store),
    ``client_cert``/``client_key`` (accepted by the mTLS servers),
    ``mtls_client_ca``; the CA objects are in ``cas`` (:class:`LabCAs`).
    """

    def __init__(self, *, scenarios: bool = True) -> None:
        self._want_scenarios = scenarios
        self.scenarios: dict[str, Scenario] = {}
        self.fleet: list[Scenario] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._raw_sockets: list[socket.socket] = []
        self._aia_files: dict[str, bytes] = {}
        self.aia_fetches = ConnectionCounter()
        self.aia_port = 0
        self._fleet_ctx: ssl.SSLContext | None = None

    # -- lifecycle --------------------------------------------------------

    def __enter__(self) -> "TLSLab":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> "TLSLab":
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="cxlab-")
            self.directory = Path(self._tmp.name)
            self._make_pki()
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="cxlab-loop", daemon=True)
            self._thread.start()
            self._start_aia_server()
            if self._want_scenarios:
                self._start_scenarios()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every server, join the thread, delete the directory. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
        if loop is not None and not loop.is_running():
            loop.close()
        self._loop = self._thread = None
        for sock in self._raw_sockets:
            sock.close()
        self._raw_sockets.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- public paths -----------------------------------------------------

    @property
    def client_store(self) -> Path:
        """The simulated system store: the public roots (what --ca-bundle gets)."""
        return self.directory / "client-store.pem"

    @property
    def reference_store(self) -> Path:
        """The simulated up-to-date public store: also trusts the new root."""
        return self.directory / "reference-store.pem"

    @property
    def client_cert(self) -> Path:
        """A client certificate the mTLS scenarios accept (key: ``client_key``)."""
        return self.directory / "client" / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client" / "client.key"

    # -- servers ----------------------------------------------------------

    def _run(self, coro: Awaitable[object]) -> object:
        assert self._loop is not None, "the lab is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)  # type: ignore[arg-type]

    def _listen(self, backlog: int = 128) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        sock.listen(backlog)
        return sock

    async def _serve(self, sock: socket.socket, handler: Handler, counter: ConnectionCounter) -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            counter.increment()
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)  # type: ignore[arg-type]
            self._writers.add(writer)
            try:
                await handler(reader, writer)
            except (OSError, asyncio.TimeoutError, EOFError):
                pass  # the client went away or stalled: expected in a failure lab
            finally:
                writer.close()
                self._writers.discard(writer)
                self._tasks.discard(task)  # type: ignore[arg-type]

        self._servers.append(await asyncio.start_server(on_connect, sock=sock))

    def _start_servers(self, jobs: Sequence[tuple[socket.socket, Handler, ConnectionCounter]]) -> None:
        async def start_all() -> None:
            for sock, handler, counter in jobs:
                await self._serve(sock, handler, counter)

        self._run(start_all())

    def _start_aia_server(self) -> None:
        sock = self._listen()
        self.aia_port = sock.getsockname()[1]
        files, fetches = self._aia_files, self.aia_fetches

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await asyncio.wait_for(_read_http_request(lambda: reader.read(65536)), _PEER_IDLE_S)
            parts = request.split(b" ", 2)
            path = parts[1].decode("ascii", "replace") if len(parts) > 1 else ""
            fetches.increment()
            der = files.get(path)
            if der is None:
                writer.write(_http_response("404 Not Found", b"not found\n"))
            else:
                writer.write(_http_response("200 OK", der, "application/pkix-cert"))
            await writer.drain()
            await _lingering_close(reader, writer)

        self._start_servers([(sock, handle, ConnectionCounter())])

    def publish_aia(self, ca: pki.CA, name: str) -> str:
        """Serve ``ca``'s certificate (DER) at ``http://127.0.0.1:PORT/<name>.cer``."""
        path = f"/{name}.cer"
        self._aia_files[path] = ca.cert.public_bytes(serialization.Encoding.DER)
        return f"http://{LOOPBACK}:{self.aia_port}{path}"

    def healthy_fleet(self, n: int = 200) -> list[Scenario]:
        """Start ``n`` more healthy TLS endpoints, cheaply, for benchmarks.

        They share one certificate (``*.fleet.cxlab.test``) and one server
        context, and run on the lab's loop like everything else. Returns their
        scenarios (cause ``ok``), also kept in ``lab.fleet``.
        """
        if self._fleet_ctx is None:
            leaf = self.cas.public_issuing.issue_leaf([f"*.fleet.{DOMAIN}"])
            self._fleet_ctx = _server_context(leaf.write(self.directory / "fleet", "fleet"))
        start = len(self.fleet)
        jobs, made = [], []
        for i in range(start, start + n):
            name = f"fleet-{i:04d}"
            sock = self._listen()
            self._raw_sockets.append(sock)  # closed on exit even if the server is not started
            scenario = Scenario(
                name=name, cause="ok", host=f"{name}.fleet.{DOMAIN}", port=sock.getsockname()[1],
                description="a healthy endpoint of the benchmark fleet", connections=ConnectionCounter(),
                ca_bundle=str(self.client_store), reference_ca_bundle=str(self.reference_store),
            )
            jobs.append((sock, _tls_http(self._fleet_ctx, f"cxlab {name}: ok\n".encode()), scenario.connections))
            made.append(scenario)
        self._start_servers(jobs)
        self.fleet.extend(made)
        return made

    # -- the PKI ------------------------------------------------------------

    def _make_pki(self) -> None:
        CA = pki.CA
        public = CA.create_root(f"{PUBLIC_ISSUER} Root R1", organization="CX Lab Public Trust")
        new_root = CA.create_root(f"{PUBLIC_ISSUER} Root R2", organization="CX Lab Public Trust")
        legacy = CA.create_root(f"{PUBLIC_ISSUER} Legacy Root (SHA-1)", organization="CX Lab Public Trust",
                                hash_name="sha1", key_type="rsa")
        private = CA.create_root("CX Lab Private Root CA", organization="CX Lab Internal IT")
        zscaler = CA.create_root("Zscaler Root CA", organization=ZSCALER_ORG)
        corp = CA.create_root("Acme Corp Inspection Root", organization="Acme Corp")
        self.cas = LabCAs(
            public=public,
            public_issuing=public.create_intermediate(f"{PUBLIC_ISSUER} Issuing CA 1", organization="CX Lab Public Trust"),
            new_root=new_root,
            new_issuing=new_root.create_intermediate(f"{PUBLIC_ISSUER} Issuing CA R2-1", organization="CX Lab Public Trust"),
            legacy_sha1_root=legacy,
            legacy_issuing=legacy.create_intermediate(f"{PUBLIC_ISSUER} Legacy Issuing CA", organization="CX Lab Public Trust"),
            private=private,
            private_issuing=private.create_intermediate("CX Lab Private Issuing CA", organization="CX Lab Internal IT"),
            zscaler=zscaler,
            zscaler_issuing=zscaler.create_intermediate("Zscaler Intermediate Root CA", organization=ZSCALER_ORG),
            corp_inspection=corp,
            corp_inspection_issuing=corp.create_intermediate("Acme Corp Inspection CA", organization="Acme Corp"),
            client=CA.create_root("CX Lab Client CA", organization="CX Lab Customers"),
        )
        cas = self.cas
        # A legacy SHA-1 root sits in both stores, as such roots still do in real ones.
        pki.write_bundle(self.client_store, [cas.public.cert, cas.legacy_sha1_root.cert])
        pki.write_bundle(self.reference_store, [cas.public.cert, cas.new_root.cert, cas.legacy_sha1_root.cert])
        self.mtls_client_ca = pki.write_bundle(self.directory / "client" / "client-ca.pem", [cas.client.cert])
        client = cas.client.issue_leaf([f"client.{DOMAIN}"], common_name="cxhealth lab client", client=True)
        client.write(self.directory / "client", "client")

    # -- the scenarios --------------------------------------------------------

    def _start_scenarios(self) -> None:
        cas, d = self.cas, self.directory
        now = pki.utcnow()
        store, reference = str(self.client_store), str(self.reference_store)
        jobs: list[tuple[socket.socket, Handler, ConnectionCounter]] = []

        def host_of(name: str) -> str:
            return f"{name.replace('_', '-')}.{DOMAIN}"

        def add(name: str, cause: str, description: str, handler: Handler | None,
                sock: socket.socket | None = None, **client: object) -> Scenario:
            if sock is None:
                sock = self._listen()
            self._raw_sockets.append(sock)
            scenario = Scenario(
                name=name, cause=cause, host=str(client.pop("host", host_of(name))), port=sock.getsockname()[1],
                description=description, connections=ConnectionCounter(),
                ca_bundle=str(client.pop("ca_bundle", store)), reference_ca_bundle=reference,
                **client,  # type: ignore[arg-type]
            )
            if handler is not None:
                jobs.append((sock, handler, scenario.connections))
            self.scenarios[name] = scenario
            return scenario

        def tls(name: str, cause: str, description: str, leaf: pki.IssuedCert, *, send: int | None = None,
                warnings: tuple[str, ...] = (), server: dict[str, object] | None = None, **client: object) -> None:
            files = leaf.write(d / name, "server", send=send)
            ctx = _server_context(files, **(server or {}))  # type: ignore[arg-type]
            add(name, cause, description, _tls_http(ctx, f"cxlab {name}: ok\n".encode()),
                warnings=warnings, chain_pem=str(files.chain), **client)

        def public_leaf(name: str, **kw: object) -> pki.IssuedCert:
            return cas.public_issuing.issue_leaf([host_of(name)], **kw)  # type: ignore[arg-type]

        # ---- healthy --------------------------------------------------------
        tls("healthy", "ok", "a verified leaf + intermediate from the public root, TLS 1.2-1.3",
            public_leaf("healthy"))
        tls("mtls_ok", "ok", "an mTLS endpoint, and the client presents the certificate it wants",
            public_leaf("mtls_ok"), server={"client_ca": self.mtls_client_ca},
            client_cert=str(self.client_cert), client_key=str(self.client_key))

        # ---- network ----------------------------------------------------------
        refused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        refused.bind((LOOPBACK, 0))  # bound, never listening: the port stays ours, and refuses
        add("dns_failure", "dns_failure", "the host is under .invalid: it never resolves", None,
            sock=refused, host=f"nxdomain.{DOMAIN.split('.')[0]}.invalid", resolve=False, address=None)
        refused2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        refused2.bind((LOOPBACK, 0))
        add("tcp_refused", "tcp_refused", "nothing listens on the port (bound, not listening: RST)", None,
            sock=refused2)
        add("tcp_timeout", "tcp_timeout",
            "a listener that never accepts, backlog full: SYNs are dropped and connect() times out",
            None, sock=self._backlogged_listener(), timeout=1.0)
        add("handshake_timeout", "handshake_timeout", "accepts TCP, never answers the ClientHello",
            _silent, timeout=1.0)
        add("connection_reset", "connection_reset", "reads the ClientHello, then resets (RST, no TLS alert)",
            _reset_after_client_hello)
        add("not_tls", "not_tls", "a plain HTTP server on the port: 400 Bad Request to the ClientHello",
            _plain_http_400)

        # ---- handshake parameters ----------------------------------------------
        tls("protocol_version_mismatch", "protocol_version_mismatch",
            "a TLS 1.3-only gateway; the client is capped at TLS 1.2",
            public_leaf("protocol_version_mismatch"), server={"tls_min": ssl.TLSVersion.TLSv1_3},
            tls_max="1.2", warnings=("tls12_only_policy",))  # the contract warns on the cap itself
        tls("cipher_mismatch", "cipher_mismatch",
            "TLS 1.2 only, RSA key exchange only (AES128-GCM-SHA256): nothing shared with ECDHE-only clients",
            public_leaf("cipher_mismatch", key_type="rsa"),
            server={"tls_max": ssl.TLSVersion.TLSv1_2, "ciphers": "AES128-GCM-SHA256"})
        tls("sni_required", "sni_required",
            "rejects a ClientHello without (or with a wrong) SNI with unrecognized_name; the client sends none",
            public_leaf("sni_required"), server={"sni_host": host_of("sni_required")}, send_sni=False)
        tls("client_cert_required", "client_cert_required",
            "TLS 1.3 mTLS: the handshake completes, the first read fails with certificate_required",
            public_leaf("client_cert_required"), server={"client_ca": self.mtls_client_ca})
        tls("client_cert_required_tls12", "client_cert_required",
            "TLS 1.2 mTLS: the server fails the handshake when no client certificate comes",
            public_leaf("client_cert_required_tls12"),
            server={"client_ca": self.mtls_client_ca, "tls_max": ssl.TLSVersion.TLSv1_2})

        # ---- certificates -------------------------------------------------------
        tls("cert_expired", "cert_expired", "the leaf expired 10 days ago",
            public_leaf("cert_expired", not_before=now - timedelta(days=100), not_after=now - timedelta(days=10)))
        tls("cert_not_yet_valid", "cert_not_yet_valid", "the leaf becomes valid in 10 days",
            public_leaf("cert_not_yet_valid", not_before=now + timedelta(days=10),
                        not_after=now + timedelta(days=100)))
        tls("hostname_mismatch", "hostname_mismatch", "a valid certificate, but for another name",
            cas.public_issuing.issue_leaf([f"other-service.{DOMAIN}"]))
        tls("self_signed", "self_signed", "a self-signed leaf (what `openssl req -x509` makes), no CA",
            pki.self_signed_leaf([host_of("self_signed")], organization="CX Lab Dev"))
        aia_url = self.publish_aia(cas.public_issuing, "cx-lab-public-issuing-ca-1")
        tls("incomplete_chain", "incomplete_chain",
            "the server sends only the leaf; the intermediate is at the leaf's AIA URL",
            public_leaf("incomplete_chain", aia_ca_issuers_url=aia_url), send=0,
            aia_url=aia_url, aia_fetches=self.aia_fetches)
        tls("stale_trust_store", "stale_trust_store",
            "the chain ends at a new public root that only the reference store has",
            cas.new_issuing.issue_leaf([host_of("stale_trust_store")]))
        tls("untrusted_root", "untrusted_root",
            "a private company CA (leaf + intermediate + root sent) that neither store trusts",
            cas.private_issuing.issue_leaf([host_of("untrusted_root")]), send=2)
        tls("proxy_interception", "proxy_interception",
            "a TLS-inspecting proxy (Zscaler) re-signed the certificate; the client does not trust its CA",
            cas.zscaler_issuing.issue_leaf([host_of("proxy_interception")]))
        corp_store = pki.write_bundle(d / "client-store+corp-inspection.pem",
                                      [cas.public.cert, cas.legacy_sha1_root.cert, cas.corp_inspection.cert])
        tls("proxy_interception_expect_issuer", "proxy_interception",
            "a corporate inspection CA the client trusts signed it, but the expected issuer is the public CA",
            cas.corp_inspection_issuing.issue_leaf([host_of("proxy_interception_expect_issuer")]),
            ca_bundle=str(corp_store), expect_issuers=(PUBLIC_ISSUER,))
        tls("weak_crypto", "weak_crypto",
            "the server's certificate has an RSA-1024 key: the client's security level 2 refuses it (verify code 66)",
            public_leaf("weak_crypto", key_type="rsa1024"), server={"ciphers": "DEFAULT:@SECLEVEL=0"})
        tls("invalid_chain", "invalid_chain",
            "the server presents a client-only certificate (EKU clientAuth) from the trusted CA (verify code 26)",
            public_leaf("invalid_chain", client=True))
        tls("pin_mismatch", "pin_mismatch", "a healthy server; the client pins an unrelated key",
            public_leaf("pin_mismatch"), pins=(pki.spki_pin(pki.generate_key()),))

        # ---- warnings on healthy handshakes ------------------------------------------
        tls("warn_cert_expiring_soon", "ok", "a healthy chain whose leaf expires in 5 days",
            public_leaf("warn_cert_expiring_soon", not_before=now - timedelta(days=85),
                        not_after=now + timedelta(days=5)),
            warnings=("cert_expiring_soon",))
        zscaler_store = pki.write_bundle(d / "client-store+zscaler.pem",
                                         [cas.public.cert, cas.legacy_sha1_root.cert, cas.zscaler.cert])
        tls("warn_proxy_interception", "ok",
            "a Zscaler-inspected connection whose CA the client store trusts (handshake verifies)",
            cas.zscaler_issuing.issue_leaf([host_of("warn_proxy_interception")]),
            ca_bundle=str(zscaler_store), warnings=("proxy_interception",))
        tls("warn_tls12_only_policy", "ok", "a healthy server; the client policy caps at TLS 1.2",
            public_leaf("warn_tls12_only_policy"), tls_max="1.2", warnings=("tls12_only_policy",))
        tls("warn_weak_signature", "ok",
            "the server sends a SHA-1-signed legacy root (trust anchors' self-signatures are not checked)",
            cas.legacy_issuing.issue_leaf([host_of("warn_weak_signature")]), send=2,
            warnings=("weak_signature",))

        self._start_servers(jobs)

    def _backlogged_listener(self) -> socket.socket:
        """A listener that never accepts, with its accept queue already full.

        Linux queues ``backlog + 1`` completed connections for ``listen(0)``;
        once the queue is full it drops new SYNs (``tcp_abort_on_overflow`` 0),
        so a client's connect() retransmits its SYN until its own timeout.
        Fullness is read from TCP_INFO (for a listener, ``tcpi_unacked`` is the
        queue length and ``tcpi_sacked`` the backlog), not guessed from timing,
        so a loaded machine cannot leave the queue with room. Loopback only.
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        assert ipaddress.ip_address(listener.getsockname()[0]).is_loopback
        address = listener.getsockname()
        if not hasattr(socket, "TCP_INFO"):  # not Linux: fill until a connect stays pending
            self._raw_sockets.extend(_fill_by_timing(address))
            return listener
        for _ in range(8):
            if _accept_queue_is_full(listener):
                return listener
            self._raw_sockets.append(socket.create_connection(address, timeout=5))
            deadline = time.monotonic() + 1.0
            while not _accept_queue_is_full(listener) and time.monotonic() < deadline:
                time.sleep(0.001)  # the child socket is queued by the kernel's softirq
        if not _accept_queue_is_full(listener):
            raise RuntimeError("could not fill the accept queue of the tcp_timeout listener")
        return listener


def _fill_by_timing(address: tuple[str, int]) -> list[socket.socket]:
    fillers = []
    for _ in range(8):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(address)
        _, writable, _ = select.select([], [filler], [], 0.2)
        if writable and filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            fillers.append(filler)
            continue
        filler.close()  # its SYN was dropped: the queue is full
        break
    return fillers


def _accept_queue_is_full(listener: socket.socket) -> bool:
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    queued, backlog = struct.unpack_from("8B6I", info)[12:14]  # tcpi_unacked, tcpi_sacked
    return queued > backlog
