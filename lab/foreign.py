"""Chains and servers that look like the world's, not like ours (issue 11).

Every certificate is made at run time with ``cryptography`` (and a few DER edits
for what its builder refuses: MD5 signatures, empty or malformed extensions).
Each :class:`Case` says what ``cxhealth diagnose`` must conclude — the cause,
``evidence.also``, the warnings, evidence fields — and carries the server's
settings as a :class:`ServerSpec` that *two* TLS stacks serve: Python's ``ssl``
(:class:`PythonStack`, here) and nginx (:class:`lab.nginx.NginxStack`), because
Python's ssl server is not how the world's servers behave.

    with ForeignLab() as lab:
        ports = lab.serve_python()           # {case name: port}
        with NginxStack(lab.cases) as nginx:  # the same cases, served by nginx
            ...

The AIA server (caIssuers URLs baked into the leaves) runs before any
certificate is made; it can answer DER, PEM or PKCS#7 (.p7c), and sends the
headers and the body in separate TCP segments, as some CAs' servers do.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import threading
import warnings
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, ExtensionOID, NameOID

from . import pki
from .tls_lab import LOOPBACK, _http_response, _lingering_close, _read_http_request, _ServerTLS

DOMAIN = "cxforeign.test"
ROOT_NAME = "Foreign Test Root R1"

# RFC 2409 §6.2, the 1024-bit MODP group ("Oakley group 2"): a public constant, so a
# DHE-1024 server needs no minute-long parameter generation.
_MODP_1024 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)


@dataclass(frozen=True)
class ServerSpec:
    """How a case's server is configured, in terms both stacks understand.

    ``ciphers`` is an OpenSSL cipher string for TLS <= 1.2 (``@SECLEVEL=0`` lets a
    server load the weak keys and digests some cases are about); ``verify_client``
    is nginx's ``ssl_verify_client`` (``"on"``: nginx completes the handshake and
    refuses the request with 400; the Python stack does the same, on purpose).
    """

    chain: Path
    key: Path
    tls_min: str = "1.2"
    tls_max: str = "1.3"
    ciphers: str | None = None
    dhparam: Path | None = None
    client_ca: Path | None = None
    verify_client: str | None = None
    # Only these SNI names are served; any other (or none) gets the unrecognized_name alert
    # (nginx: a default server with ssl_reject_handshake on). None: every name is served.
    served_names: tuple[str, ...] | None = None
    tls13_suites: str | None = None  # nginx's ssl_conf_command Ciphersuites (Python's ssl cannot set them)


@dataclass(frozen=True)
class Case:
    """One foreign-looking endpoint and what a diagnosis of it must conclude."""

    name: str
    cause: str
    description: str
    host: str
    server: ServerSpec
    ca_bundle: str
    reference_ca_bundle: str
    also: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    client_cert: str | None = None
    client_key: str | None = None
    no_aia: bool = False
    stacks: tuple[str, ...] = ("python", "nginx")


# --------------------------------------------------------------------------
# Certificates the builder will not make

_MD5_RSA = bytes.fromhex("300d06092a864886f70d0101040500")


def resign(cert: x509.Certificate, key: Any, *, algorithm_der: bytes | None = None,
           tbs_edit: Any = None, hash_algorithm: hashes.HashAlgorithm | None = None) -> x509.Certificate:
    """Re-sign ``cert`` with ``key`` after editing its TBS: swap the signature algorithm
    (MD5, which cryptography refuses to sign with) or apply ``tbs_edit(bytes) -> bytes``."""
    der = cert.public_bytes(serialization.Encoding.DER)
    body, _ = pki._der_read(der, 0)
    tbs_start, tbs_end = pki._der_read(der, body)
    alg_start, alg_end = pki._der_read(der, tbs_end)
    old_alg = der[tbs_end:alg_end]
    tbs = der[tbs_start:tbs_end]
    new_alg = algorithm_der or old_alg
    if algorithm_der is not None:
        tbs = tbs.replace(old_alg, new_alg, 1)
    if tbs_edit is not None:
        tbs = tbs_edit(tbs)
    tbs_der = pki._der(0x30, tbs)
    algo = hash_algorithm or hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs_der, padding.PKCS1v15(), algo)
    else:
        from cryptography.hazmat.primitives.asymmetric import ec

        signature = key.sign(tbs_der, ec.ECDSA(algo))
    return x509.load_der_x509_certificate(pki._der(0x30, tbs_der + new_alg + pki._der(0x03, b"\x00" + signature)))


def _raw_extension(oid: x509.ObjectIdentifier, value_der: bytes, critical: bool) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(oid, value_der)  # criticality is given to add_extension


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any, *, days: int = 90,
             not_before: Any = None, not_after: Any = None) -> x509.CertificateBuilder:
    start = not_before or (pki.utcnow() - timedelta(hours=1))
    end = not_after or (start + timedelta(days=days))
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _cn(name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _aki(issuer: pki.CA) -> x509.AuthorityKeyIdentifier:
    # From the key, not the issuer's parsed extensions: some issuers here carry extensions
    # cryptography cannot parse (that is what their cases are about).
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())


def _sign(builder: x509.CertificateBuilder, key: Any) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


_LEAF_KU = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)
_CA_ONLY_KU = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                            encipher_only=False, decipher_only=False)


def _aia_extension(url: str) -> x509.AuthorityInformationAccess:
    """caIssuers: where the certificate's issuer is published."""
    return x509.AuthorityInformationAccess(
        [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))])


