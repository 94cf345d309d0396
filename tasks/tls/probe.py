"""The probe: the only module of the engine that does socket and ssl I/O.

One call is one attempt: resolve, TCP connect, TLS handshake, each timed and
each under its own timeout, and the certificate chain the server sent. Every
failure comes back as a value (:class:`ProbeResult` with ``error_kind`` and the
OpenSSL reason), never as an exception: :func:`evidence_from_exception` is the
one table that turns ``ssl``/``socket`` errors into evidence (as httpx's
``map_httpcore_exceptions`` does for its transport).

An explain-only probe (unverified context, see ``policy.explain_only_context``)
closes the connection right after the handshake: nothing is sent on it.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from .connection import open_socket
from .model import Endpoint

DER = 2  # _ssl.ENCODING_DER

# Kinds of failure, in the order a connection meets them.
DNS_FAILURE = "dns_failure"
TCP_REFUSED = "tcp_refused"
TCP_TIMEOUT = "tcp_timeout"
TCP_ERROR = "tcp_error"
HANDSHAKE_TIMEOUT = "handshake_timeout"
RESET = "reset"          # RST or close with no TLS alert
TLS_ALERT = "tls_error"  # an OpenSSL error with a reason (alerts, version, cipher, ...)
VERIFY = "verify_error"  # the handshake completed at the TLS level but the chain did not verify
POST_HANDSHAKE = "post_handshake_error"  # TLS 1.3: the server rejected our Finished (client cert)


@dataclass(frozen=True)
class ProbeResult:
    """What one attempt saw. ``ok`` means the handshake (and, on TLS 1.3, the
    server's acceptance of our Finished) succeeded."""

    label: str
    ok: bool
    settings: dict[str, Any]
    address: str | None = None
    dns_ms: float | None = None
    connect_ms: float | None = None
    handshake_ms: float | None = None
    protocol: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    chain_der: tuple[bytes, ...] = ()
    verified_chain_der: tuple[bytes, ...] = ()
    error_kind: str | None = None
    reason: str | None = None
    verify_code: int | None = None
    verify_message: str | None = None
    message: str | None = None
    post_handshake: str | None = None
    handshake_attempted: bool = False
    proxy: dict[str, Any] | None = None  # the proxy's evidence (URL, its answer to CONNECT), or None
    certificate_requested: bool | None = None  # None: not watched
    first_request: dict[str, Any] | None = None  # the one harmless request after a CertificateRequest

    def to_evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"probe": self.label, "ok": self.ok, "settings": self.settings}
        for key in ("address", "dns_ms", "connect_ms", "handshake_ms", "protocol", "cipher",
                    "alpn", "error_kind", "reason", "verify_code", "verify_message", "message",
                    "post_handshake", "proxy", "certificate_requested", "first_request"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.chain_der:
            out["chain_length"] = len(self.chain_der)
        return out


# --- the one table: exception -> (error_kind, reason) -------------------------

# OpenSSL reasons that mean "the peer closed/reset with no TLS alert".
_EOF_REASONS = {"UNEXPECTED_EOF_WHILE_READING", "EOF_OCCURRED_IN_VIOLATION_OF_PROTOCOL"}


def evidence_from_exception(exc: BaseException, phase: str) -> dict[str, Any]:
    """Map an exception raised during ``phase`` ("dns", "tcp", "tls", "post")
    to evidence fields. The only place that interprets ssl/socket errors."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, socket.timeout)):
        kind = {"dns": DNS_FAILURE, "tcp": TCP_TIMEOUT}.get(phase, HANDSHAKE_TIMEOUT)
        if phase == "post":
            kind = POST_HANDSHAKE
        return {"error_kind": kind, "message": f"no answer in time during {phase}"}
    if isinstance(exc, socket.gaierror):
        return {"error_kind": DNS_FAILURE, "reason": _gai_name(exc), "message": exc.strerror or str(exc)}
    if isinstance(exc, ssl.SSLCertVerificationError):
        return {"error_kind": VERIFY, "reason": "CERTIFICATE_VERIFY_FAILED",
                "verify_code": exc.verify_code, "verify_message": exc.verify_message,
                "message": _short(exc)}
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None)
        if isinstance(exc, ssl.SSLEOFError) or reason in _EOF_REASONS:
            kind = POST_HANDSHAKE if phase == "post" else RESET
            return {"error_kind": kind, "reason": reason or "EOF", "message": _short(exc)}
        kind = POST_HANDSHAKE if phase == "post" else TLS_ALERT
        return {"error_kind": kind, "reason": reason or type(exc).__name__, "message": _short(exc)}
    if isinstance(exc, ConnectionRefusedError):
        return {"error_kind": TCP_REFUSED, "reason": "ECONNREFUSED", "message": "connection refused"}
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                        asyncio.IncompleteReadError, EOFError)):
        kind = {"tcp": TCP_ERROR, "post": POST_HANDSHAKE}.get(phase, RESET)
        return {"error_kind": kind, "reason": type(exc).__name__, "message": _short(exc) or "connection closed"}
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, "OSError")
        if phase == "tcp" and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT):
            return {"error_kind": TCP_TIMEOUT, "reason": name, "message": exc.strerror or str(exc)}
        kind = {"tcp": TCP_ERROR, "post": POST_HANDSHAKE}.get(phase, RESET)
        return {"error_kind": kind, "reason": name, "message": exc.strerror or str(exc)}
    # Anything else is a bug in the engine, not a property of the endpoint.
    raise exc


def _gai_name(exc: socket.gaierror) -> str:
    for name in ("EAI_NONAME", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA", "EAI_SERVICE"):
        if getattr(socket, name, None) == exc.errno:
            return name
    return f"EAI_{exc.errno}"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _der_chain(items: Any) -> tuple[bytes, ...]:
    out = []
    for item in items or ():
        out.append(item if isinstance(item, (bytes, bytearray)) else item.public_bytes(DER))
    return tuple(bytes(x) for x in out)


def _chains(ssl_object: ssl.SSLObject) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    # get_unverified_chain() is public from 3.13; on 3.10-3.12 it lives on the
    # C-level object (platform-facts.md: the guide's getpeercert(True) is the leaf only).
    for obj in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        if obj is not None and hasattr(obj, "get_unverified_chain"):
            try:
                unverified = _der_chain(obj.get_unverified_chain())
                verified = _der_chain(obj.get_verified_chain()) if hasattr(obj, "get_verified_chain") else ()
                return unverified, verified
            except (ssl.SSLError, ValueError):  # pragma: no cover - defensive
                break
    leaf = ssl_object.getpeercert(binary_form=True)
    return ((leaf,) if leaf else ()), ()


# --- did the server ask for a client certificate? ----------------------------------
#
# Only a server that sent a CertificateRequest can reject a TLS 1.3 client after
# the handshake, so only then is the post-handshake wait worth its cost (the
# server's answer to our Finished can queue behind its other handshakes).
# CPython's SSLContext._msg_callback (undocumented, in CPython since 3.8, used by
# its own test suite) reports each handshake message; without it we always wait.
MSG_CALLBACK_SUPPORTED = hasattr(ssl.SSLContext, "_msg_callback")
_CERTIFICATE_REQUEST = 13  # HandshakeType.certificate_request (RFC 8446 §4)
_HANDSHAKE = 22            # ContentType.handshake
_CERT_REQUESTED: set[int] = set()


def note_certificate_request(conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any,
                             data: bytes) -> None:
    """The context's message callback: remember connections asked for a certificate."""
    if msg_type == _CERTIFICATE_REQUEST and content_type == _HANDSHAKE and direction == "read":
        _CERT_REQUESTED.add(id(conn))


note_certificate_request.user_function = note_certificate_request  # type: ignore[attr-defined]


def watch_certificate_requests(context: ssl.SSLContext) -> ssl.SSLContext:
    if not MSG_CALLBACK_SUPPORTED:
        return context
    try:
        # The C-level slot takes raw ints; ssl.py's property wraps the callback to turn
        # three fields into enums on every TLS message (~0.25 ms per handshake). The
        # property's getter reads ``user_function``, so it still reports our callback.
        import _ssl

        _ssl._SSLContext._msg_callback.__set__(context, note_certificate_request)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, TypeError):
        context._msg_callback = note_certificate_request  # type: ignore[attr-defined]
    return context


