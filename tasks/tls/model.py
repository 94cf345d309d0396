"""Values of the diagnosis engine: causes, targets, certificates, diagnoses.

A diagnosis is a value, not an exception (see architecture.md): every path
through the engine ends in a frozen :class:`Diagnosis` whose ``to_dict`` is the
JSON object of contract §1.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .proxy import Proxy


class Cause(str, enum.Enum):
    """The root cause of a diagnosis: exactly one per diagnosis (contract §1)."""

    OK = "ok"
    DNS_FAILURE = "dns_failure"
    TCP_REFUSED = "tcp_refused"
    TCP_TIMEOUT = "tcp_timeout"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    CONNECTION_RESET = "connection_reset"
    NOT_TLS = "not_tls"
    PROTOCOL_VERSION_MISMATCH = "protocol_version_mismatch"
    CIPHER_MISMATCH = "cipher_mismatch"
    SNI_REQUIRED = "sni_required"
    CLIENT_CERT_REQUIRED = "client_cert_required"
    CERT_EXPIRED = "cert_expired"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    SELF_SIGNED = "self_signed"
    INCOMPLETE_CHAIN = "incomplete_chain"
    STALE_TRUST_STORE = "stale_trust_store"
    UNTRUSTED_ROOT = "untrusted_root"
    PROXY_UNREACHABLE = "proxy_unreachable"
    PROXY_AUTH_REQUIRED = "proxy_auth_required"
    PROXY_REFUSED = "proxy_refused"
    PROXY_UPSTREAM_FAILURE = "proxy_upstream_failure"
    PROXY_INTERCEPTION = "proxy_interception"
    WEAK_CRYPTO = "weak_crypto"
    INVALID_CHAIN = "invalid_chain"
    PIN_MISMATCH = "pin_mismatch"

    def __str__(self) -> str:  # so f-strings print the code, not "Cause.OK"
        return self.value


#: Contract §1's precedence groups: when several faults apply, the cause is the one
#: of the lowest group; the others are listed in ``evidence.also``. Causes another
#: module adds without a group here rank with the network and policy (group 1).
PRECEDENCE: dict[str, int] = {
    **dict.fromkeys(("dns_failure", "tcp_refused", "tcp_timeout", "handshake_timeout", "connection_reset",
                     "not_tls", "protocol_version_mismatch", "cipher_mismatch", "sni_required",
                     "client_cert_required", "proxy_unreachable", "proxy_auth_required", "proxy_refused",
                     "proxy_upstream_failure"), 1),
    "proxy_interception": 2,
    "hostname_mismatch": 3,
    "incomplete_chain": 4, "stale_trust_store": 4, "untrusted_root": 4, "self_signed": 4,
    "weak_crypto": 5, "invalid_chain": 5,
    "cert_expired": 6, "cert_not_yet_valid": 6,
    "pin_mismatch": 7,
}


def precedence(cause: "Cause | str") -> int:
    return PRECEDENCE.get(str(cause), 1)


class WarningCode(str, enum.Enum):
    """Non-fatal findings (contract §1, "Warning codes")."""

    CERT_EXPIRING_SOON = "cert_expiring_soon"
    PROXY_INTERCEPTION = "proxy_interception"
    TLS12_ONLY_POLICY = "tls12_only_policy"
    WEAK_SIGNATURE = "weak_signature"
    # Not in the contract's minimum list, but useful and allowed ("at least").
    CERT_EXPIRED_IN_CHAIN_NOT_USED = "cert_expired_unused"
    STALE_TRUST_STORE = "stale_trust_store"
    CLIENT_CERT_REQUESTED = "client_cert_requested"
    NO_SAN = "no_san"
    # The handshake verified only because the client's store holds an intermediate the server omits.
    INCOMPLETE_CHAIN = "incomplete_chain"

    def __str__(self) -> str:
        return self.value


# --- bounds on output (contract §1, "Bounds on input and output") -------------------

MAX_TEXT = 1000          # a summary, a remediation step, a warning message
MAX_NAME = 512           # a certificate subject or issuer in the chain list
MAX_SANS = 100           # SAN entries listed per certificate (the count is given)
MAX_CHAIN = 20           # certificates listed (the count is given)
MAX_JSON_LINE = 256 * 1024
ELLIPSIS = "…"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` at most ``limit`` characters, shortened in the middle with … (both ends say something)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    tail = limit - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


@functools.lru_cache(maxsize=4096)
def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and what to say: the TARGET of ``cxhealth diagnose``.

    ``sni`` is the name sent in the ClientHello; ``None`` with ``send_sni=False``
    means no SNI at all (what some legacy middleware does). ``address`` pins the
    IP to connect to (curl's ``--resolve``); ``None`` means resolve ``host``.
    ``proxy`` is the HTTP proxy the connection is tunnelled through (None:
    direct); the proxy then resolves the name, so ``address`` stays None.
    ``connect_to`` (curl's ``--connect-to``) is the host:port actually dialled
    (or asked for in CONNECT) instead of ``host:port``; SNI and verification
    stay on ``host``.
    """

    host: str
    port: int = 443
    sni: str | None = None
    send_sni: bool = True
    address: str | None = None
    path: str = "/"
    proxy: "Proxy | None" = None
    connect_to: tuple[str, int] | None = None

    @property
    def server_hostname(self) -> str | None:
        """The name given to OpenSSL as ``server_hostname`` (None when SNI is off)."""
        if not self.send_sni:
            return None
        return self.sni or self.host

    @property
    def sni_sent(self) -> str | None:
        """The SNI that goes on the wire: an IP address is never sent as SNI (RFC 6066; Python sends none)."""
        name = self.server_hostname
        return None if name is None or is_ip(name) else name

    @property
    def verify_name(self) -> str:
        """The name the certificate must cover: the host; for an IP host given ``--sni NAME``, NAME."""
        return self.sni if (self.sni and is_ip(self.host)) else self.host

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "sni": self.sni_sent,
            "address": self.address,
            "proxy": self.proxy.url if self.proxy is not None else None,
        }

    @property
    def dial(self) -> tuple[str, int]:
        """The host and port the connection (or the CONNECT request) goes to."""
        return self.connect_to or (self.host, self.port)


