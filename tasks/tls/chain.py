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
from cryptography.hazmat.primitives import hashes

try:  # the encodings alone: the serialization package also loads its SSH and PKCS#12 code, ~15% of
    # what importing cryptography.x509 costs (bench/bench_diagnose.py's start-up)
    from cryptography.hazmat.primitives import _serialization as serialization
except ImportError:  # pragma: no cover - a cryptography without the private module
    from cryptography.hazmat.primitives import serialization  # type: ignore[no-redef]
from cryptography.x509.oid import ExtensionOID, NameOID, AuthorityInformationAccessOID

from .model import CertInfo, clip


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
    """RFC 4514 text, most specific first (``CN=..,O=..``) as users expect; shortened
    with … past 256 characters (a subject of 2,048 parts must not fill a summary)."""
    try:
        text = name.rfc4514_string() or "(empty subject)"
    except Exception:  # noqa: BLE001 - an attribute cryptography cannot render
        text = "(unreadable name)"
    return clip(text, 256)


@functools.lru_cache(maxsize=4096)
def full_name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except Exception:  # noqa: BLE001
        return "(unreadable name)"


_EXT_NAMES = {o.dotted_string: n for n, o in vars(ExtensionOID).items() if isinstance(o, x509.ObjectIdentifier)}


class Unreadable(Exception):
    """A part of a certificate cryptography cannot decode (OpenSSL may still accept it)."""


def extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension | None:
    """The extension with ``oid``, None when absent; :class:`Unreadable` when malformed.

    cryptography parses every extension at once, so one malformed extension (an AIA
    that is short by a byte) would hide all the others: then each is read on its own,
    from the DER, and only the malformed one is unreadable."""
    try:
        exts = cert.extensions
    except Exception:  # noqa: BLE001 - ParseError, DuplicateExtension, ValueError ...
        return _extension_alone(cert, oid.dotted_string)
    try:
        return exts.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def raw_extensions(cert: x509.Certificate) -> tuple[tuple[str, bool, bytes], ...]:
    """(OID, critical, the Extension's DER) of every extension, read from the TBS without
    decoding any value: what OpenSSL's "unhandled critical extension" rule looks at."""
    return _raw_extensions_cached(cert)


@functools.lru_cache(maxsize=1024)
def _raw_extensions_cached(cert: x509.Certificate) -> tuple[tuple[str, bool, bytes], ...]:
    try:
        tbs = cert.tbs_certificate_bytes
        start, end = _der_span(tbs, 0)
        pos = start
        while pos < end:
            s, e = _der_span(tbs, pos)
            if tbs[pos] == 0xA3:
                seq_s, seq_e = _der_span(tbs, s)
                out = []
                p = seq_s
                while p < seq_e:
                    es, ee = _der_span(tbs, p)
                    oid_s, oid_e = _der_span(tbs, es)
                    oid = _decode_oid(tbs[oid_s:oid_e])
                    critical = tbs[oid_e] == 0x01 and tbs[oid_e + 2] != 0x00
                    out.append((oid, critical, tbs[p:ee]))
                    p = ee
                return tuple(out)
            pos = e
    except Exception:  # noqa: BLE001 - not even the DER walks: nothing to say
        return ()
    return ()


