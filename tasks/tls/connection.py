"""Opening the TCP connection a TLS handshake runs on: direct, or through a CONNECT tunnel.

The one place both the probe (asyncio sockets) and the httpx client (httpcore
streams, :mod:`cxhealth.tasks.checks.http`) open their connections, so a
target is reached the same way by the diagnosis and by the token request:

* :func:`exchange_connect` — the CONNECT request and the proxy's answer, over
  any ``send``/``recv`` pair (the two drivers below and httpcore's stream);
* :func:`open_socket` — the probe's driver: resolve, connect, tunnel, each
  step under its own timeout, every failure returned as evidence fields.

Through a proxy the target's name is sent in CONNECT and the proxy resolves
it (as curl does: ``--resolve`` entries for the target do not apply; one for
the proxy's own name does). The TLS handshake that follows is the same as on
a direct connection: same SNI, same verification, same timeouts.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from .proxy import (MAX_ANSWER_HEAD, MAX_BODY_PEEK, PROXY_UNREACHABLE, NotHTTPAnswer, Proxy, ProxyAnswer,
                    ProxyFailure, authority, body_first_line, connect_request, head_complete, kind_of_answer,
                    parse_answer_head, proxy_authorization)

Send = Callable[[bytes], Awaitable[None]]
Recv = Callable[[int], Awaitable[bytes]]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


async def exchange_connect(send: Send, recv: Recv, host: str, port: int, proxy: Proxy,
                           env: Mapping[str, str] | None = None) -> ProxyAnswer:
    """Send CONNECT host:port and read the answer head (and, for a refusal, the body's first line).

    Raises:
        NotHTTPAnswer: the peer does not talk HTTP.
        EOFError: the proxy closed the connection before a full answer.
    """
    await send(connect_request(host, port, proxy, env))
    buffer = b""
    while True:
        end = head_complete(buffer)
        if end >= 0:
            break
        if len(buffer) > MAX_ANSWER_HEAD:
            raise NotHTTPAnswer("an answer head over 16 KiB")
        chunk = await recv(4096)
        if not chunk:
            if buffer:
                parse_answer_head(buffer)  # not HTTP at all -> NotHTTPAnswer
            raise EOFError("the proxy closed the connection without answering CONNECT")
        buffer += chunk
        if len(buffer) >= 5 and not buffer.startswith(b"HTTP/"):
            raise NotHTTPAnswer(repr(buffer[:16]))
    answer = parse_answer_head(buffer[:end])
    if answer.ok:
        return answer
    body = buffer[end:]
    want = answer.content_length
    limit = min(want if want is not None else MAX_BODY_PEEK, MAX_BODY_PEEK)
    try:
        while len(body) < limit:
            chunk = await asyncio.wait_for(recv(4096), 0.5)
            if not chunk:
                break
            body += chunk
    except (asyncio.TimeoutError, TimeoutError, OSError, EOFError):
        pass  # the first line is evidence, not a requirement
    except Exception as exc:  # noqa: BLE001 - a transport's own read error (httpcore.ReadError, ...)
        if "Error" not in type(exc).__name__ and "Timeout" not in type(exc).__name__:
            raise
    first = body_first_line(body[:MAX_BODY_PEEK], answer.header("Content-Type")) if body else None
    return ProxyAnswer(answer.status, answer.status_line, answer.headers, first)


def failure_from_answer(answer: ProxyAnswer, proxy: Proxy, host: str, port: int,
                        env: Mapping[str, str] | None = None) -> ProxyFailure:
    kind = kind_of_answer(answer)
    evidence = {**proxy.describe(), **answer.describe(), "connect_target": authority(host, port)}
    if kind == "proxy_auth_required":
        evidence["credentials_sent"] = bool(proxy_authorization(proxy, env))
    return ProxyFailure(kind=kind, reason=f"HTTP_{answer.status}", message=answer.status_line, evidence=evidence)


def unreachable(proxy: Proxy, reason: str, message: str, **extra: Any) -> ProxyFailure:
    return ProxyFailure(kind=PROXY_UNREACHABLE, reason=reason, message=message,
                        evidence={**proxy.describe(), **extra})


@dataclass
class Opened:
    """The probe's connection: a connected socket (tunnelled or direct), or why there is none.

    ``fields`` go straight into the probe's result: ``connect_ms``, ``address``
    and, on failure, ``error_kind``/``reason``/``message``; ``proxy`` is the
    proxy evidence (its URL, its answer) or None on a direct connection.
    """

    sock: socket.socket | None
    fields: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] | None = None
    failure: ProxyFailure | None = None


async def _resolve_name(host: str, port: int, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    if not infos:
        raise socket.gaierror(socket.EAI_NODATA, "no address")
    return str(infos[0][4][0])


async def _connect_socket(address: str, port: int, timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (address, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_tunnel_socket(proxy: Proxy, host: str, port: int, *, timeout: Callable[[], float],
                             env: Mapping[str, str] | None = None) -> Opened:
    """TCP to the proxy, then CONNECT host:port; each step under ``timeout()`` seconds."""
    from .probe import evidence_from_exception  # the one table for socket errors

    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    address = proxy.address
    where = f"{proxy.host}:{proxy.port}"
    try:
        if address is None:
            address = await _resolve_name(proxy.host, proxy.port, timeout())
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, asyncio.CancelledError):
            raise
        ev = evidence_from_exception(exc, "dns")
        fail = unreachable(proxy, ev.get("reason") or "EAI_NONAME",
                           f"the proxy's name {proxy.host} does not resolve ({ev.get('reason') or ev.get('message')})",
                           step="dns")
        return Opened(None, {"connect_ms": _ms(start), **fail.to_fields()}, fail.evidence, fail)
    try:
        sock = await _connect_socket(address, proxy.port, timeout())
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, asyncio.CancelledError):
            raise
        ev = evidence_from_exception(exc, "tcp")
        what = {"tcp_refused": "refused the connection", "tcp_timeout": "did not accept the connection in time"}
        fail = unreachable(proxy, ev.get("reason") or ev.get("error_kind") or "tcp",
                           f"the proxy {where} ({address}) {what.get(ev.get('error_kind', ''), 'could not be reached')}"
                           + (f": {ev['message']}" if ev.get("message") and ev.get("error_kind") != "tcp_refused" else ""),
                           step="tcp", address=address)
        return Opened(None, {"connect_ms": _ms(start), **fail.to_fields()}, fail.evidence, fail)
    proxy_connect_ms = _ms(start)
    tunnel_start = time.perf_counter()

    async def send(data: bytes) -> None:
        await loop.sock_sendall(sock, data)

    async def recv(n: int) -> bytes:
        return await loop.sock_recv(sock, n)

    limit = timeout()
    try:
        answer = await asyncio.wait_for(exchange_connect(send, recv, host, port, proxy, env), limit)
    except BaseException as exc:  # noqa: BLE001
        sock.close()
        if isinstance(exc, asyncio.CancelledError):
            raise
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            fail = unreachable(proxy, "CONNECT_TIMEOUT",
                               f"the proxy {where} accepted the connection but did not answer CONNECT "
                               f"{authority(host, port)} within {limit:g} s", step="connect", address=address,
                               connect_target=authority(host, port))
        elif isinstance(exc, NotHTTPAnswer):
            fail = unreachable(proxy, "NOT_HTTP",
                               f"{where} answered CONNECT with something that is not HTTP ({exc}): it is not an "
                               "HTTP proxy (wrong port, or a TLS/SOCKS port)", step="connect", address=address,
                               connect_target=authority(host, port))
        elif isinstance(exc, (EOFError, OSError)):
            fail = unreachable(proxy, "CLOSED",
                               f"the proxy {where} closed the connection without answering CONNECT "
                               f"{authority(host, port)}", step="connect", address=address,
                               connect_target=authority(host, port))
        else:
            raise
        return Opened(None, {"connect_ms": _ms(start), **fail.to_fields()}, fail.evidence, fail)
    evidence = {**proxy.describe(), "address": address, "connect_target": authority(host, port),
                "proxy_connect_ms": proxy_connect_ms, "tunnel_ms": _ms(tunnel_start),
                "status_line": answer.status_line}
    if not answer.ok:
        sock.close()
        fail = failure_from_answer(answer, proxy, host, port, env)
        fail.evidence.update(address=address, proxy_connect_ms=proxy_connect_ms, tunnel_ms=evidence["tunnel_ms"])
        return Opened(None, {"connect_ms": _ms(start), **fail.to_fields()}, fail.evidence, fail)
    return Opened(sock, {"connect_ms": _ms(start)}, evidence)


async def open_socket(endpoint: Any, address: str | None, *, timeout: Callable[[], float],
                      env: Mapping[str, str] | None = None) -> Opened:
    """The probe's connection to ``endpoint``: through its proxy, or direct to ``address``."""
    from .probe import evidence_from_exception

    host, port = endpoint.dial
    if endpoint.proxy is not None:
        return await open_tunnel_socket(endpoint.proxy, host, port, timeout=timeout, env=env)
    assert address is not None
    start = time.perf_counter()
    try:
        sock = await _connect_socket(address, port, timeout())
    except BaseException as exc:  # noqa: BLE001 - mapped by the table
        if isinstance(exc, asyncio.CancelledError):
            raise
        return Opened(None, {"connect_ms": _ms(start), **evidence_from_exception(exc, "tcp")})
    return Opened(sock, {"connect_ms": _ms(start)})
