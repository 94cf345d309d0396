"""The one way this package builds an HTTP client: verified TLS from the target's policy.

* The SSL context is the :class:`~tasks.tls.policy.TLSPolicy`'s verifying context
  (CERT_REQUIRED, hostname checked). Nothing here can switch verification off,
  so credentials never travel over an unverified connection (contract §3).
* ``resolve`` (curl's ``--resolve``) changes only the address dialled: the URL,
  the Host header, the SNI and the certificate name check stay on the real host.
* An ``sni`` override changes only the name sent in the ClientHello; the chain is
  still verified and the leaf is still checked against the *real* host name
  before the connection is handed back (so before any byte of a request).
* Timeouts on connect, read, write and pool; ``retries=0`` — no transport retry,
  because httpcore's connect retries would silently retry a TLS handshake
  failure (style.md). Retries happen only in :mod:`tasks.checks.retry`.
* ``trust_env=False``: no ``.netrc`` credentials or ``SSL_CERT_FILE`` from the
  environment sneak into a health check. Proxies are chosen by the engine's one
  rule instead (:mod:`cxhealth.tasks.tls.proxy`: ``--proxy``/``proxy``, then
  ``HTTPS_PROXY``/``NO_PROXY`` as curl reads them) and tunnelled by the same
  CONNECT code as the probe (:func:`~cxhealth.tasks.tls.connection.exchange_connect`),
  per host, inside :class:`RoutingBackend` — so the diagnosis and the token
  request reach a host the same way, and httpx's own ``proxy=`` (one proxy per
  client, its own env rules) is not used.
"""

from __future__ import annotations

import asyncio
import ssl
import typing
from typing import Awaitable, Mapping

import httpcore

from cxhealth.tasks.tls.chain import names_cover
import httpx

from cxhealth.tasks.tls.connection import exchange_connect, failure_from_answer, unreachable
from cxhealth.tasks.tls.policy import TLSPolicy, build_verifying_context
from cxhealth.tasks.tls.proxy import NotHTTPAnswer, ProxyFailure, ProxySettings, authority

if typing.TYPE_CHECKING:  # pragma: no cover
    from cxhealth.tasks.targets import Target

USER_AGENT = "cxhealth/0.1"
# httpcore sets ALPN on the context it is given (connection.py); a context built
# for exactly that ALPN keeps the policy's other cached contexts untouched.
_HTTP1_ALPN = ("http/1.1",)


def tls_facts(response: httpx.Response) -> tuple[str | None, str | None]:
    """(protocol, cipher) of the connection that carried *response*, e.g. ("TLSv1.3", "TLS_AES_256_GCM_SHA384")."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None, None
    cipher = ssl_object.cipher()
    return ssl_object.version(), cipher[0] if cipher else None


def tls_connection(response: httpx.Response, *, proxied: bool) -> dict[str, typing.Any] | None:
    """What the history records of the verified connection that carried *response* (contract §4):
    the address dialled (None through a proxy: the proxy dials), and the chain the server sent
    (leaf first, §1 ``chain`` items, as the diagnosis reports it). None when nothing can be read."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    from cxhealth.tasks.tls import chain as ch
    from cxhealth.tasks.tls.probe import _chains

    unverified, verified = _chains(ssl_object)
    certs = ch.parse_der_chain(unverified or verified)
    address = None
    if not proxied:
        peer = stream.get_extra_info("server_addr")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else None
    return {"address": address, "chain": [ch.cert_info(c).to_dict() for c in certs]}


def hostname_matches(cert: Mapping[str, typing.Any], hostname: str) -> bool:
    """Does a verified peer cert (``getpeercert()`` form) cover *hostname*?

    The engine's rule (:func:`tasks.tls.chain.names_cover`). Used for SNI overrides,
    where OpenSSL checks the SNI name and we must check the real one.
    """
    sans = cert.get("subjectAltName", ())
    return names_cover([v for k, v in sans if k == "DNS"], [v for k, v in sans if k == "IP Address"], hostname)