def _certificate_requested(context: ssl.SSLContext, ssl_object: ssl.SSLObject) -> bool:
    if getattr(context, "_msg_callback", None) is not note_certificate_request:
        return True  # not watched: assume it may have been (and wait)
    return id(ssl_object) in _CERT_REQUESTED


def _is_watched(context: ssl.SSLContext) -> bool:
    return getattr(context, "_msg_callback", None) is note_certificate_request


async def resolve(endpoint: Endpoint, timeout: float) -> tuple[str | None, float | None, dict[str, Any] | None]:
    """The address to connect to: ``endpoint.address`` or the first DNS answer."""
    if endpoint.address:
        return endpoint.address, None, None
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    host, port = endpoint.dial
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except BaseException as exc:  # noqa: BLE001 - mapped by the table
        if isinstance(exc, asyncio.CancelledError):
            raise
        return None, _ms(start), evidence_from_exception(exc, "dns")
    if not infos:
        return None, _ms(start), {"error_kind": DNS_FAILURE, "reason": "EAI_NODATA", "message": "no address"}
    return infos[0][4][0], _ms(start), None


async def probe(endpoint: Endpoint, context: ssl.SSLContext, *, label: str, timeout: float,
                settings: dict[str, Any], address: str | None = None,
                server_hostname: str | None | bool = True,
                check_post_handshake: bool = False, deadline: float | None = None,
                first_request: str | None = None) -> ProbeResult:
    """One connection attempt with ``context``.

    ``server_hostname``: True sends ``endpoint.server_hostname``; a string sends
    that; None/False sends no SNI. ``check_post_handshake`` waits briefly on
    TLS 1.3 for the server to accept our Finished (a session ticket) or reject
    it (certificate_required): TLS 1.3 servers that demand a client certificate
    complete the handshake and fail the first read (platform-facts.md).
    ``deadline`` (a ``time.perf_counter()`` value) caps every step, so a whole
    diagnosis keeps its time budget however its steps add up.
    ``first_request`` (the request target, e.g. "/"): when the server sent a
    CertificateRequest and the handshake completed, send one harmless
    ``GET`` (Host, User-Agent, nothing else: no credential, no cookie) and read
    the status line and the start of the body, to see whether the server refuses
    a client without (an acceptable) certificate after the handshake (nginx's
    ``400 No required SSL certificate was sent``). Only on a verifying context.
    """

    def step(limit: float = timeout) -> float:
        if deadline is None:
            return limit
        return max(0.01, min(limit, deadline - time.perf_counter()))

    dns_ms = None
    if address is None and endpoint.proxy is None:  # through a proxy, the proxy resolves the name
        address, dns_ms, err = await resolve(endpoint, timeout)
        if err is not None:
            return ProbeResult(label=label, ok=False, settings=settings, dns_ms=dns_ms, **err)
    sni = endpoint.server_hostname if server_hostname is True else (server_hostname or None)
    base = dict(label=label, settings=settings, address=address, dns_ms=dns_ms)
    opened = await open_socket(endpoint, address, timeout=step)
    if opened.sock is None:
        return ProbeResult(ok=False, proxy=opened.proxy, **base, **opened.fields)
    sock, connect_ms = opened.sock, opened.fields["connect_ms"]
    base["proxy"] = opened.proxy
    tls: TLSConnection | None = None
    try:
        start = time.perf_counter()
        try:
            tls = TLSConnection(sock, context, sni)
            await asyncio.wait_for(tls.handshake(), step())
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, asyncio.CancelledError):
                raise
            return ProbeResult(ok=False, connect_ms=connect_ms, handshake_ms=_ms(start),
                               handshake_attempted=True, **base, **evidence_from_exception(exc, "tls"))
        handshake_ms = _ms(start)
        ssl_object = tls.obj
        chain, verified = _chains(ssl_object)
        cipher = ssl_object.cipher() or (None, None, None)
        # version() is None once the connection has failed, which a TLS 1.3 server
        # that rejects us after the handshake can do before we get here; the
        # negotiated cipher tuple still names the version.
        facts = dict(connect_ms=connect_ms, handshake_ms=handshake_ms,
                     protocol=ssl_object.version() or cipher[1], cipher=cipher[0],
                     alpn=ssl_object.selected_alpn_protocol(), chain_der=chain,
                     verified_chain_der=verified, handshake_attempted=True)
        post = None
        requested = _certificate_requested(context, ssl_object) if _is_watched(context) else None
        facts["certificate_requested"] = requested
        if check_post_handshake and facts["protocol"] == "TLSv1.3":
            if _certificate_requested(context, ssl_object):
                post, err = await _await_server_acceptance(tls, step(min(timeout, 1.0)))
                if err is not None:
                    return ProbeResult(ok=False, post_handshake=post, **base, **facts, **err)
            else:
                post = "no_certificate_request"
        if first_request is not None and requested and context.verify_mode == ssl.CERT_REQUIRED:
            facts["first_request"] = await _first_request(tls, endpoint, first_request, step(min(timeout, 2.0)))
        return ProbeResult(ok=True, post_handshake=post, **base, **facts)
    finally:
        if tls is not None:
            _CERT_REQUESTED.discard(id(tls.obj))
        sock.close()  # nothing is sent after the handshake (unread input: the kernel answers RST)


