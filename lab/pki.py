"""A tiny trustme-like PKI on ``cryptography``, for the lab's TLS scenarios.

Every certificate is made at run time, so nothing secret or expiring is ever
committed. Keys are ECDSA P-256 by default because they are generated in well
under a millisecond; RSA exists only for scenarios that need it (RSA key
exchange ciphers can only be served with an RSA key).

The verbs mirror trustme: :meth:`CA.create_root`, :meth:`CA.create_intermediate`,
:meth:`CA.issue_leaf`, :func:`self_signed_leaf`, and :meth:`IssuedCert.write`
to put PEM files where an ``ssl.SSLContext`` can load them.

The extensions follow what OpenSSL's strict mode (``VERIFY_X509_STRICT``, on by
default in Python 3.13's ``create_default_context``) asks for: SKI on every
certificate, AKI on every issued one, critical basicConstraints and keyUsage on
CAs. A lab chain must fail only for the reason its scenario intends.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

#: Signature hashes by name, so scenarios can say ``hash_name="sha1"``.
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def generate_key(key_type: str = "ec") -> PrivateKey:
    """A fresh private key: ``"ec"`` (P-256, fast), ``"rsa"`` (2048 bits) or
    ``"rsa1024"`` (a weak key, for the scenarios a client's security level refuses)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    raise ValueError(f"unknown key type {key_type!r}: use 'ec', 'rsa' or 'rsa1024'")


def _hash(hash_name: str) -> hashes.HashAlgorithm:
    try:
        return HASHES[hash_name]()
    except KeyError:
        raise ValueError(f"unknown signature hash {hash_name!r}: use one of {sorted(HASHES)}") from None


def _name(common_name: str | None, organization: str | None) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _window(not_before: datetime | None, not_after: datetime | None, days: int) -> tuple[datetime, datetime]:
    # Backdate by an hour by default: a lab cert must not be "not yet valid" by
    # accident when a client's clock is a little behind.
    start = not_before or (utcnow() - timedelta(hours=1))
    end = not_after or (start + timedelta(days=days))
    return start, end


def spki_sha256(public_key: object) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: what an HPKP-style pin hashes."""
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def spki_pin(cert_or_key: x509.Certificate | PrivateKey) -> str:
    """``sha256/BASE64`` pin of a certificate's (or a private key's) public key."""
    public_key = cert_or_key.public_key()
    return "sha256/" + base64.b64encode(spki_sha256(public_key)).decode("ascii")


def to_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_bundle(path: str | Path, certs: Sequence[x509.Certificate]) -> Path:
    """A PEM trust bundle (what ``--ca-bundle`` and ``cafile=`` take)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_pem(*certs))
    return path


@dataclass(frozen=True)
class PemFiles:
    """Where :meth:`IssuedCert.write` put things.

    ``chain`` is the leaf followed by the certificates the server sends: exactly
    what ``SSLContext.load_cert_chain(chain, key)`` wants.
    """

    cert: Path
    key: Path
    chain: Path


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate, its key, and the issuers above it (nearest first).

    ``issuers`` runs up to and including the root, so a scenario can choose how
    much of it the server sends (all, none, everything but the root).
    """

    cert: x509.Certificate
    key: PrivateKey
    issuers: tuple[x509.Certificate, ...] = ()

    @property
    def pin(self) -> str:
        return spki_pin(self.cert)

    def write(self, directory: str | Path, name: str = "leaf", *, send: int | None = None) -> PemFiles:
        """Write ``<name>.pem``, ``<name>.key`` and ``<name>-chain.pem``.

        ``send`` is how many issuers follow the leaf in the chain file: ``None``
        sends every issuer except a self-signed root (what well-run servers
        do), ``0`` only the leaf (a missing intermediate), ``len(issuers)``
        everything including the root.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if send is None:
            send = len(self.issuers)
            if send and _is_self_signed(self.issuers[-1]):
                send -= 1
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}.key"
        chain_path = directory / f"{name}-chain.pem"
        cert_path.write_bytes(to_pem(self.cert))
        key_path.write_bytes(key_to_pem(self.key))
        key_path.chmod(0o600)
        chain_path.write_bytes(to_pem(self.cert, *self.issuers[:send]))
        return PemFiles(cert=cert_path, key=key_path, chain=chain_path)


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