def _decode_oid(body: bytes) -> str:
    first = body[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for b in body[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


@functools.lru_cache(maxsize=2048)
def _extension_alone(cert: x509.Certificate, dotted: str) -> x509.Extension | None:
    raw = next((r for r in raw_extensions(cert) if r[0] == dotted), None)
    if raw is None:
        return None
    try:
        der = cert.public_bytes(serialization.Encoding.DER)
        body, _ = _der_span(der, 0)
        tbs_s, tbs_e = _der_span(der, body)
        tbs = der[body:tbs_e]
        rest = der[tbs_e:]  # signatureAlgorithm, signatureValue
        inner_s, inner_e = _der_span(tbs, 0)
        fields, pos = [], inner_s
        while pos < inner_e:
            s, e = _der_span(tbs, pos)
            if tbs[pos] != 0xA3:
                fields.append(tbs[pos:e])
            pos = e
        one = _der(0xA3, _der(0x30, raw[2]))
        new_tbs = _der(0x30, b"".join(fields) + one)
        alone = x509.load_der_x509_certificate(_der(0x30, new_tbs + rest))
        return alone.extensions.get_extension_for_oid(x509.ObjectIdentifier(dotted))
    except Exception as exc:  # noqa: BLE001
        raise Unreadable(f"extension {dotted}: {type(exc).__name__}: {str(exc)[:120]}") from None


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _ext_or_none(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension | None:
    try:
        return extension(cert, oid)
    except Unreadable:
        return None


def unreadable_parts(cert: x509.Certificate) -> tuple[str, ...]:
    """What of ``cert`` cannot be analysed here (for the evidence; never a crash)."""
    return _unreadable_cached(cert)


@functools.lru_cache(maxsize=1024)
def _unreadable_cached(cert: x509.Certificate) -> tuple[str, ...]:
    out: list[str] = []
    try:
        cert.extensions
    except Exception:  # noqa: BLE001 - then say which one
        for dotted, _, _ in raw_extensions(cert):
            try:
                _extension_alone(cert, dotted)
            except Unreadable as exc:
                out.append(f"{_EXT_NAMES.get(dotted, dotted)}: {exc}")
    try:
        cert.public_key()
    except Exception as exc:  # noqa: BLE001
        out.append(f"public key: {type(exc).__name__}: {str(exc)[:160]}")
    try:
        cert.signature_hash_algorithm
    except Exception as exc:  # noqa: BLE001
        out.append(f"signature algorithm: {type(exc).__name__}: {str(exc)[:160]}")
    return tuple(out)


def not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def spki_pin(cert: x509.Certificate) -> str:
    """The base64 SHA-256 of the SubjectPublicKeyInfo, taken from the DER (so a key
    cryptography cannot load still has a pin)."""
    return _spki_pin_cached(cert)


@functools.lru_cache(maxsize=4096)
def _spki_pin_cached(cert: x509.Certificate) -> str:
    try:
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    except Exception:  # noqa: BLE001 - an undecodable key: hash its raw DER
        spki = _spki_der(cert) or b""
        if not spki:
            return ""
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def _spki_der(cert: x509.Certificate) -> bytes | None:
    """The SubjectPublicKeyInfo element of the TBS, by walking its DER (7th field, after an optional version)."""
    try:
        tbs = cert.tbs_certificate_bytes
        start, end = _der_span(tbs, 0)
        pos, index, fields = start, 0, []
        while pos < end and len(fields) < 8:
            s, e = _der_span(tbs, pos)
            fields.append((pos, e))
            pos = e
        offset = 1 if tbs[fields[0][0]] == 0xA0 else 0
        a, b = fields[5 + offset]
        return tbs[a:b]
    except Exception:  # noqa: BLE001
        return None


def _der_span(buf: bytes, offset: int) -> tuple[int, int]:
    length = buf[offset + 1]
    start = offset + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[start:start + n], "big")
        start += n
    return start, start + length


def sans(cert: x509.Certificate) -> tuple[str, ...]:
    ext = _ext_or_none(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if ext is None:
        return ()
    out = [f"DNS:{n}" for n in ext.value.get_values_for_type(x509.DNSName)]
    out += [f"IP:{ip}" for ip in ext.value.get_values_for_type(x509.IPAddress)]
    return tuple(out)


def has_san_extension(cert: x509.Certificate) -> bool:
    try:
        return extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME) is not None
    except Unreadable:
        return True  # present, if unreadable


def is_ca(cert: x509.Certificate) -> bool:
    ext = _ext_or_none(cert, ExtensionOID.BASIC_CONSTRAINTS)
    return bool(ext is not None and ext.value.ca)


@functools.lru_cache(maxsize=4096)
def is_self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signs(cert, cert)


def aia_ca_issuers(cert: x509.Certificate) -> tuple[str, ...]:
    ext = _ext_or_none(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if ext is None:
        return ()
    return tuple(d.access_location.value for d in ext.value
                 if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
                 and isinstance(d.access_location, x509.UniformResourceIdentifier))


def signature_hash(cert: x509.Certificate) -> str | None:
    try:
        algo = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - UnsupportedAlgorithm (e.g. an unknown OID)
        return None
    return algo.name if algo is not None else None


def key_description(cert: x509.Certificate) -> tuple[str, int | None]:
    """("RSA" | "DSA" | "EC P-256" | "Ed25519" | "unreadable", bits)."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

    try:
        key = cert.public_key()
    except Exception:  # noqa: BLE001
        return "unreadable", None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size
    return type(key).__name__.replace("PublicKey", "").lstrip("_"), None


def rsa_bits(cert: x509.Certificate) -> int | None:
    """The size in bits of an RSA or DSA key (what OpenSSL's security level judges); None for others."""
    kind, bits = key_description(cert)
    return bits if kind in ("RSA", "DSA") else None


def cert_info(cert: x509.Certificate) -> CertInfo:
    return _cert_info_cached(cert)


@functools.lru_cache(maxsize=1024)  # endpoints behind one gateway share certificates
def _cert_info_cached(cert: x509.Certificate) -> CertInfo:
    return CertInfo(
        subject=clip(full_name(cert.subject), 4 * 1024),
        issuer=clip(full_name(cert.issuer), 4 * 1024),
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
        unanalysed=unreadable_parts(cert),
    )


def _serial_hex(cert: x509.Certificate) -> str:
    with warnings.catch_warnings():  # legacy roots with non-positive serials still deserve a report
        warnings.simplefilter("ignore")
        return format(cert.serial_number, "x")


def parse_der_chain(ders: Iterable[bytes]) -> list[x509.Certificate]:
    """The certificates cryptography can parse; the others are left out (see :func:`unparsed`)."""
    out = []
    for d in ders:
        try:
            out.append(_parse_der(d))
        except Exception:  # noqa: BLE001 - OpenSSL judged it; we only cannot read it
            continue
    return out


def unparsed(ders: Iterable[bytes]) -> list[str]:
    """Why each certificate cryptography cannot parse was left out (for the evidence)."""
    out = []
    for i, d in enumerate(ders):
        try:
            _parse_der(d)
        except Exception as exc:  # noqa: BLE001
            out.append(f"certificate {i} ({len(d)} bytes): {type(exc).__name__}: {str(exc)[:160]}")
    return out


@functools.lru_cache(maxsize=1024)
def _parse_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def parse_any(data: bytes) -> list[x509.Certificate]:
    """Certificates from an AIA answer: DER, PEM or a PKCS#7 bundle (.p7c)."""
    if b"-----BEGIN PKCS7" in data or b"-----BEGIN CMS" in data:
        from cryptography.hazmat.primitives.serialization import pkcs7

        try:
            return list(pkcs7.load_pem_pkcs7_certificates(data))
        except Exception:  # noqa: BLE001
            return []
    if b"-----BEGIN" in data:
        return _load_pem_lenient(data)
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    from cryptography.hazmat.primitives.serialization import pkcs7

    try:
        return list(pkcs7.load_der_pkcs7_certificates(data))
    except Exception:  # noqa: BLE001 - ValueError, UnsupportedAlgorithm: not a certificate answer
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
        return any(a == cert or (a.subject == cert.subject and spki_pin(a) == spki_pin(cert))
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
            if is_self_issued(self.stopped_at):  # the path reached a root; it is just not this store's
                out["ends_at_root_not_in_store"] = name_text(self.stopped_at.subject)
            else:
                out["missing_issuer"] = name_text(self.stopped_at.issuer)
        if self.used_fetched:
            out["used_aia"] = True
        if self.from_store:
            out["intermediates_from_store"] = [name_text(c.subject) for c in self.from_store]
        return out


@functools.lru_cache(maxsize=8192)
def _signs(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:  # noqa: BLE001
        # cryptography's verifier refuses legacy algorithms (SHA-1, MD5) and odd keys
        # outright; a diagnosis still needs to know who signed such a certificate.
        return _signs_legacy(issuer, cert)


def _signs_legacy(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

    try:
        algo = cert.signature_hash_algorithm
        key = issuer.public_key()
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
               fetched: Sequence[x509.Certificate] = (), max_depth: int = 100,
               partial_chain: bool = False) -> PathResult:
    """Chain *leaf* up through the sent *intermediates*, the store's own
    intermediates and any *fetched* ones, to an anchor of *store*.

    As OpenSSL does without ``VERIFY_X509_PARTIAL_CHAIN`` (the default before
    Python 3.13), only a self-issued certificate of the store is an anchor; a
    store's intermediate helps build the path but does not end it. ``max_depth``
    is OpenSSL's default verify depth (100): a long chain that was sent is followed
    to its end, never reported missing halfway.
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

def hostname_matches(cert: x509.Certificate, host: str) -> bool | None:
    """Does the certificate cover ``host``, as the client's OpenSSL decides? (see
    :func:`names_cover`). With no subjectAltName at all, OpenSSL (Python's default
    ``hostname_checks_common_name``) falls back to the subject CN: so do we, and
    the ``no_san`` warning says browsers would not. None: the SAN is unreadable here."""
    try:
        ext = extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except Unreadable:
        return None
    if ext is None:
        if is_ip(host):
            return False
        return names_cover([c for c in common_names(cert.subject)], [], host)
    return names_cover(ext.value.get_values_for_type(x509.DNSName),
                       [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)], host)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def common_names(name: x509.Name) -> list[str]:
    try:
        return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    except Exception:  # noqa: BLE001
        return []


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
    names = common_names(name)
    return clip(names[0], 200) if names else None