# --- TLS over the probe's socket --------------------------------------------------

_READ_SIZE = 65536


class TLSConnection:
    """The client side of TLS over a connected non-blocking socket, through memory BIOs.

    Not asyncio's SSL transport: a diagnosis needs the handshake, the chain and at
    most one small exchange, and the transport costs what it is built for (a 256 KiB
    read buffer zeroed per connection, ~0.3 ms of CPU and 256 KiB of memory each:
    2,000 concurrent diagnoses held 680 MB). Errors are asyncio's, so the evidence
    is the same: an SSL error or a socket error as raised, and an EOF during the
    handshake is ``ConnectionResetError``. After the handshake the stream reads as a
    :class:`asyncio.StreamReader` does: a TLS alert or a reset is the stream's
    exception, raised by every read; a close_notify or a FIN is its end.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_side=False, server_hostname=server_hostname or None)
        self.plain = bytearray()  # application data decrypted, not yet read
        self.eof = False          # close_notify or TCP FIN
        self.error: BaseException | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports
        except OSError:
            pass

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self._loop.sock_sendall(self.sock, data)

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                chunk = await self._loop.sock_recv(self.sock, _READ_SIZE)
                if not chunk:
                    raise ConnectionResetError  # what asyncio's transport raises for EOF mid-handshake
                self._in.write(chunk)
            # Any other error propagates; the socket is closed without the alert, as asyncio's transport does.
        await self._flush()  # our Finished (TLS 1.3)

    def _decrypt(self) -> None:
        """Run what has arrived through TLS: data to ``plain``, tickets to the session, an alert to ``error``."""
        while self.error is None:
            try:
                data = self.obj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                self.eof = True
                return
            except ssl.SSLError as exc:
                self.error = exc
                return
            if not data:  # close_notify
                self.eof = True
                return
            self.plain += data

    async def _receive(self, timeout: float | None) -> None:
        """One read from the socket into the TLS layer (at most ``timeout`` seconds; a timeout is no error)."""
        if self.eof or self.error is not None:
            return
        try:
            if timeout is None:
                chunk = await self._loop.sock_recv(self.sock, _READ_SIZE)
            else:
                chunk = await asyncio.wait_for(self._loop.sock_recv(self.sock, _READ_SIZE), max(timeout, 0.0))
        except (asyncio.TimeoutError, TimeoutError):
            return
        except OSError as exc:
            self.error = exc
            return
        if chunk:
            self._in.write(chunk)
        else:
            self.eof = True
        self._decrypt()

    def poll(self) -> None:
        self._decrypt()

    async def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for more from the server (after its end: just the time)."""
        if self.eof or self.error is not None:
            await asyncio.sleep(timeout)
            return
        await self._receive(timeout)

    async def write(self, data: bytes) -> None:
        if self.error is not None or self.eof:
            raise ConnectionResetError("Connection lost")
        self.obj.write(data)
        await self._flush()

    async def read(self, n: int) -> bytes:
        while True:
            self._decrypt()
            if self.error is not None:
                raise self.error
            if self.plain:
                out = bytes(self.plain[:n])
                del self.plain[:n]
                return out
            if self.eof:
                return b""
            await self._receive(None)