@dataclass(frozen=True)
class CA:
    """A certificate authority that can issue intermediates and leaves.

    ``parents`` holds the issuers above this CA (nearest first, root last), so a
    leaf knows its whole chain.
    """

    cert: x509.Certificate
    key: PrivateKey
    parents: tuple[x509.Certificate, ...] = field(default=())

    @property
    def name(self) -> str:
        attrs = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else self.cert.subject.rfc4514_string()

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA's certificate and every issuer above it, root last."""
        return (self.cert, *self.parents)

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @property
    def pem(self) -> bytes:
        return to_pem(self.cert)

    @classmethod
    def create_root(
        cls,
        common_name: str,
        *,
        organization: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        hash_name: str = "sha256",
        key_type: str = "ec",
    ) -> "CA":
        """A self-signed root.

        ``hash_name="sha1"`` makes a root whose *self-signature* is SHA-1: a
        trust anchor's own signature is never checked by OpenSSL, so a chain
        ending there still verifies at the default security level while a SHA-1
        signature sits in the chain the server sends (the weak_signature
        warning, as with the legacy SHA-1 roots still in system stores).
        """
        key = generate_key(key_type)
        subject = _name(common_name, organization)
        start, end = _window(not_before, not_after, days=3650)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(ski, critical=False)
        )
        return cls(cert=_sign(builder, key, hash_name), key=key)

    def create_intermediate(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        hash_name: str = "sha256",
        key_type: str = "ec",
    ) -> "CA":
        """A CA signed by this one (path length 0: it issues leaves only)."""
        key = generate_key(key_type)
        start, end = _window(not_before, not_after, days=1825)
        builder = (
            self._builder(_name(common_name, organization), key, start, end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
        )
        return CA(cert=_sign(builder, self.key, hash_name), key=key, parents=self.chain)

    def issue_leaf(
        self,
        dns_names: Sequence[str],
        *,
        common_name: str | None = None,
        organization: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        hash_name: str = "sha256",
        key_type: str = "ec",
        aia_ca_issuers_url: str | None = None,
        client: bool = False,
    ) -> IssuedCert:
        """An end-entity certificate for ``dns_names`` (server auth by default).

        ``aia_ca_issuers_url`` adds the Authority Information Access caIssuers
        URL, where a client may fetch the issuer a server forgot to send.
        ``client=True`` makes a client-auth certificate (for mTLS scenarios).
        """
        key = generate_key(key_type)
        start, end = _window(not_before, not_after, days=90)
        # The subject CN defaults to the first name, as public CAs do, so a chain
        # reads well in a diagnosis; SANs are what clients actually check.
        subject = _name(common_name or (dns_names[0] if dns_names else None), organization)
        builder = _leaf_extensions(
            self._builder(subject, key, start, end), subject,
            dns_names, key, aia_ca_issuers_url, client,
        )
        cert = _sign(builder, self.key, hash_name)
        return IssuedCert(cert=cert, key=key, issuers=self.chain)

    def _builder(self, subject: x509.Name, key: PrivateKey, start: datetime, end: datetime) -> x509.CertificateBuilder:
        issuer_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
            )
        )


def self_signed_leaf(
    dns_names: Sequence[str],
    *,
    common_name: str | None = None,
    organization: str | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    hash_name: str = "sha256",
    key_type: str = "ec",
) -> IssuedCert:
    """A leaf signed by its own key, not a CA (what ``openssl req -x509`` makes).

    It is not a CA (basicConstraints CA:FALSE), so OpenSSL reports it as
    verify code 18 (self-signed leaf) rather than 19 (self-signed root in chain).
    """
    key = generate_key(key_type)
    subject = _name(common_name or (dns_names[0] if dns_names else None), organization)
    start, end = _window(not_before, not_after, days=365)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = _sign(_leaf_extensions(builder, subject, dns_names, key, None, False), key, hash_name)
    return IssuedCert(cert=cert, key=key, issuers=())


def _sign(builder: x509.CertificateBuilder, key: PrivateKey, hash_name: str) -> x509.Certificate:
    if hash_name != "sha1":
        return builder.sign(key, _hash(hash_name))
    # cryptography >= 4x refuses SHA-1 in CertificateBuilder.sign ("not supported
    # for signatures"), but its low-level sign() still does SHA-1. So: sign with
    # SHA-256, swap the algorithm identifier (in the TBS and outside it), and
    # sign the new TBS with SHA-1.
    return _resign_sha1(builder.sign(key, hashes.SHA256()), key)


# AlgorithmIdentifier DER: ecdsa-with-SHA1 has no parameters (RFC 5758);
# sha1WithRSAEncryption has an explicit NULL (RFC 4055).
_SHA1_ALGORITHM_DER = {
    "ec": bytes.fromhex("3009" "0607" "2a8648ce3d0401"),
    "rsa": bytes.fromhex("300d" "0609" "2a864886f70d010105" "0500"),
}


def _der_read(buf: bytes, offset: int) -> tuple[int, int]:
    """(content start, content end) of the DER element at ``offset``."""
    length = buf[offset + 1]
    start = offset + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[start:start + n], "big")
        start += n
    return start, start + length


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _resign_sha1(cert: x509.Certificate, key: PrivateKey) -> x509.Certificate:
    der = cert.public_bytes(serialization.Encoding.DER)
    body, _ = _der_read(der, 0)
    tbs_start, tbs_end = _der_read(der, body)
    alg_start, alg_end = _der_read(der, tbs_end)
    old_alg = der[tbs_end:alg_end]
    new_alg = _SHA1_ALGORITHM_DER["rsa" if isinstance(key, rsa.RSAPrivateKey) else "ec"]
    tbs = der[tbs_start:tbs_end].replace(old_alg, new_alg, 1)  # the TBS "signature" field
    tbs_der = _der(0x30, tbs)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA1())
    else:
        signature = key.sign(tbs_der, ec.ECDSA(hashes.SHA1()))
    new = _der(0x30, tbs_der + new_alg + _der(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(new)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def _leaf_extensions(builder: x509.CertificateBuilder, subject: x509.Name, dns_names: Sequence[str], key: PrivateKey,
                     aia_url: str | None, client: bool) -> x509.CertificateBuilder:
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                # RSA key exchange (TLS 1.2 "AES128-GCM-SHA256") encrypts the
                # premaster secret to the leaf's key: it needs keyEncipherment.
                key_encipherment=is_rsa, data_encipherment=False, key_agreement=False,
                key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
    )
    if dns_names:
        # RFC 5280 4.2.1.6: with an empty subject the SAN must be critical, and
        # OpenSSL's strict mode (Python 3.13's default context) rejects it otherwise.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=len(subject) == 0
        )
    if aia_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                        x509.UniformResourceIdentifier(aia_url))]
            ),
            critical=False,
        )
    return builder
