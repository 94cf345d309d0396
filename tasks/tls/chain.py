"""Chain analysis with ``cryptography``: pure functions over certificates.

Why our own path building and not ``cryptography.x509.verification``: OpenSSL
has already judged validity (its verify code is in the evidence). What a
diagnosis needs next is *which* store, with *which* extra intermediates, would
complete the chain the server sent — and the strict CA/B Forum profile of the
verifier would reject chains OpenSSL accepts (and so misreport the cause). We
chain by issuer name and check every link's signature with
``verify_directly_issued_by``. Fetched AIA certificates are only ever
intermediates, never anchors (platform-facts.md: 3.13's PARTIAL_CHAIN pitfall).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import os
import ssl
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID, AuthorityInformationAccessOID

from .model import CertInfo


class StoreError(ValueError):
    """A trust store that cannot be read."""


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


@functools.lru_cache(maxsize=4096)
def name_text(name: x509.Name) -> str:
    """RFC 4514 text, most specific first (``CN=..,O=..``) as users expect."""
    return name.rfc4514_string() or "(empty subject)"


def spki_pin(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return ()
    out = [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
    out += [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
    return tuple(out)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca)
    except x509.ExtensionNotFound:
        return False


@functools.lru_cache(maxsize=4096)
def is_self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signs(cert, cert)


def aia_ca_issuers(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(d.access_location.value for d in ext
                 if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
                 and isinstance(d.access_location, x509.UniformResourceIdentifier))


def signature_hash(cert: x509.Certificate) -> str | None:
    algo = cert.signature_hash_algorithm
    return algo.name if algo is not None else None


def rsa_bits(cert: x509.Certificate) -> int | None:
    """The size in bits of an RSA or DSA key (what OpenSSL's security level judges); None for others."""
    from cryptography.hazmat.primitives.asymmetric import dsa, rsa

    key = cert.public_key()
    return key.key_size if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)) else None


def cert_info(cert: x509.Certificate) -> CertInfo:
    return _cert_info_cached(cert)


@functools.lru_cache(maxsize=1024)  # endpoints behind one gateway share certificates
def _cert_info_cached(cert: x509.Certificate) -> CertInfo:
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=not_before(cert).isoformat(),
        not_after=not_after(cert).isoformat(),
        san=sans(cert),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
        is_ca=is_ca(cert),
        self_issued=is_self_issued(cert),
        signature_hash=signature_hash(cert),
        spki_sha256_b64=spki_pin(cert),
        serial=_serial_hex(cert),
        aia_ca_issuers=aia_ca_issuers(cert),
    )


def _serial_hex(cert: x509.Certificate) -> str:
    with warnings.catch_warnings():  # legacy roots with non-positive serials still deserve a report
        warnings.simplefilter("ignore")
        return format(cert.serial_number, "x")


def parse_der_chain(ders: Iterable[bytes]) -> list[x509.Certificate]:
    return [_parse_der(d) for d in ders]


@functools.lru_cache(maxsize=1024)
def _parse_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def parse_any(data: bytes) -> list[x509.Certificate]:
    """Certificates from an AIA answer: DER, PEM or a PKCS#7 bundle (.p7c)."""
    if b"-----BEGIN" in data:
        return _load_pem_lenient(data)
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    from cryptography.hazmat.primitives.serialization import pkcs7

    try:
        return list(pkcs7.load_der_pkcs7_certificates(data))
    except ValueError:
        return []


def _load_pem_lenient(data: bytes) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        # System bundles carry a few legacy roots (e.g. non-positive serials) that
        # cryptography warns about on stderr; they are still usable anchors.
        warnings.simplefilter("ignore")
        return _load_pem_quiet(data)