FIRST_REQUEST_MAX_BYTES = 4096


async def _first_request(tls: TLSConnection, endpoint: Endpoint, target: str, wait: float) -> dict[str, Any]:
    """One harmless request over the verified connection; its status line, or how it failed."""
    host = endpoint.host if ":" not in endpoint.host else f"[{endpoint.host}]"
    if endpoint.port != 443:
        host = f"{host}:{endpoint.port}"
    path = target if target.startswith("/") else "/"
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cxhealth-diagnose\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii", "replace")
    out: dict[str, Any] = {"request": f"GET {path[:200]}"}
    start = time.perf_counter()

    async def exchange() -> bytes:
        await tls.write(request)
        data = b""
        while len(data) < FIRST_REQUEST_MAX_BYTES:
            chunk = await tls.read(FIRST_REQUEST_MAX_BYTES - len(data))
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and (len(body) >= 512 or b"</html>" in body.lower()):
                break
        return data

    try:
        data = await asyncio.wait_for(exchange(), wait)
    except BaseException as exc:  # noqa: BLE001 - mapped by the table
        if isinstance(exc, asyncio.CancelledError):
            raise
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            out.update(status=None, ms=_ms(start), error={"error_kind": "timeout", "message": f"no answer within {wait:g} s"},
                       answered=False)
            return out
        out.update(status=None, ms=_ms(start), error=evidence_from_exception(exc, "post"))
        return out
    out["ms"] = _ms(start)
    if not data:
        out.update(status=None, error={"error_kind": POST_HANDSHAKE, "reason": "EOF",
                                       "message": "the server closed the connection without answering"})
        return out
    head, _, body = data.partition(b"\r\n\r\n")
    out["status"] = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")[:200]
    out["body_start"] = body[:1024].decode("utf-8", "replace")
    return out