def make_ca(issuer: pki.CA, common_name: str, *, key_type: str = "ec", path_length: int | None = 0,
            extra: Sequence[tuple[x509.ExtensionType, bool]] = (), organization: str = "Foreign Trust",
            not_before: Any = None, not_after: Any = None, subject: x509.Name | None = None,
            aia_url: str | None = None) -> pki.CA:
    key = pki.generate_key(key_type)
    b = (_builder(subject or _cn(common_name, organization), issuer.cert.subject, key.public_key(), days=1825,
                  not_before=not_before, not_after=not_after)
         .add_extension(_aki(issuer), critical=False)
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
         .add_extension(pki._ca_key_usage(), critical=True))
    if aia_url:
        b = b.add_extension(_aia_extension(aia_url), critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    return pki.CA(cert=_sign(b, issuer.key), key=key, parents=issuer.chain)


def make_leaf(issuer: pki.CA, names: Sequence[str], *, key_type: str = "ec", common_name: str | None = None,
              eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
              san: bool = True, aia_url: str | None = None,
              extra: Sequence[tuple[x509.ExtensionType, bool]] = (), not_before: Any = None,
              not_after: Any = None, key: Any = None) -> pki.IssuedCert:
    key = key or pki.generate_key(key_type)
    subject = _cn(common_name or (names[0] if names else "unnamed"))
    b = (_builder(subject, issuer.cert.subject, key.public_key(), not_before=not_before, not_after=not_after)
         .add_extension(_aki(issuer), critical=False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(_LEAF_KU, critical=True))
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if san and names:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    if aia_url:
        b = b.add_extension(_aia_extension(aia_url), critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    return pki.IssuedCert(cert=_sign(b, issuer.key), key=key, issuers=issuer.chain)


def _root(common_name: str, organization: str | None = None, *, key_type: str = "ec",
          subject: x509.Name | None = None, not_before: Any = None, not_after: Any = None) -> pki.CA:
    if subject is None and not_before is None and not_after is None:
        return pki.CA.create_root(common_name, organization=organization, key_type=key_type)
    key = pki.generate_key(key_type)
    name = subject or _cn(common_name, organization)
    b = (_builder(name, name, key.public_key(), days=3650, not_before=not_before, not_after=not_after)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(pki._ca_key_usage(), critical=True))
    return pki.CA(cert=_sign(b, key), key=key)


# --------------------------------------------------------------------------
# The AIA server


class _AIAServer:
    """caIssuers over plain HTTP: ``/<name>`` answers the registered bytes; headers and body
    go out in two writes with a pause between, so they arrive in separate TCP segments."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.files: dict[str, tuple[bytes, str]] = {}
        self.fetches: dict[str, int] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.server: asyncio.AbstractServer | None = None

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/{path}"

    def publish(self, path: str, data: bytes, content_type: str) -> str:
        self.files["/" + path] = (data, content_type)
        return self.url(path)

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await asyncio.wait_for(_read_http_request(lambda: reader.read(65536)), 10)
                parts = request.split(b" ", 2)
                path = parts[1].decode("ascii", "replace") if len(parts) > 1 else ""
                self.fetches[path] = self.fetches.get(path, 0) + 1
                found = self.files.get(path)
                if found is None:
                    writer.write(_http_response("404 Not Found", b"not found\n"))
                else:
                    data, ctype = found
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                                 "Connection: close\r\n\r\n".encode("ascii"))
                    await writer.drain()
                    await asyncio.sleep(0.05)  # the body in a later segment: a single read() sees headers only
                    writer.write(data[: len(data) // 2])
                    await writer.drain()
                    await asyncio.sleep(0.02)
                    writer.write(data[len(data) // 2:])
                await writer.drain()
                await _lingering_close(reader, writer)
            except (OSError, asyncio.TimeoutError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, sock=self.sock)


# --------------------------------------------------------------------------
# The lab


class ForeignLab:
    """Build the foreign cases (in a temp dir) and serve them with Python's ssl."""

    def __init__(self) -> None:
        self.cases: list[Case] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.python_ports: dict[str, int] = {}
        self.aia: _AIAServer | None = None

    def __enter__(self) -> "ForeignLab":
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="cxforeign-")
            self.directory = Path(self._tmp.name)
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="cxforeign-loop", daemon=True)
            self._thread.start()
            self.aia = _AIAServer(self._loop)
            self._run(self.aia.start())
            self.cases = build_cases(self.directory, self.aia)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def case(self, name: str) -> Case:
        return next(c for c in self.cases if c.name == name)

    def _run(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            async def shutdown() -> None:
                servers = list(self._servers) + ([self.aia.server] if self.aia and self.aia.server else [])
                for s in servers:
                    s.close()
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
        if loop is not None and not loop.is_running():
            loop.close()
        self._loop = self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- the Python ssl stack --------------------------------------------------

    def serve_python(self) -> dict[str, int]:
        """Serve every case meant for Python's ssl on 127.0.0.1; {name: port}."""
        if self.python_ports:
            return self.python_ports
        jobs = []
        for case in self.cases:
            if "python" not in case.stacks:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sock.listen(64)
            jobs.append((sock, python_context(case.server), case))
            self.python_ports[case.name] = sock.getsockname()[1]

        async def start_all() -> None:
            for sock, ctx, case in jobs:
                self._servers.append(await asyncio.start_server(self._handler(ctx, case), sock=sock))

        self._run(start_all())
        return self.python_ports

    def _handler(self, ctx: ssl.SSLContext, case: Case) -> Any:
        demand = case.server.verify_client == "on"

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            tls = _ServerTLS(reader, writer, ctx)
            try:
                await asyncio.wait_for(tls.handshake(), 30)
                request = await asyncio.wait_for(_read_http_request(tls.read), 30)
                if request.split(b" ", 1)[0].isalpha():
                    if demand and tls.obj.getpeercert(binary_form=True) is None:
                        # What nginx does with ssl_verify_client on: the handshake completed, the request is refused.
                        body = (b"<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n"
                                b"<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL "
                                b"certificate was sent</center>\r\n</body>\r\n</html>\r\n")
                        await tls.write(_http_response("400 Bad Request", body, "text/html"))
                    else:
                        await tls.write(_http_response("200 OK", f"cxforeign {case.name}: ok\n".encode()))
                await tls.close_notify()
                await _lingering_close(reader, writer)
            except (ssl.SSLError, OSError, asyncio.TimeoutError, EOFError):
                await _lingering_close(reader, writer)
            finally:
                writer.close()
                if task is not None:
                    self._tasks.discard(task)

        return handle


def python_context(spec: ServerSpec) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
    ctx.minimum_version = versions[spec.tls_min]
    ctx.maximum_version = versions[spec.tls_max]
    ctx.set_ciphers(spec.ciphers or "DEFAULT:@SECLEVEL=0")  # before the chain: weak keys must load
    if spec.dhparam is not None:
        ctx.load_dh_params(str(spec.dhparam))
    ctx.load_cert_chain(str(spec.chain), str(spec.key))
    if spec.verify_client is not None and spec.client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL  # "on" is enforced after the handshake, as nginx does
        ctx.load_verify_locations(cafile=str(spec.client_ca))
    if spec.served_names is not None:
        served = {n.lower() for n in spec.served_names}

        def only_served(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
            return None if name is not None and name.lower() in served else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        ctx.sni_callback = only_served  # type: ignore[assignment]
    return ctx


# --------------------------------------------------------------------------
# The cases


def _write(directory: Path, name: str, leaf_cert: x509.Certificate, key: Any,
           sent: Sequence[x509.Certificate]) -> tuple[Path, Path]:
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    chain = folder / "chain.pem"
    chain.write_bytes(pki.to_pem(leaf_cert, *sent))
    key_path = folder / "key.pem"
    key_path.write_bytes(pki.key_to_pem(key))
    key_path.chmod(0o600)
    return chain, key_path


def build_cases(d: Path, aia: _AIAServer) -> list[Case]:
    now = pki.utcnow()
    root = _root(ROOT_NAME, "Foreign Trust")
    issuing = make_ca(root, "Foreign Issuing CA 1")
    rsa_root = _root("Foreign RSA Root", "Foreign Trust", key_type="rsa")
    rsa_issuing = make_ca(rsa_root, "Foreign RSA Issuing CA", key_type="rsa")
    old_root = _root("Foreign Old Root", "Foreign Trust", not_before=now - timedelta(days=4000),
                     not_after=now - timedelta(days=5))
    old_issuing = make_ca(old_root, "Foreign Old Issuing CA", not_before=now - timedelta(days=30),
                          not_after=now + timedelta(days=300))
    store = pki.write_bundle(d / "client-store.pem", [root.cert, rsa_root.cert, old_root.cert])
    reference = pki.write_bundle(d / "reference-store.pem", [root.cert, rsa_root.cert])
    client_ca = _root("Foreign Client CA", "Foreign Customers")
    other_client_ca = _root("Some Other Client CA", "Elsewhere")
    client_ca_pem = pki.write_bundle(d / "client-ca.pem", [client_ca.cert])
    client_leaf = make_leaf(client_ca, [], common_name="foreign lab client", eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    client_cert, client_key = _write(d, "client", client_leaf.cert, client_leaf.key, [])
    wrong_leaf = make_leaf(other_client_ca, [], common_name="a client of another CA",
                           eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    wrong_cert, wrong_key = _write(d, "wrong-client", wrong_leaf.cert, wrong_leaf.key, [])
    dhparam = d / "dh1024.pem"
    with warnings.catch_warnings():  # FFDH is deprecated in cryptography: a weak-DH server is the point here
        warnings.simplefilter("ignore")
        dhparam.write_bytes(dh.DHParameterNumbers(_MODP_1024, 2).parameters().parameter_bytes(
            serialization.Encoding.PEM, serialization.ParameterFormat.PKCS3))

    cases: list[Case] = []

    def host(name: str) -> str:
        return f"{name.replace('_', '-')}.{DOMAIN}"

    def add(name: str, cause: str, description: str, leaf_cert: x509.Certificate, key: Any,
            sent: Sequence[x509.Certificate], **kw: Any) -> None:
        chain, key_path = _write(d, name, leaf_cert, key, sent)
        server = ServerSpec(chain=chain, key=key_path, **kw.pop("server", {}))
        cases.append(Case(name=name, cause=cause, description=description, host=kw.pop("host", host(name)),
                          server=server, ca_bundle=str(kw.pop("ca_bundle", store)),
                          reference_ca_bundle=str(reference), **kw))

    def leaf(name: str, ca: pki.CA = issuing, **kw: Any) -> pki.IssuedCert:
        return make_leaf(ca, [host(name)], **kw)

    def std(name: str, cause: str, description: str, issued: pki.IssuedCert, *, send: int | None = None,
            **kw: Any) -> None:
        chain = list(issued.issuers)
        if send is None:
            send = len(chain) - (1 if chain and chain[-1].subject == chain[-1].issuer else 0)
        add(name, cause, description, issued.cert, issued.key, chain[:send], **kw)

    # ---- healthy controls -------------------------------------------------------------
    std("healthy", "ok", "a well-formed leaf + intermediate from the trusted root", leaf("healthy"))

    # ---- rules (invalid_chain) ----------------------------------------------------------
    nc_permitted = make_ca(root, "Foreign Constrained CA (permitted)", extra=[
        (x509.NameConstraints(permitted_subtrees=[x509.DNSName("permitted.example")], excluded_subtrees=None), True)])
    std("name_constraints_permitted", "invalid_chain",
        "the intermediate permits only permitted.example; the leaf is for cxforeign.test (verify code 47)",
        leaf("name_constraints_permitted", nc_permitted), evidence={"verify_code": 47})
    nc_excluded = make_ca(root, "Foreign Constrained CA (excluded)", extra=[
        (x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=[x509.DNSName(DOMAIN)]), True)])
    std("name_constraints_excluded", "invalid_chain",
        "the intermediate excludes cxforeign.test; the leaf is for a name under it (verify code 48)",
        leaf("name_constraints_excluded", nc_excluded), evidence={"verify_code": 48})
    tier1 = make_ca(root, "Foreign Tier-1 CA (pathlen 0)", path_length=0)
    tier2 = make_ca(tier1, "Foreign Tier-2 CA", path_length=None)
    std("path_length", "invalid_chain", "a pathlen-0 intermediate issued another CA, which issued the leaf (25)",
        leaf("path_length", tier2), evidence={"verify_code": 25})
    ca_key = pki.generate_key()
    ca_cert = _sign(_builder(_cn("Foreign Reversed Chain CA", "Foreign Trust"), root.cert.subject, ca_key.public_key(),
                             days=365)
                    .add_extension(_aki(root), critical=False)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(_CA_ONLY_KU, critical=True), root.key)
    add("ca_as_server", "invalid_chain",
        "the server presents a CA certificate (keyCertSign/cRLSign only) as its own: a reversed chain file (26)",
        ca_cert, ca_key, [], also=("hostname_mismatch",), evidence={"verify_code": 26})
    std("client_only_leaf", "invalid_chain", "the server's certificate is for clients only (EKU clientAuth) (26)",
        leaf("client_only_leaf", eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)), evidence={"verify_code": 26})
    std("unknown_critical_extension", "invalid_chain", "the leaf carries a critical extension nobody knows (34)",
        leaf("unknown_critical_extension", extra=[
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1"), b"\x05\x00"), True)]),
        evidence={"verify_code": 34})
    std("empty_eku", "invalid_chain", "the leaf's extendedKeyUsage is an empty list",
        leaf("empty_eku", eku=None, extra=[
            (x509.UnrecognizedExtension(ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x00"), False)]))

    # ---- weak crypto ------------------------------------------------------------------
    std("rsa1024_leaf", "weak_crypto", "the server's key is RSA-1024 (verify code 66)",
        leaf("rsa1024_leaf", key_type="rsa1024"), evidence={"verify_code": 66})
    weak_ca = make_ca(root, "Foreign Weak-Key CA (RSA-1024)", key_type="rsa1024")
    std("rsa1024_intermediate", "weak_crypto", "the intermediate's key is RSA-1024 (verify code 67)",
        leaf("rsa1024_intermediate", weak_ca), evidence={"verify_code": 67})
    md5 = make_leaf(rsa_issuing, [host("md5_leaf")], key_type="rsa")
    md5_cert = resign(md5.cert, rsa_issuing.key, algorithm_der=_MD5_RSA, hash_algorithm=hashes.MD5())
    add("md5_leaf", "weak_crypto", "the leaf is signed with MD5 (verify code 68)", md5_cert, md5.key,
        [rsa_issuing.cert], evidence={"verify_code": 68}, warnings=("weak_signature",))
    sha1_inter = make_ca(rsa_root, "Foreign SHA-1 Issuing CA")
    sha1_cert = resign(sha1_inter.cert, rsa_root.key, algorithm_der=pki._SHA1_ALGORITHM_DER["rsa"],
                       hash_algorithm=hashes.SHA1())
    sha1_ca = pki.CA(cert=sha1_cert, key=sha1_inter.key, parents=rsa_root.chain)
    std("sha1_intermediate", "weak_crypto", "the intermediate is signed with SHA-1 (verify code 68)",
        leaf("sha1_intermediate", sha1_ca), evidence={"verify_code": 68}, warnings=("weak_signature",))
    dhe = make_leaf(rsa_issuing, [host("dhe1024")], key_type="rsa")
    std("dhe1024", "weak_crypto", "TLS 1.2 with DHE only, over a 1024-bit group (DH_KEY_TOO_SMALL)", dhe,
        server={"tls_max": "1.2", "ciphers": "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0", "dhparam": dhparam},
        evidence={"reason": "DH_KEY_TOO_SMALL"})

    # ---- an oversized certificate message ------------------------------------------------
    many = [host("oversized")] + [f"san-{i:05d}.many.{DOMAIN}" for i in range(10_000)]
    std("oversized", "invalid_chain", "a leaf with 10,000 SANs (~210 KB): over the client's 100 KiB limit",
        make_leaf(issuing, many), evidence={"reason": "EXCESSIVE_MESSAGE_SIZE"})

    # ---- what the analysis cannot read -----------------------------------------------------
    bad_aia = (x509.UnrecognizedExtension(ExtensionOID.AUTHORITY_INFORMATION_ACCESS, b"\x30\x03\x30\x01\x06"), False)
    std("malformed_aia_leaf_only", "incomplete_chain",
        "a leaf alone whose AIA extension is truncated DER (cryptography: ParseError)",
        leaf("malformed_aia_leaf_only", extra=[bad_aia]), send=0)
    std("malformed_aia_healthy", "ok", "a healthy chain whose leaf's AIA is truncated DER (OpenSSL ignores it)",
        leaf("malformed_aia_healthy", extra=[bad_aia]))
    empty_nc = make_ca(root, "Foreign Empty-Constraints CA", extra=[
        (x509.UnrecognizedExtension(ExtensionOID.NAME_CONSTRAINTS, b"\x30\x00"), True)])
    std("empty_name_constraints", "ok", "the intermediate's nameConstraints has both subtrees absent",
        leaf("empty_name_constraints", empty_nc))

    odd = make_ca(root, "Foreign Odd-Key CA")
    odd_spki = odd.cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    unknown_spki = pki._der(0x30, pki._der(0x30, bytes.fromhex("060a2b0601040183b2630901")) +
                            pki._der(0x03, b"\x00" + bytes(range(32))))
    odd_cert = resign(odd.cert, root.key, tbs_edit=lambda tbs: tbs.replace(odd_spki, unknown_spki, 1))
    std("undecodable_issuer_key", "invalid_chain",
        "the intermediate's public key has an algorithm nobody knows: OpenSSL cannot decode it",
        leaf("undecodable_issuer_key", pki.CA(cert=odd_cert, key=odd.key, parents=root.chain)),
        evidence={"rule": "malformed issuer public key"})

    # ---- long chains and huge names ----------------------------------------------------------
    ca = root
    for i in range(12):
        ca = make_ca(ca, f"Foreign Long-Chain CA {i + 1:02d}", path_length=None)
    std("long_chain", "ok", "12 intermediates between the leaf and the trusted root", leaf("long_chain", ca))
    private = _root("Foreign Private Root", "Foreign Private IT")
    ca = private
    for i in range(14):
        ca = make_ca(ca, f"Foreign Private CA {i + 1:02d}", path_length=None, organization="Foreign Private IT")
    std("long_chain_private", "untrusted_root", "14 private intermediates and the private root, all sent (19)",
        leaf("long_chain_private", ca), send=15, evidence={"verify_code": 19})
    huge = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                                         f"u{i}")])
                      for i in range(2048)] + [x509.RelativeDistinguishedName(
                          [x509.NameAttribute(NameOID.COMMON_NAME, "Foreign Huge-Name Root")])])
    huge_root = _root("", subject=huge)
    std("huge_subject", "untrusted_root", "a private root whose subject has 2,048 name parts, sent by the server",
        leaf("huge_subject", huge_root), send=1, evidence={"verify_code": 19})

    # ---- missing intermediates, and AIA --------------------------------------------------------
    aia_issuing = make_ca(root, "Foreign AIA Issuing CA")
    der = aia_issuing.cert.public_bytes(serialization.Encoding.DER)
    url_der = aia.publish("foreign-aia.cer", der, "application/pkix-cert")
    url_pem = aia.publish("foreign-aia.pem", aia_issuing.pem, "application/x-pem-file")
    url_p7c = aia.publish("foreign-aia.p7c", pkcs7.serialize_certificates([aia_issuing.cert], serialization.Encoding.DER),
                          "application/pkcs7-mime")
    for name, url in (("aia_split_der", url_der), ("aia_pem", url_pem), ("aia_p7c", url_p7c)):
        std(name, "incomplete_chain", f"the leaf alone; its issuer at an AIA URL ({url.rsplit('.', 1)[1]}, headers "
            "and body in separate segments)", leaf(name, aia_issuing, aia_url=url), send=0,
            evidence={"issuer_found": True, "aia_fetched": True})
    lost_root = _root("Foreign Lost Private Root", "Foreign Private IT")
    aia_private = make_ca(lost_root, "Foreign AIA Private Issuing CA")
    url_private = aia.publish("foreign-aia-private.cer", aia_private.cert.public_bytes(serialization.Encoding.DER),
                              "application/pkix-cert")
    std("aia_then_unknown_root", "incomplete_chain",
        "the leaf alone; AIA supplies its issuer, whose own (private) root is in no store",
        leaf("aia_then_unknown_root", aia_private, aia_url=url_private), send=0,
        evidence={"missing_issuer": "CN=Foreign AIA Private Issuing CA,O=Foreign Trust",
                  "unfound_issuer": "CN=Foreign Lost Private Root,O=Foreign Private IT"})
    # The omitted issuer is in the client's own bundle (no AIA): found there, then the chain stops again.
    with_private_ca = pki.write_bundle(d / "client-store-with-private-ca.pem",
                                       [root.cert, rsa_root.cert, old_root.cert, aia_private.cert])
    std("store_intermediate_unknown_root", "incomplete_chain",
        "the leaf alone; the client's bundle holds its issuer, whose (private) root is in no store; no AIA",
        leaf("store_intermediate_unknown_root", aia_private), send=0, no_aia=True, ca_bundle=with_private_ca,
        evidence={"intermediate_source": "client CA bundle",
                  "unfound_issuer": "CN=Foreign Lost Private Root,O=Foreign Private IT"})
    # Two intermediates missing, each published at its child's AIA URL: the server must send both.
    def published(name: str, ca: pki.CA) -> str:  # the CA's certificate at an AIA URL, as DER
        return aia.publish(name, ca.cert.public_bytes(serialization.Encoding.DER), "application/pkix-cert")

    hop1 = make_ca(root, "Foreign AIA Hop 1 CA", path_length=1)
    url_hop1 = published("foreign-aia-hop1.cer", hop1)
    hop2 = make_ca(hop1, "Foreign AIA Hop 2 CA", aia_url=url_hop1)
    url_hop2 = published("foreign-aia-hop2.cer", hop2)
    std("aia_two_hops", "incomplete_chain", "the leaf alone; AIA supplies its issuer, then that issuer's issuer",
        leaf("aia_two_hops", hop2, aia_url=url_hop2), send=0,
        evidence={"missing_intermediates": ["CN=Foreign AIA Hop 2 CA,O=Foreign Trust",
                                            "CN=Foreign AIA Hop 1 CA,O=Foreign Trust"]})
    # Three missing: the leaf's and its issuer's AIA URLs answer, the third gives 404: every
    # intermediate found is named for the server to send, and the unfound one too.
    top3 = make_ca(root, "Foreign AIA Top CA", path_length=2)
    mid3 = make_ca(top3, "Foreign AIA Middle CA", path_length=1, aia_url=aia.url("foreign-aia-top-missing.cer"))
    url_mid3 = published("foreign-aia-mid3.cer", mid3)
    low3 = make_ca(mid3, "Foreign AIA Low CA", aia_url=url_mid3)
    url_low3 = published("foreign-aia-low3.cer", low3)
    std("aia_two_found_then_404", "incomplete_chain", "the leaf alone; AIA supplies two intermediates, the third "
        "answers 404", leaf("aia_two_found_then_404", low3, aia_url=url_low3), send=0,
        evidence={"missing_intermediates": ["CN=Foreign AIA Low CA,O=Foreign Trust",
                                            "CN=Foreign AIA Middle CA,O=Foreign Trust"],
                  "unfound_issuer": "CN=Foreign AIA Top CA,O=Foreign Trust"})
    # The server omits its intermediate and this client's store holds it: the handshake verifies (the
    # client's verdict), with a warning for every other client.
    store_inter = make_ca(root, "Foreign Store-Held CA")
    with_inter = pki.write_bundle(d / "client-store-with-intermediate.pem",
                                  [root.cert, rsa_root.cert, old_root.cert, store_inter.cert])
    std("omitted_intermediate_in_client_store", "ok", "the leaf alone; the client's bundle holds its intermediate",
        leaf("omitted_intermediate_in_client_store", store_inter), send=0, ca_bundle=with_inter,
        warnings=("incomplete_chain",))
    # An AIA URL that answers with a certificate, but not the issuer.
    url_wrong = aia.publish("foreign-aia-wrong.cer", der, "application/pkix-cert")
    std("aia_wrong_certificate", "incomplete_chain", "the leaf alone; its AIA URL serves another CA's certificate",
        leaf("aia_wrong_certificate", make_ca(root, "Foreign Misfiled CA"), aia_url=url_wrong), send=0,
        evidence={"issuer_found": False, "aia_fetch": "wrong_certificate"})
    std("leaf_only_no_aia", "incomplete_chain", "the leaf alone, no AIA, the intermediate in no store",
        leaf("leaf_only_no_aia", make_ca(root, "Foreign Unpublished CA")), send=0,
        evidence={"issuer_found": False})
    std("leaf_only_aia_404", "incomplete_chain", "the leaf alone; its AIA URL answers 404",
        leaf("leaf_only_aia_404", make_ca(root, "Foreign Lost CA"), aia_url=aia.url("missing.cer")), send=0,
        evidence={"issuer_found": False})

    # ---- known-bad roots ------------------------------------------------------------------
    bad_roots = {
        "superfish": ("Superfish, Inc.", "Superfish, Inc."),
        "edellroot": ("eDellRoot", None),
        "dsdtestprovider": ("DSDTestProvider", None),
        "mitmproxy": ("mitmproxy", "mitmproxy"),
        "fiddler": ("DO_NOT_TRUST_FiddlerRoot", "DO_NOT_TRUST"),
        "charles": ("Charles Proxy CA (1 Dec 2026, cxlab)", "XK72 Ltd"),
        "burp": ("PortSwigger CA", "PortSwigger"),
    }
    for name, (cn, org) in bad_roots.items():
        bad = _root(cn, org)
        std(f"bad_root_{name}", "proxy_interception", f"a leaf minted by the {cn} root, sent with it (not trusted)",
            leaf(f"bad_root_{name}", bad), send=1, also=("untrusted_root",), evidence={"remove_root": True})
    trusted_bad = _root("mitmproxy", "mitmproxy")
    trusting = pki.write_bundle(d / "client-store+mitmproxy.pem", [root.cert, trusted_bad.cert])
    std("bad_root_trusted", "ok", "the client's store trusts the mitmproxy root that minted the leaf",
        leaf("bad_root_trusted", trusted_bad), ca_bundle=trusting, warnings=("proxy_interception",))
    trusted_superfish = _root("Superfish, Inc.", "Superfish, Inc.")
    trusting_superfish = pki.write_bundle(d / "client-store+superfish.pem", [root.cert, trusted_superfish.cert])
    std("compromised_root_trusted", "proxy_interception",
        "the client's store trusts Superfish (its private key is public): verified, and still a failure",
        leaf("compromised_root_trusted", trusted_superfish), ca_bundle=trusting_superfish,
        evidence={"remove_root": True, "trusted_by_client": True})

    # ---- client certificates ------------------------------------------------------------------
    std("client_cert_optional", "ok", "the server asks for a client certificate and goes on without one",
        leaf("client_cert_optional"), server={"client_ca": client_ca_pem, "verify_client": "optional"},
        warnings=("client_cert_requested",))
    std("client_cert_post_handshake", "client_cert_required",
        "the handshake completes after a CertificateRequest; the request gets 400 No required SSL certificate",
        leaf("client_cert_post_handshake"), server={"client_ca": client_ca_pem, "verify_client": "on"},
        evidence={"certificate_request": True})
    std("client_cert_post_handshake_tls12", "client_cert_required",
        "the same on TLS 1.2", leaf("client_cert_post_handshake_tls12"),
        server={"client_ca": client_ca_pem, "verify_client": "on", "tls_max": "1.2"})
    std("client_cert_wrong_ca", "client_cert_required",
        "the client supplies a certificate from a CA the server does not trust",
        leaf("client_cert_wrong_ca"), server={"client_ca": client_ca_pem, "verify_client": "on"},
        client_cert=str(wrong_cert), client_key=str(wrong_key), evidence={"client_cert_supplied": True})
    std("client_cert_accepted", "ok", "the client supplies the certificate the server wants",
        leaf("client_cert_accepted"), server={"client_ca": client_ca_pem, "verify_client": "on"},
        client_cert=str(client_cert), client_key=str(client_key))

    # ---- names ---------------------------------------------------------------------------------
    std("no_san", "ok", "a leaf without subjectAltName; the host is its CN", leaf("no_san", san=False),
        warnings=("no_san",))

    # ---- several faults at once ------------------------------------------------------------------
    std("expired_leaf_and_intermediate", "cert_expired", "both the leaf and the intermediate the server sends expired",
        leaf("expired_leaf_and_intermediate",
             make_ca(root, "Foreign Expired Issuing CA", not_before=now - timedelta(days=400),
                     not_after=now - timedelta(days=3)),
             not_before=now - timedelta(days=100), not_after=now - timedelta(days=2)),
        evidence={"expired_count": 2, "whose": {"server"}})
    std("expired_root_in_client_store", "cert_expired", "the chain ends at a root of the client's store that expired",
        leaf("expired_root_in_client_store", old_issuing), evidence={"whose": {"client_store"}})
    std("other_host_and_expired", "hostname_mismatch", "another host's certificate, expired as well",
        make_leaf(issuing, [f"elsewhere.{DOMAIN}"], not_before=now - timedelta(days=100),
                  not_after=now - timedelta(days=1)),
        host=host("other_host_and_expired"), also=("cert_expired",))
    std("private_root_and_expired", "untrusted_root", "a private CA (root sent) whose leaf expired too",
        leaf("private_root_and_expired", private, not_before=now - timedelta(days=100),
             not_after=now - timedelta(days=1)), send=1, also=("cert_expired",))
    # A leaf key OpenSSL refuses before it builds a path (verify code 66) does not hide the trust faults.
    weak_private = _root("Foreign Weak Private Root", "Private")
    weak_private_ca = make_ca(weak_private, "Foreign Weak Private Issuing CA")
    std("rsa1024_leaf_private_root", "untrusted_root", "an RSA-1024 leaf under a private CA whose root is sent",
        leaf("rsa1024_leaf_private_root", weak_private_ca, key_type="rsa1024"), send=2, also=("weak_crypto",),
        evidence={"verify_code": 66})
    std("rsa1024_leaf_only", "incomplete_chain", "an RSA-1024 leaf sent alone, its issuer in no store",
        leaf("rsa1024_leaf_only", weak_private_ca, key_type="rsa1024"), send=0, also=("weak_crypto",), no_aia=True,
        evidence={"verify_code": 66})
    # An expired root of the client's store: renewed (same name and key) in the reference store, or not.
    renewed = pki.CA(cert=_sign(_builder(old_root.cert.subject, old_root.cert.subject, old_root.key.public_key(),
                                         days=3650, not_before=now - timedelta(days=10),
                                         not_after=now + timedelta(days=3000))
                                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                                .add_extension(pki._ca_key_usage(), critical=True), old_root.key), key=old_root.key)
    renewed_reference = pki.write_bundle(d / "reference-with-renewed-root.pem",
                                         [root.cert, rsa_root.cert, renewed.cert])
    std("expired_root_renewed", "stale_trust_store", "an expired root of the client's store that the reference store "
        "has renewed (the chain validates against the reference store only)", leaf("expired_root_renewed", old_issuing),
        also=("cert_expired",), evidence={"anchor": "CN=Foreign Old Root,O=Foreign Trust"})
    cases[-1] = replace(cases[-1], reference_ca_bundle=str(renewed_reference))
    # ... and the same with an expired leaf: both faults are found, the store's first (group 4 before 6)
    std("expired_leaf_and_renewed_root", "stale_trust_store", "an expired leaf under an expired root of the client's "
        "store that the reference store has renewed",
        leaf("expired_leaf_and_renewed_root", old_issuing, not_before=now - timedelta(days=100),
             not_after=now - timedelta(days=1)), also=("cert_expired",))
    cases[-1] = replace(cases[-1], reference_ca_bundle=str(renewed_reference))
    # A server that does not serve the name asked for (nginx: ssl_reject_handshake on in the default server).
    std("name_not_served", "sni_required", "the server serves other names only and refuses this one",
        leaf("name_not_served"), server={"served_names": (f"served.{DOMAIN}",)},
        evidence={"name_not_served": host("name_not_served")})
    # TLS 1.3 only, with a suite no default client offers: no variant is accepted.
    std("tls13_ccm_only", "cipher_mismatch", "a TLS 1.3-only server whose only suite is TLS_AES_128_CCM_SHA256",
        leaf("tls13_ccm_only"), server={"tls_min": "1.3", "tls13_suites": "TLS_AES_128_CCM_SHA256"},
        stacks=("nginx",))
    std("weak_and_expired", "weak_crypto", "an RSA-1024 leaf that has expired as well",
        leaf("weak_and_expired", key_type="rsa1024", not_before=now - timedelta(days=100),
             not_after=now - timedelta(days=1)), also=("cert_expired",))
    return [replace(c, server=replace(c.server, ciphers=c.server.ciphers)) for c in cases]