def _load_pem_quiet(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        pass
    # One malformed entry must not hide the others (system bundles do carry oddities).
    out = []
    marker = b"-----BEGIN CERTIFICATE-----"
    for chunk in data.split(marker)[1:]:
        try:
            out.append(x509.load_pem_x509_certificate(marker + chunk))
        except ValueError:
            continue
    return out


# --- trust stores --------------------------------------------------------------

@dataclass(frozen=True)
class TrustStore:
    """Anchors indexed by subject, with where they came from."""

    label: str
    source: str
    anchors: tuple[x509.Certificate, ...]

    @functools.cached_property
    def by_subject(self) -> dict[x509.Name, list[x509.Certificate]]:
        index: dict[x509.Name, list[x509.Certificate]] = {}
        for cert in self.anchors:
            index.setdefault(cert.subject, []).append(cert)
        return index

    def issuers_of(self, cert: x509.Certificate) -> list[x509.Certificate]:
        return self.by_subject.get(cert.issuer, [])

    def contains(self, cert: x509.Certificate) -> bool:
        return any(a == cert or (a.subject == cert.subject and a.public_key() == cert.public_key())
                   for a in self.by_subject.get(cert.subject, []))


def system_store_source() -> str:
    """Where OpenSSL's default store is, as ``load_default_certs`` would use it."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get(paths.openssl_cafile_env or ""), paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    for candidate in (os.environ.get(paths.openssl_capath_env or ""), paths.capath, paths.openssl_capath):
        if candidate and os.path.isdir(candidate):
            return candidate
    return ""


def load_store(label: str, path: str | None) -> TrustStore:
    """A PEM bundle (or a hashed directory) as a :class:`TrustStore`; cached by mtime."""
    source = str(Path(path).expanduser()) if path else system_store_source()
    if not source:
        return TrustStore(label, "(no system store found)", ())
    try:
        mtime = os.stat(source).st_mtime_ns
    except OSError:
        raise StoreError(f"{label} {source} does not exist") from None
    return _load_store_cached(label, source, mtime)


@functools.lru_cache(maxsize=16)
def _load_store_cached(label: str, source: str, _mtime: int) -> TrustStore:
    certs: list[x509.Certificate] = []
    try:
        if os.path.isdir(source):
            for entry in sorted(os.listdir(source)):
                full = os.path.join(source, entry)
                if os.path.isfile(full) and (entry.endswith((".pem", ".crt")) or entry[-2:-1] == "."):
                    with open(full, "rb") as fh:
                        certs.extend(_load_pem_lenient(fh.read()))
        else:
            with open(source, "rb") as fh:
                certs = _load_pem_lenient(fh.read())
    except OSError as exc:
        raise StoreError(f"{label} {source} is not readable: {exc.strerror}") from None
    if not certs:
        raise StoreError(f"{label} {source} holds no PEM certificate")
    return TrustStore(label, source, tuple(certs))


def reference_store(path: str | None) -> TrustStore:
    if path:
        return load_store("reference CA bundle", path)
    import certifi

    return load_store("reference CA bundle", certifi.where())


# --- path building ---------------------------------------------------------------

@dataclass(frozen=True)
class PathResult:
    """Whether ``leaf`` chains to an anchor of ``store`` through the given intermediates."""

    store: str
    complete: bool
    path: tuple[x509.Certificate, ...]
    anchor: x509.Certificate | None
    stopped_at: x509.Certificate | None  # the last cert whose issuer could not be found
    used_fetched: bool = False
    from_store: tuple[x509.Certificate, ...] = ()  # intermediates the store supplied (not sent, not fetched)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"store": self.store, "complete": self.complete,
                                  "path": [name_text(c.subject) for c in self.path]}
        if self.anchor is not None:
            out["anchor"] = name_text(self.anchor.subject)
        if self.stopped_at is not None:
            out["missing_issuer"] = name_text(self.stopped_at.issuer)
        if self.used_fetched:
            out["used_aia"] = True
        if self.from_store:
            out["intermediates_from_store"] = [name_text(c.subject) for c in self.from_store]
        return out


def _signs(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except ValueError:
        # cryptography's verifier refuses legacy algorithms (SHA-1, MD5) outright;
        # a diagnosis still needs to know who signed such a certificate.
        return cert.issuer == issuer.subject and _signs_legacy(issuer, cert)
    except Exception:  # noqa: BLE001 - wrong key, bad signature
        return False


def _signs_legacy(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

    algo = cert.signature_hash_algorithm
    key = issuer.public_key()
    try:
        if algo is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, algo)
        else:
            return False
        return True
    except Exception:  # noqa: BLE001 - bad signature, unsupported key or hash
        return False


def build_path(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], store: TrustStore,
               fetched: Sequence[x509.Certificate] = (), max_depth: int = 8,
               partial_chain: bool = False) -> PathResult:
    """Chain *leaf* up through the sent *intermediates*, the store's own
    intermediates and any *fetched* ones, to an anchor of *store*.

    As OpenSSL does without ``VERIFY_X509_PARTIAL_CHAIN`` (the default before
    Python 3.13), only a self-issued certificate of the store is an anchor; a
    store's intermediate helps build the path but does not end it.
    """
    path = [leaf]
    current = leaf
    from_store: list[x509.Certificate] = []
    used_fetched = False
    for _ in range(max_depth):
        in_store = [a for a in store.issuers_of(current) if _signs(a, current)]
        for anchor in in_store:
            if partial_chain or is_self_issued(anchor):
                return PathResult(store.label, True, tuple(path), anchor, None, used_fetched, tuple(from_store))
        if store.contains(current) and (partial_chain or is_self_issued(current)):  # the sent cert is an anchor
            return PathResult(store.label, True, tuple(path), current, None, used_fetched, tuple(from_store))
        nxt = next((c for c in intermediates if c.subject == current.issuer and c not in path and _signs(c, current)),
                   None)
        if nxt is None:
            nxt = next((c for c in in_store if c not in path), None)
            if nxt is not None:
                from_store.append(nxt)
        if nxt is None:
            nxt = next((c for c in fetched if c.subject == current.issuer and c not in path and _signs(c, current)),
                       None)
            used_fetched = used_fetched or nxt is not None
        if nxt is None:
            return PathResult(store.label, False, tuple(path), None, current, used_fetched, tuple(from_store))
        path.append(nxt)
        current = nxt
    return PathResult(store.label, False, tuple(path), None, current, used_fetched, tuple(from_store))


# --- host names -------------------------------------------------------------------

def hostname_matches(cert: x509.Certificate, host: str) -> bool:
    """Does the certificate's SAN cover ``host``? (see :func:`names_cover`)"""
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return False
    return names_cover(ext.get_values_for_type(x509.DNSName),
                       [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)], host)


def names_cover(dns_names: Iterable[str], ip_names: Iterable[str], host: str) -> bool:
    """RFC 6125 matching, the one rule for the whole project: SANs only (no CN
    fallback, like OpenSSL's check in Python); an IP host matches IP SANs only;
    a wildcard only as the whole left-most label of a name with at least two more
    labels, matching exactly one label (``*.example.com`` covers ``api.example.com``,
    not ``example.com``, ``a.b.example.com``; ``*.com`` covers nothing)."""
    host = host.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        for value in ip_names:
            try:
                if ipaddress.ip_address(value.strip()) == ip:
                    return True
            except ValueError:
                continue
        return False
    for value in dns_names:
        pattern = value.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*.") and "*" not in pattern[2:] and pattern.count(".") >= 2:
            head, _, rest = host.partition(".")
            if head and rest == pattern[2:]:
                return True
    return False


def common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None