async def _await_server_acceptance(tls: TLSConnection, wait: float) -> tuple[str, dict[str, Any] | None]:
    """On TLS 1.3 the server answers our Finished with session tickets when it
    accepts us, or with an alert (certificate_required) when it does not. We
    wait for either, without sending a byte. Servers that issue no tickets cost
    ``wait`` seconds and are taken as accepting."""
    deadline = time.perf_counter() + wait
    tls.poll()
    while True:
        if tls.error is not None:
            return "rejected", evidence_from_exception(tls.error, "post")
        session = tls.obj.session
        if session is not None and session.has_ticket:
            return "session_ticket", None
        if tls.eof and not tls.plain:
            return "closed", {"error_kind": POST_HANDSHAKE, "reason": "EOF",
                              "message": "the server closed the connection right after the handshake"}
        left = deadline - time.perf_counter()
        if left <= 0:
            return f"no_answer_within_{int(wait * 1000)}ms", None
        await tls.wait(left)


# --- AIA caIssuers fetch (plain HTTP, as CAs publish them) --------------------

AIA_MAX_BYTES = 64 * 1024


async def fetch_aia(url: str, timeout: float, max_bytes: int = AIA_MAX_BYTES,
                    proxy: Any = None) -> tuple[bytes | None, dict[str, Any]]:
    """GET one caIssuers URL, over httpx (imported here: only a chain with a missing
    issuer needs it, and ``cxhealth diagnose``'s healthy path stays light).

    Bounded: ``http://`` only (CAs publish issuers over plain HTTP; the content is a
    certificate, checked by signature, never trusted), at most 3 redirects,
    ``timeout`` for the whole exchange (connect to last byte), at most ``max_bytes``.
    The body is read to its end, however the server splits it into segments; the
    caller parses DER, PEM or PKCS#7 (.p7c). Never raises: the record says what
    happened. With ``proxy`` (the endpoint's), the GET goes through that HTTP
    proxy (absolute URL, Basic auth), as a client behind an egress proxy does."""
    from urllib.parse import urlsplit

    record: dict[str, Any] = {"url": url if len(url) <= 500 else url[:499] + "…"}
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        record["error"] = "only http:// caIssuers URLs are fetched"
        return None, record
    start = time.perf_counter()
    try:
        import httpx

        via = None
        if proxy is not None:
            from .proxy import proxy_authorization

            record["proxy"] = proxy.url
            auth = proxy_authorization(proxy).strip()
            host = f"[{proxy.address or proxy.host}]" if ":" in (proxy.address or proxy.host) else (proxy.address or proxy.host)
            via = httpx.Proxy(f"http://{host}:{proxy.port}",
                              headers={"Proxy-Authorization": auth.split(": ", 1)[1]} if auth else None)

        async def exchange() -> bytes | None:
            limits = httpx.Timeout(timeout)
            async with httpx.AsyncClient(trust_env=False, follow_redirects=True, max_redirects=3,
                                         timeout=limits, proxy=via) as client:
                async with client.stream("GET", url, headers={"User-Agent": "cxhealth-aia", "Accept": "*/*"}) as resp:
                    record["status"] = f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}".strip()
                    if resp.status_code != 200:
                        record["error"] = "non-200 answer"
                        return None
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        record["error"] = f"answer larger than {max_bytes // 1024} KiB ({declared} bytes declared)"
                        return None
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            record["error"] = f"answer larger than {max_bytes // 1024} KiB"
                            return None
                    record["content_type"] = resp.headers.get("content-type", "")[:100]
                    return bytes(body)

        body = await asyncio.wait_for(exchange(), timeout)
    except BaseException as exc:  # noqa: BLE001 - every failure is a record, not an exception
        if isinstance(exc, asyncio.CancelledError):
            raise
        record.update(error=type(exc).__name__ + (f": {str(exc)[:120]}" if str(exc) else ""), ms=_ms(start))
        return None, record
    record["ms"] = _ms(start)
    if body is not None:
        record["bytes"] = len(body)
    return body, record