@dataclass(frozen=True)
class CertInfo:
    """One certificate as the server sent it (contract §1 ``chain`` item)."""

    subject: str
    issuer: str
    not_before: str
    not_after: str
    san: tuple[str, ...]
    sha256: str
    is_ca: bool
    self_issued: bool = False
    signature_hash: str | None = None
    spki_sha256_b64: str = ""
    serial: str = ""
    aia_ca_issuers: tuple[str, ...] = ()
    unanalysed: tuple[str, ...] = ()  # what could not be read (a malformed extension, an odd key)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "subject": clip(self.subject, MAX_NAME),
            "issuer": clip(self.issuer, MAX_NAME),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "san": [clip(n, 256) for n in self.san[:MAX_SANS]],
            "sha256": self.sha256,
            "is_ca": self.is_ca,
            "self_issued": self.self_issued,
            "signature_hash": self.signature_hash,
            "spki_pin": f"sha256/{self.spki_sha256_b64}" if self.spki_sha256_b64 else None,
        }
        if len(self.san) > MAX_SANS:
            out["san_count"] = len(self.san)
        if self.unanalysed:
            out["unanalysed"] = list(self.unanalysed)
        return out


@dataclass(frozen=True)
class Finding:
    """A non-fatal finding: ``{code, message}`` in the JSON."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": clip(self.message)}


@dataclass(frozen=True)
class Diagnosis:
    """The verdict on one endpoint: one cause, the evidence, and what to do."""

    endpoint: Endpoint
    cause: Cause
    summary: str
    remediation: tuple[str, ...] = ()
    protocol: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    handshake_ms: float | None = None
    chain: tuple[CertInfo, ...] = ()
    warnings: tuple[Finding, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    handshakes: int = 0

    @property
    def ok(self) -> bool:
        return self.cause is Cause.OK

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON object, within its bounds whatever the server sent."""
        chain = [c.to_dict() for c in self.chain[:MAX_CHAIN]]
        evidence = {**self.evidence, "handshakes": self.handshakes}
        if len(self.chain) > MAX_CHAIN:
            evidence["chain_total"] = len(self.chain)
            evidence["chain_listed"] = MAX_CHAIN
        doc = {
            "target": self.endpoint.to_dict(),
            "ok": self.ok,
            "cause": self.cause.value,
            "summary": clip(self.summary),
            "remediation": [clip(step) for step in self.remediation],
            "protocol": self.protocol,
            "cipher": self.cipher,
            "alpn": self.alpn,
            "handshake_ms": self.handshake_ms,
            "chain": chain,
            "warnings": [w.to_dict() for w in self.warnings[:50]],
            "evidence": evidence,
        }
        return bound_document(doc)


def _json_size(doc: Any) -> int:
    import json

    return len(json.dumps(doc, separators=(",", ":"), default=str).encode("utf-8"))


def _shorten_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, list):
        return [_shorten_strings(v, limit) for v in value[:50]] + (
            [f"{ELLIPSIS} {len(value) - 50} more"] if len(value) > 50 else [])
    if isinstance(value, dict):
        return {k: _shorten_strings(v, limit) for k, v in value.items()}
    return value


def _surely_small(doc: dict[str, Any]) -> bool:
    """A cheap upper bound, so a healthy diagnosis is not serialised twice: every text is clipped,
    so what can grow is the chain's names and SANs and the evidence's lists."""
    size = len(doc["summary"]) + sum(len(s) for s in doc["remediation"]) + 1100 * len(doc["warnings"])
    for c in doc["chain"]:
        size += 600 + len(c["subject"]) + len(c["issuer"]) + sum(len(n) + 3 for n in c["san"])
    ev = doc["evidence"]
    size += 4000 * len(ev.get("probes", ())) + 600 * (len(ev) + len(ev.get("also_found", ())))
    return size < 64 * 1024 and len(ev) < 40


def bound_document(doc: dict[str, Any], limit: int = MAX_JSON_LINE) -> dict[str, Any]:
    """Shrink ``doc`` (evidence first, then the chain list) until its JSON line fits ``limit`` bytes."""
    if (doc["ok"] and _surely_small(doc)) or _json_size(doc) <= limit - 1:
        return doc
    doc = dict(doc)
    for text_limit in (300, 120):
        doc["evidence"] = _shorten_strings(doc["evidence"], text_limit)
        doc["chain"] = _shorten_strings(doc["chain"], text_limit)
        if _json_size(doc) <= limit - 1:
            return doc
    total = len(doc["chain"])
    while len(doc["chain"]) > 1 and _json_size(doc) > limit - 1:
        doc["chain"] = doc["chain"][: max(1, len(doc["chain"]) // 2)]
        doc["evidence"] = {**doc["evidence"], "chain_listed": len(doc["chain"]),
                           "chain_total": doc["evidence"].get("chain_total", total)}
    if _json_size(doc) > limit - 1:  # last resort: keep only what the verdict rests on
        ev = doc["evidence"]
        doc["evidence"] = {k: ev[k] for k in ("reason", "verify_code", "verify_message", "error_kind", "also",
                                              "rule", "certificate", "handshakes", "chain_total") if k in ev}
        doc["evidence"]["truncated"] = True
        doc["warnings"] = doc["warnings"][:5]
    return doc