class RealHostnameMismatch(httpcore.ConnectError):
    """With an SNI override, the verified certificate does not cover the URL's real host."""

    def __init__(self, host: str, sni: str) -> None:
        super().__init__(f"certificate verify failed: the certificate does not cover {host} (SNI override {sni})")
        self.host = host
        self.sni = sni


class ProxyTunnelError(httpcore.ConnectError):
    """The proxy did not open the tunnel (no answer, 407, 403, 502/503/504, ...).

    A connect error, so the request stops before any byte of it is sent and the
    check has the engine diagnose the host (which names the proxy cause). The
    message is the proxy's status line: no credential is ever in it.
    """

    def __init__(self, failure: ProxyFailure) -> None:
        super().__init__(f"proxy tunnel failed ({failure.kind}): {failure.message}")
        self.failure = failure


class _SNIOverrideStream(httpcore.AsyncNetworkStream):
    """A TCP stream whose TLS upgrade sends another SNI but checks the real host name."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, host: str, sni: str,
                 sni_context: ssl.SSLContext) -> None:
        self._inner = inner
        self._host = host
        self._sni = sni
        self._sni_context = sni_context

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        # The chain is verified by OpenSSL (CERT_REQUIRED); only its name check is
        # moved here, because OpenSSL would check the SNI name, not the real host.
        stream = await self._inner.start_tls(self._sni_context, self._sni, timeout)
        ssl_object = stream.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        if not cert or not hostname_matches(cert, self._host):
            await stream.aclose()
            raise RealHostnameMismatch(self._host, self._sni)
        return stream


class RoutingBackend(httpcore.AsyncNetworkBackend):
    """Dial ``resolve`` addresses instead of resolving host names; apply an SNI override.

    Everything above the TCP connect (Host header, SNI, certificate check) keeps
    using the URL's host, as curl's ``--resolve`` does.
    """

    def __init__(self, routes: Mapping[tuple[str, int], str] | None = None, *, sni: str | None = None,
                 sni_context: ssl.SSLContext | None = None,
                 inner: httpcore.AsyncNetworkBackend | None = None,
                 proxies: ProxySettings | None = None, env: Mapping[str, str] | None = None) -> None:
        self._routes = {(h.lower(), p): a for (h, p), a in (routes or {}).items()}
        self._sni = sni
        self._sni_context = sni_context
        self._inner = inner or httpcore.AnyIOBackend()
        self._proxies = proxies
        self._env = env
        self.dialled: list[tuple[str, int, str]] = []  # (host, port, address): what was really dialled

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        proxy = self._proxies.choose(host, port, self._env) if self._proxies is not None else None
        if proxy is not None:
            stream = await self._tunnel(proxy, host, port, timeout, local_address, socket_options)
        else:
            address = self._routes.get((host.lower(), port), host)
            self.dialled.append((host, port, address))
            stream = await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                   socket_options=socket_options)
        if self._sni and self._sni_context is not None:
            return _SNIOverrideStream(stream, host, self._sni, self._sni_context)
        return stream

    async def _tunnel(self, proxy: typing.Any, host: str, port: int, timeout: float | None,
                      local_address: str | None, socket_options: typing.Any) -> httpcore.AsyncNetworkStream:
        """TCP to the proxy, then CONNECT host:port (the target's name: the proxy resolves it, as curl)."""
        address = proxy.address or self._routes.get((proxy.host, proxy.port), proxy.host)
        self.dialled.append((host, port, f"proxy {proxy.host}:{proxy.port} ({address})"))
        stream = await self._inner.connect_tcp(address, proxy.port, timeout=timeout, local_address=local_address,
                                               socket_options=socket_options)

        async def send(data: bytes) -> None:
            await stream.write(data, timeout)

        async def recv(n: int) -> bytes:
            return await stream.read(n, timeout)

        failure: ProxyFailure | None = None
        try:
            answer = await exchange_connect(send, recv, host, port, proxy, self._env)
            if not answer.ok:
                failure = failure_from_answer(answer, proxy, host, port, self._env)
        except NotHTTPAnswer as exc:
            failure = unreachable(proxy, "NOT_HTTP", f"{proxy.host}:{proxy.port} is not an HTTP proxy ({exc})")
        except (EOFError, httpcore.ReadError, httpcore.WriteError, OSError):
            failure = unreachable(proxy, "CLOSED", f"the proxy closed the connection without answering CONNECT "
                                                  f"{authority(host, port)}")
        except httpcore.TimeoutException:
            failure = unreachable(proxy, "CONNECT_TIMEOUT", f"the proxy did not answer CONNECT "
                                                            f"{authority(host, port)} in time")
        if failure is not None:
            await stream.aclose()
            raise ProxyTunnelError(failure)
        return stream

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class VerifiedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool that uses :class:`RoutingBackend`.

    httpx 0.28 takes no ``network_backend``; the pool is rebuilt with the same
    settings plus the backend (``_pool`` is what ``handle_async_request`` uses).
    ``retries`` is fixed at 0.
    """

    def __init__(self, ssl_context: ssl.SSLContext, backend: RoutingBackend,
                 limits: httpx.Limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits, retries=0)
        self.backend = backend
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )


def total_deadline_s(timeout: float) -> float:
    """The TOTAL time one request may take (issue 14): httpx's timeouts bound each step
    (connect, each read...), so an answer trickling in a byte at a time would never end;
    three steps' worth — connect, TLS, the whole answer — is the most one request gets."""
    return 3 * float(timeout)


async def within_deadline(request: Awaitable[httpx.Response], seconds: float) -> httpx.Response:
    """Await one request (headers and body) for at most ``seconds`` in total; past it the
    request is cancelled (its connection closed) and :class:`httpx.ReadTimeout` raised."""
    try:
        return await asyncio.wait_for(request, seconds)
    except asyncio.TimeoutError:
        raise httpx.ReadTimeout(f"no complete answer within the total deadline of {seconds:g} s") from None


def client_timeout(seconds: float, read: float | None = None) -> httpx.Timeout:
    """Explicit connect/read/write/pool timeouts (an unset one would hang forever)."""
    return httpx.Timeout(connect=seconds, read=read if read is not None else seconds, write=seconds, pool=seconds)


def build_client(policy: TLSPolicy, *, resolve: Mapping[tuple[str, int], str] | None = None,
                 sni: str | None = None, timeout: httpx.Timeout | float | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 proxies: ProxySettings | None = None) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection uses *policy*'s verifying context.

    Args:
        policy: the client TLS policy (versions, ciphers, trust store, client cert).
        resolve: ``{(host, port): address}`` to dial instead of resolving *host*.
        sni: a name to send as SNI instead of each URL's host (still verified against the host).
        timeout: seconds (all four phases) or an ``httpx.Timeout``; default ``policy.timeout``.
        transport: only for pure HTTP-shape tests (``httpx.MockTransport``).
        proxies: how each host's proxy is chosen (None: direct, the environment is not read).

    Redirects are not followed (a token or secret is never carried to another URL).
    """
    if transport is None:
        sni_context = None
        if sni:
            # The chain is verified (CERT_REQUIRED); the name is checked against the real
            # host in _SNIOverrideStream, since OpenSSL would check the SNI name instead.
            sni_context = build_verifying_context(policy, alpn=_HTTP1_ALPN, check_hostname=False)
            assert sni_context.verify_mode == ssl.CERT_REQUIRED
        backend = RoutingBackend(resolve, sni=sni, sni_context=sni_context, proxies=proxies)
        transport = VerifiedTransport(policy.ssl_context(alpn=_HTTP1_ALPN), backend)
    if not isinstance(timeout, httpx.Timeout):
        timeout = client_timeout(float(timeout if timeout is not None else policy.timeout))
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False,
                             headers={"User-Agent": USER_AGENT, "Accept": "application/json"})


def client_for(target: "Target", *, timeout: httpx.Timeout | float | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """:func:`build_client` with the target's policy, ``resolve`` and ``sni``."""
    return build_client(target.policy(), resolve=target.resolve_map, sni=target.sni,
                        timeout=timeout, transport=transport, proxies=target.proxy_settings())
