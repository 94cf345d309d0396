"""Evidence -> one cause: pure functions, no I/O (sslyze's split).

The engine (engine.py) runs the probes and gathers evidence; everything here
only reads it. What each OpenSSL verify code and reason means is in one table,
openssl_table.py; here the chain analysis finds *every* fault a chain has, and
contract §1's precedence picks the cause, the others going to ``evidence.also``.

The verdict (ok or not) is always OpenSSL's: the analysis only names why. Each
check runs on its own, so a certificate cryptography cannot read costs that
check, never the diagnosis (what could not be analysed goes in the evidence).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from . import chain as ch
from . import openssl_table as table
from .inspection import InspectionProduct, match_inspection
from .proxy import PROXY_KINDS
from .proxy_causes import proxy_verdict
from .model import Cause, Finding, WarningCode, clip, is_ip, precedence
from .probe import (DNS_FAILURE, HANDSHAKE_TIMEOUT, POST_HANDSHAKE, RESET, TCP_ERROR, TCP_REFUSED,
                    TCP_TIMEOUT, ProbeResult)

# Kept for callers that named the families (engine, tests).
NOT_TLS_REASONS = table.reasons_of(Cause.NOT_TLS)
VERSION_REASONS = table.reasons_of(Cause.PROTOCOL_VERSION_MISMATCH)
SNI_REASONS = table.reasons_of(Cause.SNI_REQUIRED)
CLIENT_CERT_REQUIRED_REASONS = table.reasons_of(Cause.CLIENT_CERT_REQUIRED)
CLIENT_CERT_REJECTED_REASONS = table.reasons_of(table.CLIENT_CERT) | {"TLSV13_ALERT_CERTIFICATE_REQUIRED"}

V_EXPIRED = 10
V_NOT_YET_VALID = 9
V_HOSTNAME = 62
V_IP = 64
V_EMAIL = 63
V_SELF_SIGNED_LEAF = 18
V_CHAIN_CODES = table.TRUST_CODES

AIA_NAMES = 5  # intermediates / URLs named in evidence at most
WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})

# OpenSSL's security levels (SSL_CTX_set_security_level(3)): the minimum security bits.
_LEVEL_BITS = {0: 0, 1: 80, 2: 112, 3: 128, 4: 192, 5: 256}
_HASH_BITS = {"md2": 0, "md4": 0, "md5": 39, "sha1": 63, "sha224": 112, "sha256": 128, "sha384": 192,
              "sha512": 256, "sha512-224": 112, "sha512-256": 128, "sha3-224": 112, "sha3-256": 128,
              "sha3-384": 192, "sha3-512": 256}

# Extensions OpenSSL 3.0 understands (crypto/x509/v3_purp.c, X509_supported_extension): a critical
# extension not in this list fails verification with code 34.
OPENSSL_SUPPORTED_EXTENSIONS = frozenset({
    "2.16.840.1.113730.1.1", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.32", "2.5.29.31", "2.5.29.37",
    "1.3.6.1.5.5.7.1.7", "1.3.6.1.5.5.7.1.8", "1.3.6.1.5.5.7.48.1.5", "2.5.29.36", "1.3.6.1.5.5.7.1.14",
    "2.5.29.30", "2.5.29.33", "2.5.29.54",
})


@dataclass(frozen=True)
class Verdict:
    cause: Cause
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """One thing wrong with the endpoint. ``rank`` overrides the cause's precedence group."""

    cause: Cause
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    rank: float | None = None

    @property
    def order(self) -> float:
        return self.rank if self.rank is not None else precedence(self.cause)


def decide(faults: Sequence[Fault], extra: dict[str, Any] | None = None) -> Verdict:
    """Contract §1: the first precedence group that applies is the cause; every other
    fault found is listed, as cause codes, in ``evidence.also``."""
    ordered = sorted(faults, key=lambda f: f.order)  # stable: within a group, the order found
    primary = ordered[0]
    also = list(dict.fromkeys(f.cause.value for f in ordered[1:] if f.cause is not primary.cause))
    details = {**(extra or {}), **primary.details}
    summary = primary.summary
    if also:
        details["also"] = also
        details["also_found"] = [{"cause": f.cause.value, "summary": clip(f.summary, 300)}
                                 for f in ordered[1:] if f.cause is not primary.cause][:10]
        summary = f"{summary.rstrip()} Also found: {', '.join(also)}."
    return Verdict(primary.cause, summary, details)


def _when(dt: datetime, now: datetime) -> str:
    delta = dt - now
    days = abs(delta) / timedelta(days=1)
    rel = f"{days:.0f} days" if days >= 1 else f"{abs(delta).total_seconds() / 3600:.1f} hours"
    return f"{dt.date().isoformat()} ({rel} {'ago' if delta.total_seconds() < 0 else 'from now'})"


def _cn(cert: x509.Certificate) -> str:
    """A name a person recognises: the CN, else the first SAN (modern leaves
    often have an empty subject), else the subject text."""
    cn = ch.common_name(cert.subject)
    if cn:
        return cn
    names = ch.sans(cert)
    if names:
        return clip(names[0].split(":", 1)[1], 200)
    return ch.name_text(cert.subject) or f"serial {ch._serial_hex(cert)}"


# --- connection-level failures ---------------------------------------------------

def classify_network(first: ProbeResult, host: str, port: int, timeout: float) -> Verdict | None:
    kind = first.error_kind
    if kind in PROXY_KINDS:  # the proxy did not tunnel: proxy_causes names why
        return Verdict(*proxy_verdict(kind, first.message, first.proxy, host, port))
    if kind == DNS_FAILURE:
        return Verdict(Cause.DNS_FAILURE, f"The host name {host} does not resolve ({first.reason or first.message}).")
    if kind == TCP_REFUSED:
        return Verdict(Cause.TCP_REFUSED, f"Connection to {first.address}:{port} was refused: nothing listens on port {port}.")
    if kind == TCP_TIMEOUT:
        why = first.message if first.reason else f"no answer within {timeout:g} s"
        return Verdict(Cause.TCP_TIMEOUT, f"The TCP connection to {first.address}:{port} could not be made ({why}).")
    if kind == TCP_ERROR:
        return Verdict(Cause.TCP_TIMEOUT, f"The TCP connection to {first.address}:{port} failed ({first.reason}: {first.message}).")
    if kind == HANDSHAKE_TIMEOUT:
        if first.proxy:  # the TCP leg is the proxy's tunnel: the client has no address of the host
            url = first.proxy.get("url") or "the proxy"
            answered = first.proxy.get("status_line")
            return Verdict(Cause.HANDSHAKE_TIMEOUT,
                           f"The proxy {url} opened the tunnel to {host}:{port}"
                           + (f" ('{answered}')" if answered else "")
                           + f", but no TLS answer came through it within {timeout:g} s.", {"via_proxy": url})
        return Verdict(Cause.HANDSHAKE_TIMEOUT, f"TCP to {first.address or host}:{port} is up, but no TLS answer came within {timeout:g} s.")
    return None


# --- chain analysis (verify failures and successes) --------------------------------

@dataclass(frozen=True)
class ChainFacts:
    """What the chain says, against both stores, with any AIA-fetched intermediates."""

    certs: tuple[x509.Certificate, ...]
    client: ch.PathResult | None
    reference: ch.PathResult | None
    fetched: tuple[x509.Certificate, ...] = ()
    aia: tuple[dict[str, Any], ...] = ()
    aia_enabled: bool = True
    reference_store: ch.TrustStore | None = field(default=None, compare=False)  # for a renewed root's successor

    @property
    def leaf(self) -> x509.Certificate:
        return self.certs[0]

    def ca_names(self) -> list[str]:
        """Subjects of the CAs in the chain (sent, anchors found) and the issuers named."""
        names: list[str] = []
        for cert in self.certs:
            names.append(ch.full_name(cert.issuer))
            if cert is not self.leaf or ch.is_ca(cert):
                names.append(ch.full_name(cert.subject))
        for path in (self.client, self.reference):
            if path is not None and path.anchor is not None:
                names.append(ch.full_name(path.anchor.subject))
        return list(dict.fromkeys(names))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.client is not None:
            out["client_store"] = self.client.describe()
        if self.reference is not None:
            out["reference_store"] = self.reference.describe()
        if self.aia:
            out["aia"] = list(self.aia)
        elif not self.aia_enabled:
            out["aia"] = "disabled (--no-aia)"
        return out

    def client_path(self) -> list[x509.Certificate]:
        """The path the client's OpenSSL would use (with its anchor), else what was sent."""
        if self.client is not None:
            path = list(self.client.path)
            if self.client.anchor is not None and self.client.anchor not in path:
                path.append(self.client.anchor)
            return path
        return list(self.certs)


def inspection_match(facts: ChainFacts) -> tuple[InspectionProduct, str] | None:
    return match_inspection(facts.ca_names())


def expected_issuer_found(names: Sequence[str], expect: Sequence[str]) -> bool:
    lowered = [n.lower() for n in names]
    return any(e.lower() in n for e in expect for n in lowered)


def classify_verify_failure(first: ProbeResult, facts: ChainFacts, *, host: str, now: datetime,
                            expect_issuers: Sequence[str], pins: Sequence[str] = (),
                            security_level: int = 2) -> Verdict:
    """A verified handshake failed on the certificate: find every fault, name the first."""
    code = first.verify_code
    msg = first.verify_message or "certificate verify failed"
    entry = table.verify_entry(code)
    trust_applies = code in table.TRUST_CODES or entry is None
    # OpenSSL judges the server's own key before it builds any path (X509_verify_cert: a leaf key
    # below the security level stops it with code 66 at once): the chain's trust is then unknown
    # to OpenSSL, and the stores' path building is the only evidence of it (contract §1: trust,
    # group 4, comes before the rules, group 5).
    trust_unknown = trust_applies or code in table.CHECKED_BEFORE_PATH
    faults: list[Fault] = []
    unanalysed: list[str] = []

    def attempt(check: Callable[[], Iterable[Fault]]) -> None:
        try:
            faults.extend(check())
        except Exception as exc:  # noqa: BLE001 - a check that cannot read a certificate
            unanalysed.append(f"{check.__name__.strip('_')}: {type(exc).__name__}: {str(exc)[:160]}")

    path = facts.client_path()
    anchor = facts.client.anchor if facts.client is not None else None

    def interception() -> list[Fault]:
        return _interception_faults(facts, code, msg, expect_issuers)

    def hostname() -> list[Fault]:
        return _hostname_faults(facts, host, code)

    def trust() -> list[Fault]:
        if trust_unknown:
            return _trust_faults(facts, code, msg)
        return _stale_by_validity(facts, now, code, msg)

    def weak_crypto() -> list[Fault]:
        return _weak_faults(path, anchor, security_level, code)

    def purpose() -> list[Fault]:
        return _purpose_faults(facts.leaf, code)

    def issuers() -> list[Fault]:
        return _issuer_faults(path, anchor)

    def critical_extensions() -> list[Fault]:
        return _critical_extension_faults(path, anchor)

    def name_constraints() -> list[Fault]:
        return _name_constraint_faults(path)

    def validity() -> list[Fault]:
        return _time_faults(facts, now, code)

    def pinning() -> list[Fault]:
        return _pin_faults(facts, pins)

    for check in (interception, hostname, trust, weak_crypto, purpose, issuers, critical_extensions,
                  name_constraints, validity, pinning):
        attempt(check)
    if entry is not None and entry.cause != table.TRUST and not any(f.cause is entry.cause for f in faults):
        faults.append(_code_fault(entry, code, msg, facts))  # what OpenSSL said, even if we could not see it
    if trust_applies and entry is not None and not any(precedence(f.cause) == 4 for f in faults) and \
            not any(f.cause is Cause.PROXY_INTERCEPTION for f in faults):
        faults.append(_unexplained_trust_failure(facts, code, msg))
    extra: dict[str, Any] = {}
    if entry is None:
        extra["unmapped"] = {"verify_code": code, "verify_message": msg}
        if not faults:
            faults.append(Fault(Cause.INVALID_CHAIN,
                                f"OpenSSL rejects the chain with verify code {code} ({msg}), which cxhealth's table "
                                "does not map to a cause.",
                                {"rule": f"OpenSSL verify code {code}: {msg}", "certificate": _subject(facts.leaf)}))
    if unanalysed:
        extra["unanalysed"] = unanalysed
    if entry is not None:
        extra["verify_code_name"] = entry.name
    return decide(faults, extra)


def _subject(cert: x509.Certificate) -> str:
    return ch.name_text(cert.subject)


def _code_fault(entry: table.VerifyCode, code: int | None, msg: str, facts: ChainFacts) -> Fault:
    """The fault OpenSSL reported, when the analysis did not find it itself."""
    cause = entry.cause
    assert isinstance(cause, Cause)
    leaf = facts.leaf
    if cause is Cause.CERT_EXPIRED:
        return Fault(cause, f"A certificate in the chain has expired (OpenSSL verify code {code}: {msg}).",
                     {"expired": [], "rule": "validity period"})
    if cause is Cause.CERT_NOT_YET_VALID:
        return Fault(cause, f"A certificate in the chain is not valid yet (OpenSSL verify code {code}: {msg}).", {})
    if cause is Cause.HOSTNAME_MISMATCH:
        sans = list(ch.sans(leaf))
        return Fault(cause, f"The certificate's names ({', '.join(sans[:4]) or 'no SAN'}) do not cover the host; "
                            f"OpenSSL verify code {code}.", {"sans": sans[:20]})
    if cause is Cause.SELF_SIGNED:
        return Fault(cause, f"The server's certificate {_cn(leaf)!r} is self-signed and no store trusts it; OpenSSL "
                            f"verify code {code}: {msg}.", {"top_subject": _subject(leaf)})
    certificate = _subject(leaf) if code in (26, 34, 41, 66, 87, 88) else None
    what = f"OpenSSL verify code {code} ({entry.name}: {msg})"
    if cause is Cause.WEAK_CRYPTO:
        return Fault(cause, f"The client's security level refuses a key or algorithm of the chain: {what}.",
                     {"rule": entry.rule, "certificate": certificate})
    return Fault(cause, f"The chain breaks a rule the client enforces, {entry.rule}: {what}.",
                 {"rule": entry.rule, "certificate": certificate})


def _unexplained_trust_failure(facts: ChainFacts, code: int | None, msg: str) -> Fault:
    path = facts.client
    root = ch.name_text(path.anchor.subject) if path is not None and path.anchor is not None else None
    return Fault(Cause.INVALID_CHAIN,
                 f"OpenSSL finds no path to a trusted root (verify code {code}: {msg}) although the chain links to "
                 f"{root!r} in the client's store: a certificate on the path is not acceptable to the client.",
                 {"rule": f"path building (OpenSSL verify code {code})", "certificate": _subject(facts.leaf),
                  "anchor": root, "client_trusts_root": True})


# -- group 2: interception --------------------------------------------------------------

def _interception_faults(facts: ChainFacts, code: int | None, msg: str, expect: Sequence[str]) -> list[Fault]:
    found = inspection_match(facts)
    if found:
        return [_interception(found, facts, code, msg)]
    if expect and not expected_issuer_found(facts.ca_names(), expect):
        top = facts.certs[-1]
        return [Fault(Cause.PROXY_INTERCEPTION,
                      f"The chain is issued by {ch.name_text(top.issuer)!r}, not by the expected issuer "
                      f"({', '.join(expect)}), and does not verify: the connection is being re-signed by an "
                      f"intercepting device; OpenSSL verify code {code}.",
                      {"expected_issuers": list(expect), "issuer": ch.name_text(top.issuer)})]
    return []


def _interception(found: tuple[InspectionProduct, str], facts: ChainFacts, code: int | None, msg: str) -> Fault:
    product, name = found
    if product.must_be_removed:
        what = ("a root whose private key is public" if product.kind == "compromised"
                else "a developer's intercepting proxy")
        summary = (f"The certificate was minted by {product.name} ({clip(name, 200)!r}), {what}: anyone can "
                   f"impersonate any site to a client that trusts it; OpenSSL verify code {code}: {msg}.")
    else:
        summary = (f"The certificate was minted by a TLS-inspecting proxy ({product.name}: {clip(name, 200)!r}) that "
                   f"the client does not trust; OpenSSL verify code {code}: {msg}.")
    return Fault(Cause.PROXY_INTERCEPTION, summary,
                 {"product": product.name, "product_kind": product.kind, "bypass_hint": product.bypass_hint,
                  "inspection_ca": clip(name, 256), "remove_root": product.must_be_removed})


# -- group 3: the certificate is another host's ---------------------------------------------

def _hostname_faults(facts: ChainFacts, host: str, code: int | None) -> list[Fault]:
    leaf = facts.leaf
    covered = ch.hostname_matches(leaf, host)
    if covered is None:
        if code in (V_HOSTNAME, V_IP, V_EMAIL):
            return [Fault(Cause.HOSTNAME_MISMATCH, f"The certificate does not cover {host} (OpenSSL verify code "
                                                   f"{code}); its subjectAltName cannot be read here.", {"sans": []})]
        return []
    if covered:
        return []
    sans = list(ch.sans(leaf))
    names = ", ".join(sans[:4]) or ("CN " + (ch.common_name(leaf.subject) or "(none)") + ", no SAN")
    fault = Fault(Cause.HOSTNAME_MISMATCH, f"The certificate's names ({clip(names, 300)}) do not cover {host}"
                                           + (f"; OpenSSL verify code {code}." if code in (V_HOSTNAME, V_IP) else "."),
                  {"sans": [clip(n, 256) for n in sans[:20]], "san_count": len(sans)})
    if ch.is_ca(leaf) and code not in (V_HOSTNAME, V_IP):
        # A CA certificate served as the server's belongs to no other host: the rule it breaks comes first.
        return [Fault(fault.cause, fault.summary, fault.details, rank=5.5)]
    return [fault]


# -- group 4: trust ------------------------------------------------------------------------

def _trust_faults(facts: ChainFacts, code: int | None, msg: str) -> list[Fault]:
    certs = facts.certs
    client, ref = facts.client, facts.reference
    completes = any(p is not None and p.complete for p in (client, ref))
    if code == V_SELF_SIGNED_LEAF or (len(certs) == 1 and ch.is_self_issued(certs[0]) and not completes):
        return [Fault(Cause.SELF_SIGNED,
                      f"The server's certificate {_cn(certs[0])!r} is self-signed (issuer = subject) and no store "
                      f"trusts it; OpenSSL verify code {code}: {msg}.", {"top_subject": _subject(certs[0])})]
    if client is not None and client.complete:
        if client.used_fetched or client.from_store:
            return [_incomplete(facts, client, code)]
        return []  # the client's own store completes it: not a trust problem (rules decide)
    if ref is not None and ref.complete:
        if ref.used_fetched or ref.from_store:
            faults = [_incomplete(facts, ref, code)]
            if ref.anchor is not None and not _path_reaches(client, ref.anchor):
                faults.append(_stale(ref, code, msg))
            return faults
        return [_stale(ref, code, msg)]
    path = list(client.path) if client is not None else list(certs)
    top = path[-1]
    sent = [c for c in path if c in certs]
    sent_top = sent[-1] if sent else certs[-1]
    odd = next((c for c in certs if c.subject == top.issuer and c not in path
                and ch.key_description(c)[0] == "unreadable"), None)
    if odd is not None:
        # The server did send the issuer, but its key cannot be decoded: nothing can check the signature.
        return [Fault(Cause.INVALID_CHAIN,
                      f"The server sends the issuer {_cn(odd)!r} of {_cn(top)!r}, but its public key cannot be decoded "
                      f"(an unknown algorithm or malformed key), so no signature can be checked; OpenSSL verify code "
                      f"{code}: {msg}.",
                      {"rule": "malformed issuer public key", "certificate": _subject(odd)})]
    faults: list[Fault] = []
    missing_between = [c for c in path if c not in certs and not ch.is_self_issued(c)]
    if not ch.is_self_issued(sent_top) and (missing_between or not ch.is_self_issued(top) or not ch.is_ca(sent_top)):
        faults.append(_incomplete_unfound(facts, sent_top, top, code))
    if ch.is_self_issued(top):
        faults.append(Fault(Cause.UNTRUSTED_ROOT,
                            f"The chain ends at the root {_cn(top)!r} ({'sent by the server' if top in certs else 'fetched via AIA'}), "
                            f"which neither the client's store nor the reference store trusts (a private CA); OpenSSL "
                            f"verify code {code}: {msg}.",
                            {"top_subject": _subject(top), "root_source": "server" if top in certs else "aia"}))
    return faults or [_incomplete_unfound(facts, sent_top, top, code)]


def _stale_by_validity(facts: ChainFacts, now: datetime, code: int | None, msg: str) -> list[Fault]:
    """The client's path reaches a root it trusts but runs through a certificate out of its validity
    (a root of its store that expired, an expired cross-sign), while the reference store's path is
    valid throughout (a renewed or newer root): the chain validates against the reference store and
    not the client's, so the client's store is out of date (contract §1, group 4); the expired
    certificate is a time fault beside it (group 6, in evidence.also)."""
    ref, client = facts.reference, facts.client
    if ref is None or not ref.complete or ref.anchor is None or client is None:
        return []
    ref_chain = list(ref.path) + [ref.anchor]
    client_chain = facts.client_path()
    # Where the two paths share certificates (the leaf, a sent intermediate), a fault of those is the
    # server's and counts the same against both stores: only the reference path's own part must be valid.
    if any(not ch.not_before(c) <= now <= ch.not_after(c) for c in ref_chain if c not in client_chain):
        return []
    outside = [c for c in client_chain if not ch.not_before(c) <= now <= ch.not_after(c) and c not in ref_chain]
    if not outside:
        return []
    bad = outside[0]
    sent = bad in facts.certs
    expired = ch.not_after(bad) < now
    anchor = ch.name_text(ref.anchor.subject)
    return [Fault(Cause.STALE_TRUST_STORE,
                  f"The chain verifies against the up-to-date reference store (root {anchor!r}) but not against the "
                  f"client's store: the client's path runs through {_cn(bad)!r} "
                  f"({'a certificate the server sends' if sent else 'in the client store'}), "
                  f"{'expired' if expired else 'not valid yet'} on "
                  f"{_when(ch.not_after(bad) if expired else ch.not_before(bad), now)}; OpenSSL verify code {code}: {msg}.",
                  {"anchor": anchor, "client_path_invalid_at": _subject(bad),
                   "client_path_invalid_sent_by_server": sent, "client_path_invalid_name": _cn(bad)})]


def _path_reaches(path: ch.PathResult | None, anchor: x509.Certificate) -> bool:
    return path is not None and path.anchor is not None and path.anchor == anchor


def _stale(ref: ch.PathResult, code: int | None, msg: str) -> Fault:
    anchor = ch.name_text(ref.anchor.subject) if ref.anchor is not None else None
    return Fault(Cause.STALE_TRUST_STORE,
                 f"The chain verifies against the up-to-date reference store (root {anchor!r}) but not against the "
                 f"client's store, which lacks that root; OpenSSL verify code {code}: {msg}.", {"anchor": anchor})


def _incomplete(facts: ChainFacts, path: ch.PathResult, code: int | None) -> Fault:
    """The server omitted an intermediate that AIA or a store supplies."""
    sent = [c for c in path.path if c in facts.certs]
    sent_top = sent[-1] if sent else facts.certs[-1]
    missing = [c for c in path.path if c not in facts.certs]
    anchor = ch.name_text(path.anchor.subject) if path.anchor is not None else None
    urls = [r["url"] for r in facts.aia if r.get("ok")]
    names = [ch.name_text(c.subject) for c in missing] or [ch.name_text(sent_top.issuer)]
    several = len(names) > 1
    if path.used_fetched:
        how = (f"with the {'intermediates' if several else 'intermediate'} fetched via AIA "
               f"({clip('; '.join(urls) if urls else '?', 300)})")
    else:
        how = (f"with the {'intermediates' if several else 'intermediate'} that the {path.store} holds "
               f"({clip(', '.join(_cn(c) for c in missing) or '?', 300)})")
    return Fault(Cause.INCOMPLETE_CHAIN,
                 f"The server sent {len(facts.certs)} certificate(s), stopping at {_cn(sent_top)!r} without its issuer "
                 f"{ch.name_text(sent_top.issuer)!r}; {how}, the chain completes to the root {anchor!r}: the server "
                 f"omits {'these intermediates' if several else 'an intermediate'}; OpenSSL verify code {code}.",
                 {"missing_issuer": ch.name_text(sent_top.issuer), "issuer_found": True,
                  "missing_intermediates": [clip(n, 500) for n in names[:AIA_NAMES]],
                  "aia_url": urls[0] if (urls and path.used_fetched) else None,
                  "aia_urls": urls[:AIA_NAMES] if path.used_fetched else [],
                  "intermediate_source": "aia" if path.used_fetched else path.store, "anchor": anchor})


def _incomplete_unfound(facts: ChainFacts, sent_top: x509.Certificate, top: x509.Certificate,
                        code: int | None) -> Fault:
    """Contract §1: a chain that stops at a certificate whose issuer the server did not send is
    incomplete, whether or not the issuer could be found; here it could not (or only partly)."""
    urls = ch.aia_ca_issuers(top)
    last = facts.aia[-1] if facts.aia else None  # the fetch (or the fetch not made) for top's issuer
    wrong = last is not None and str(last.get("error") or "").startswith("the answer holds no certificate")
    if not facts.aia_enabled:
        why = "AIA fetching is disabled (--no-aia)"
    elif last is not None and last.get("not_fetched"):
        why = f"its AIA URL was not fetched: {last['not_fetched']}"
    elif last is not None and not last.get("ok"):
        why = ("its AIA URL answers, but with no certificate that signs it" if wrong else
               f"fetching its AIA URL failed ({clip(str(last.get('error') or last.get('status') or 'no answer'), 200)})")
    elif urls:
        why = "its AIA URL was not fetched"
    else:
        why = "the certificate names no AIA URL and no store holds it"
    unfetched = {"aia_url_unfetched": clip(urls[0], 500) if urls else None,
                 "aia_fetch": ("wrong_certificate" if wrong else "not_fetched" if last is None or last.get("not_fetched")
                               else "failed") if urls and facts.aia_enabled else None}
    what = "only its leaf" if sent_top is facts.leaf and len(facts.certs) == 1 else f"{len(facts.certs)} certificate(s)"
    if top is not sent_top:
        # AIA or a store supplied the issuer the server omitted (and maybe more), then the path stops
        # again: the server must send what was found; what is above it could be found nowhere.
        missing, unfound = ch.name_text(sent_top.issuer), ch.name_text(top.issuer)
        path_now = facts.client_path()
        found = [c for c in path_now if c not in facts.certs]  # found above what was sent, in path order
        from_aia = any(c in facts.fetched for c in path_now)
        source = "AIA" if from_aia else f"the {facts.client.store if facts.client is not None else 'store'}"
        return Fault(Cause.INCOMPLETE_CHAIN,
                     f"The server sent {what}, stopping at {_cn(sent_top)!r} without its issuer {missing!r}, which "
                     f"{'AIA supplied' if from_aia else source + ' holds'}; the chain then stops at {_cn(top)!r}, whose "
                     f"issuer {unfound!r} could not be found ({why}); OpenSSL verify code {code}.",
                     {"missing_issuer": missing, "issuer_found": True, "unfound_issuer": unfound,
                      "missing_intermediates": [clip(ch.name_text(c.subject), 500) for c in found[:AIA_NAMES]],
                      "intermediate_source": "aia" if from_aia else (facts.client.store if facts.client else None),
                      "aia_url": next((r.get("url") for r in facts.aia if r.get("ok")), None),
                      "sent_top_is_ca": ch.is_ca(sent_top), **unfetched})
    missing = ch.name_text(top.issuer)
    return Fault(Cause.INCOMPLETE_CHAIN,
                 f"The server sent {what}, stopping at {_cn(sent_top)!r}, without its issuer {missing!r}, which "
                 f"could not be found either ({why}); OpenSSL verify code {code}.",
                 {"missing_issuer": missing, "issuer_found": False, "sent_top_is_ca": ch.is_ca(sent_top), **unfetched})


# -- group 5: rules ------------------------------------------------------------------------

def _security_bits(kind: str, bits: int | None) -> int | None:
    if bits is None:
        return None
    if kind in ("RSA", "DSA"):
        for size, sec in ((15360, 256), (7680, 192), (3072, 128), (2048, 112), (1024, 80)):
            if bits >= size:
                return sec
        return 0
    if kind.startswith("EC"):
        return bits // 2
    return None


def _weak_faults(path: list[x509.Certificate], anchor: x509.Certificate | None, level: int,
                 code: int | None) -> list[Fault]:
    need = _LEVEL_BITS.get(level, 112)
    if need == 0:
        return []
    out: list[Fault] = []
    for i, cert in enumerate(path):
        kind, bits = ch.key_description(cert)
        sec = _security_bits(kind, bits)
        if sec is not None and sec < need:
            role = "the server's certificate" if i == 0 else "a CA certificate"
            out.append(Fault(Cause.WEAK_CRYPTO,
                             f"The client's security level {level} refuses {role} {_cn(cert)!r}: its {kind} key is "
                             f"{bits} bits (level {level} needs {need}-bit security, RSA 2048 or more)"
                             + (f"; OpenSSL verify code {code}." if code in (66, 67) else "."),
                             {"rule": "key size", "certificate": _subject(cert), "weakness": f"{kind} {bits}-bit key",
                              "security_level": level}))
        if cert is anchor or ch.is_self_issued(cert):
            continue  # a trust anchor's own signature is never checked (OpenSSL, check_sig_level)
        algo = (ch.signature_hash(cert) or "").lower()
        if algo and _HASH_BITS.get(algo, 256) < need:
            out.append(Fault(Cause.WEAK_CRYPTO,
                             f"The client's security level {level} refuses {_cn(cert)!r}: it is signed with "
                             f"{algo.upper()}, a broken digest" + (f"; OpenSSL verify code {code}." if code == 68 else "."),
                             {"rule": "signature digest", "certificate": _subject(cert),
                              "weakness": f"signed with {algo.upper()}", "security_level": level}))
    return out


_KU_TLS = ("digital_signature", "key_encipherment", "key_agreement")


def _purpose_faults(leaf: x509.Certificate, code: int | None) -> list[Fault]:
    out: list[Fault] = []
    eku = ch.extension(leaf, ExtensionOID.EXTENDED_KEY_USAGE)
    if eku is not None:
        usages = list(eku.value)
        if ExtendedKeyUsageOID.SERVER_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            names = ", ".join(getattr(u, "_name", None) or u.dotted_string for u in usages) or "none"
            out.append(Fault(Cause.INVALID_CHAIN,
                             f"The server's certificate {_cn(leaf)!r} is not for TLS servers: its extended key usage "
                             f"({names}) lacks serverAuth" + (f"; OpenSSL verify code {code}." if code == 26 else "."),
                             {"rule": "extended key usage (no serverAuth)", "certificate": _subject(leaf),
                              "extended_key_usage": names}))
    ku = ch.extension(leaf, ExtensionOID.KEY_USAGE)
    if ku is not None and not any(getattr(ku.value, name) for name in _KU_TLS):
        ca = ch.is_ca(leaf)
        out.append(Fault(Cause.INVALID_CHAIN,
                         f"The server presents {'a CA certificate' if ca else 'a certificate'} {_cn(leaf)!r} whose key "
                         "usage (" + ("certificate and CRL signing" if ca else "no digitalSignature/keyEncipherment")
                         + ") does not allow a TLS server" + (f"; OpenSSL verify code {code}." if code == 26 else "."),
                         {"rule": "key usage" + (" (a CA certificate presented as the server's)" if ca else ""),
                          "certificate": _subject(leaf)}))
    return out


def _issuer_faults(path: list[x509.Certificate], anchor: x509.Certificate | None) -> list[Fault]:
    out: list[Fault] = []
    non_self_issued_below = 0
    for i, cert in enumerate(path[1:], start=1):
        bc = ch.extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
        if bc is None or not bc.value.ca:
            out.append(Fault(Cause.INVALID_CHAIN,
                             f"{_cn(cert)!r} issues {_cn(path[i - 1])!r} but is not a CA (basicConstraints "
                             f"{'absent' if bc is None else 'CA:FALSE'}).",
                             {"rule": "basic constraints (an issuer that is not a CA)", "certificate": _subject(cert)}))
        elif bc.value.path_length is not None and non_self_issued_below > bc.value.path_length:
            out.append(Fault(Cause.INVALID_CHAIN,
                             f"{_cn(cert)!r} allows {bc.value.path_length} intermediate(s) below it (pathLenConstraint) "
                             f"but {non_self_issued_below} follow it in the chain.",
                             {"rule": "path length (basicConstraints pathLenConstraint)", "certificate": _subject(cert),
                              "path_length": bc.value.path_length, "intermediates_below": non_self_issued_below}))
        ku = ch.extension(cert, ExtensionOID.KEY_USAGE)
        if ku is not None and not ku.value.key_cert_sign:
            out.append(Fault(Cause.INVALID_CHAIN, f"{_cn(cert)!r} issues certificates but its key usage lacks keyCertSign.",
                             {"rule": "key usage (an issuer without keyCertSign)", "certificate": _subject(cert)}))
        if not ch.is_self_issued(cert):
            non_self_issued_below += 1
    return out


def _critical_extension_faults(path: list[x509.Certificate], anchor: x509.Certificate | None) -> list[Fault]:
    out: list[Fault] = []
    for cert in path:
        unknown = [oid for oid, critical, _ in ch.raw_extensions(cert)
                   if critical and oid not in OPENSSL_SUPPORTED_EXTENSIONS]
        if unknown:
            out.append(Fault(Cause.INVALID_CHAIN,
                             f"{_cn(cert)!r} carries a critical extension the client does not know ({', '.join(unknown[:3])}): "
                             "a client must reject such a certificate.",
                             {"rule": "unknown critical extension", "certificate": _subject(cert),
                              "extensions": unknown[:10]}))
    return out


def _dns_in(name: str, base: str) -> bool:
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _name_constraint_faults(path: list[x509.Certificate]) -> list[Fault]:
    out: list[Fault] = []
    for i, ca in enumerate(path[1:], start=1):
        try:
            nc = ch.extension(ca, ExtensionOID.NAME_CONSTRAINTS)
        except ch.Unreadable:
            continue
        if nc is None:
            continue
        permitted = list(nc.value.permitted_subtrees or ())
        excluded = list(nc.value.excluded_subtrees or ())
        p_dns = [g.value for g in permitted if isinstance(g, x509.DNSName)]
        e_dns = [g.value for g in excluded if isinstance(g, x509.DNSName)]
        p_ip = [g.value for g in permitted if isinstance(g, x509.IPAddress)]
        e_ip = [g.value for g in excluded if isinstance(g, x509.IPAddress)]
        for below in path[:i]:
            if below is not path[0] and ch.is_self_issued(below):
                continue
            dns = [n.split(":", 1)[1] for n in ch.sans(below) if n.startswith("DNS:")]
            ips = [n.split(":", 1)[1] for n in ch.sans(below) if n.startswith("IP:")]
            if below is path[0] and not dns and not ch.has_san_extension(below):
                dns = [cn for cn in ch.common_names(below.subject) if "." in cn and " " not in cn]
            for name in dns:
                if any(_dns_in(name, b) for b in e_dns):
                    out.append(_nc_fault(ca, below, name, "excluded", 48))
                elif p_dns and not any(_dns_in(name, b) for b in p_dns):
                    out.append(_nc_fault(ca, below, name, "permitted", 47))
            for text in ips:
                try:
                    ip = ipaddress.ip_address(text)
                except ValueError:
                    continue
                if any(ip in net for net in e_ip if net.version == ip.version):
                    out.append(_nc_fault(ca, below, text, "excluded", 48))
                elif p_ip and not any(ip in net for net in p_ip if net.version == ip.version):
                    out.append(_nc_fault(ca, below, text, "permitted", 47))
    return out[:5]


def _nc_fault(ca: x509.Certificate, cert: x509.Certificate, name: str, which: str, code: int) -> Fault:
    where = "outside the names it permits" if which == "permitted" else "among the names it excludes"
    return Fault(Cause.INVALID_CHAIN,
                 f"The CA {_cn(ca)!r} constrains the names it may certify, and {_cn(cert)!r} carries {clip(name, 200)!r}, "
                 f"{where} (name constraints; OpenSSL verify code {code}).",
                 {"rule": f"name constraints ({which} subtrees)", "certificate": _subject(cert),
                  "constraining_ca": _subject(ca), "name": clip(name, 256)})


# -- group 6: time ------------------------------------------------------------------------

def _time_faults(facts: ChainFacts, now: datetime, code: int | None) -> list[Fault]:
    path = facts.client_path()
    from_store = set(facts.client.from_store) if facts.client is not None else set()
    anchor = facts.client.anchor if facts.client is not None else None
    expired = [c for c in path if ch.not_after(c) < now]
    future = [c for c in path if ch.not_before(c) > now]
    out: list[Fault] = []
    if expired:
        items = []
        for c in expired:
            whose = "client_store" if (c is anchor or c in from_store) and c not in facts.certs else "server"
            role = "the leaf" if c is facts.leaf else ("the root in the client's store" if whose == "client_store"
                                                      else "a CA the server sends")
            item = {"certificate": _subject(c), "name": _cn(c), "not_after": ch.not_after(c).isoformat(),
                    "whose": whose, "role": role, "is_ca": ch.is_ca(c)}
            if whose == "client_store":
                successor = _successor(facts.reference_store, c, now)
                item["successor_in_reference_store"] = successor is not None
                if successor is not None:
                    item["successor_not_after"] = ch.not_after(successor).isoformat()
            items.append(item)
        first = expired[0]
        named = "; ".join(f"{i['name']!r} ({i['role']}) expired on {_when(ch.not_after(c), now)}"
                          for i, c in zip(items[:5], expired[:5]))
        out.append(Fault(Cause.CERT_EXPIRED,
                         f"{len(expired)} certificate(s) of the chain have expired: {named}"
                         + (f"; OpenSSL verify code {code}." if code == V_EXPIRED else "."),
                         {"expired": items[:20],
                          "expired_subject": f"The certificate {_subject(first)!r}",
                          "expired_is_ca": ch.is_ca(first),
                          "expired_in_client_store": any(i["whose"] == "client_store" for i in items),
                          "expired_in_server_chain": any(i["whose"] == "server" for i in items),
                          "expired_not_after": ch.not_after(first).isoformat()}))
    if future:
        c = future[0]
        out.append(Fault(Cause.CERT_NOT_YET_VALID,
                         f"The certificate {_cn(c)!r} is not valid until {_when(ch.not_before(c), now)} (local clock: "
                         f"{now.isoformat(timespec='seconds')})" + (f"; OpenSSL verify code {code}." if code == V_NOT_YET_VALID else "."),
                         {"future_subject": f"the certificate {_subject(c)!r}",
                          "not_before": ch.not_before(c).isoformat(), "local_clock": now.isoformat()}))
    return out


def _successor(store: ch.TrustStore | None, expired: x509.Certificate, now: datetime) -> x509.Certificate | None:
    """A valid re-issue of an expired store certificate in the reference store: same subject, same key
    (what a CA's renewed root is, so the chain under it verifies once the client's store has it)."""
    if store is None:
        return None
    pin = ch.spki_pin(expired)
    for c in store.by_subject.get(expired.subject, []):
        if c != expired and ch.not_before(c) <= now <= ch.not_after(c) and ch.spki_pin(c) == pin:
            return c
    return None


# -- group 7: pins ------------------------------------------------------------------------

def _pin_faults(facts: ChainFacts, pins: Sequence[str]) -> list[Fault]:
    if not pins:
        return []
    chain_pins = [f"sha256/{ch.spki_pin(c)}" for c in facts.client_path()]
    wanted = {p.strip() for p in pins}
    if wanted.intersection(chain_pins):
        return []
    return [Fault(Cause.PIN_MISMATCH, f"None of the chain's {len(set(chain_pins))} keys matches the "
                                      f"{len(wanted)} configured pin(s).",
                  {"chain_pins": list(dict.fromkeys(chain_pins))[:10], "pins": sorted(wanted)})]


# --- handshake-level failures -------------------------------------------------------

def classify_handshake_failure(first: ProbeResult, probes: Sequence[ProbeResult], *, host: str,
                               tls_min: str, tls_max: str, client_cert_supplied: bool,
                               client_ciphers: frozenset[str] = frozenset()) -> Verdict:
    """A handshake failed before certificate checks: the table, then the extra probes, decide."""
    reason = first.reason or ""
    mapped = table.reason_entry(reason)
    by_label = {p.label: p for p in probes}
    extra: dict[str, Any] = {}
    if reason and mapped is None and first.error_kind not in (RESET, POST_HANDSHAKE):
        extra["unmapped"] = {"reason": reason, "message": clip(first.message or "", 300)}

    def verdict(cause: Cause, summary: str, details: dict[str, Any] | None = None) -> Verdict:
        return Verdict(cause, summary, {**extra, **(details or {})})

    if first.error_kind == POST_HANDSHAKE or mapped is Cause.CLIENT_CERT_REQUIRED:
        return verdict(Cause.CLIENT_CERT_REQUIRED,
                       f"The server completed the {first.protocol or 'TLS'} handshake, then rejected the connection for want "
                       f"of a client certificate ({reason or first.post_handshake}).",
                       {"client_cert_supplied": client_cert_supplied})
    if client_cert_supplied and mapped == table.CLIENT_CERT:
        return verdict(Cause.CLIENT_CERT_REQUIRED,
                       f"The server rejected the client certificate that was supplied ({reason}).",
                       {"client_cert_supplied": True})
    if mapped is Cause.NOT_TLS:
        return verdict(Cause.NOT_TLS, f"The peer answered the ClientHello with something that is not TLS ({reason}): "
                                      "plain HTTP or another protocol listens on this port.")
    if mapped is Cause.WEAK_CRYPTO:
        rule = table.REASON_RULES.get(reason, reason)
        parameter = "the server's DHE group" if reason == "DH_KEY_TOO_SMALL" else None
        return verdict(Cause.WEAK_CRYPTO,
                       f"The client's security level refuses the server's parameters: {rule} (OpenSSL reason {reason}).",
                       {"rule": rule, "parameter": parameter, "certificate": None})
    if mapped is Cause.INVALID_CHAIN:
        rule = table.REASON_RULES.get(reason, reason)
        return verdict(Cause.INVALID_CHAIN,
                       f"The client refuses the server's certificate message: {rule} (OpenSSL reason {reason}); the "
                       "chain could not be read.",
                       {"rule": rule, "certificate": "the server's certificate message"})
    sni = by_label.get("with_sni")
    if sni is not None and sni.ok:
        return verdict(Cause.SNI_REQUIRED,
                       f"The server rejects the handshake {('without SNI' if first.settings.get('sni') is None else 'with SNI ' + repr(first.settings.get('sni')))} "
                       f"({reason or first.error_kind}) and accepts it with SNI {host!r} ({sni.protocol}).",
                       {"sni_probe": "accepted"})
    cert = by_label.get("dummy_client_cert")
    if cert is not None and (cert.ok or (cert.reason in CLIENT_CERT_REJECTED_REASONS and cert.reason != reason)):
        return verdict(Cause.CLIENT_CERT_REQUIRED,
                       f"The server fails the handshake without a client certificate ({reason or first.error_kind}) and "
                       f"answers differently when offered one ({'accepted' if cert.ok else cert.reason}): it demands mutual TLS.",
                       {"client_cert_supplied": client_cert_supplied})
    versions = by_label.get("any_version")
    ciphers = by_label.get("any_cipher")
    if ciphers is not None and ciphers.ok:
        if client_ciphers and ciphers.cipher in client_ciphers and _version_in_range(ciphers.protocol, tls_min, tls_max):
            # The suite is in the client's list: what the widened probe changed was the security level.
            return verdict(Cause.WEAK_CRYPTO,
                           f"The handshake fails with the client's settings ({reason or first.error_kind}) and succeeds "
                           f"at security level 0 with {ciphers.cipher}, a suite the client's list contains: the client's "
                           "security level refuses the server's key or parameters.",
                           {"rule": "security level", "parameter": f"{ciphers.cipher} on {ciphers.protocol}",
                            "server_cipher": ciphers.cipher, "certificate": None})
        return verdict(Cause.CIPHER_MISMATCH,
                       f"The handshake fails with the client's cipher list ({reason or first.error_kind}); with every cipher "
                       f"allowed the server picks {ciphers.cipher} on {ciphers.protocol}, which the client's list excludes.",
                       {"server_cipher": ciphers.cipher, "server_version": ciphers.protocol})
    if versions is not None and versions.ok:
        in_range = _version_in_range(versions.protocol, tls_min, tls_max)
        if not in_range:
            allowed = f"only TLS {tls_min}" if tls_min == tls_max else f"TLS {tls_min}–{tls_max}"
            return verdict(Cause.PROTOCOL_VERSION_MISMATCH,
                           f"The client allows {allowed}; the server refused that range ({reason or first.error_kind}) "
                           f"and negotiates {versions.protocol} when allowed: the two ranges do not overlap.",
                           {"server_version": versions.protocol})
        return verdict(Cause.CIPHER_MISMATCH,
                       f"The handshake fails with the client's settings ({reason}) and succeeds on {versions.protocol} with "
                       f"{versions.cipher} once every cipher is allowed: no cipher suite is shared.",
                       {"server_cipher": versions.cipher, "server_version": versions.protocol})
    if mapped is Cause.PROTOCOL_VERSION_MISMATCH:
        return verdict(Cause.PROTOCOL_VERSION_MISMATCH,
                       f"The server refused the client's TLS {tls_min}–{tls_max} range ({reason}); "
                       + ("no wider range was accepted either." if versions is not None else
                          "no probe with a wider range was made (see skipped_probes), so the server's own range "
                          "is not known."),
                       {})
    if first.error_kind == RESET or mapped is Cause.CONNECTION_RESET:
        return verdict(Cause.CONNECTION_RESET,
                       f"The connection was closed during the handshake with no TLS alert ({reason or 'reset'}), whatever "
                       "SNI, ciphers or versions were offered: something on the path drops the ClientHello.")
    if mapped is Cause.SNI_REQUIRED:
        sent = first.settings.get("sni")
        refused_right = sent == host or (sni is not None and not sni.ok)
        if refused_right and not is_ip(host):
            # The right name itself is refused: the server does not serve it (a typo, another
            # environment or region, or a name its configuration lacks), not a missing SNI.
            tried = f"{sent!r}" if sent == host else (f"{sent!r}, and {host!r} too" if sent else f"none, and {host!r} too")
            return verdict(Cause.SNI_REQUIRED,
                           f"The server refuses the handshake for the name {host!r} ({reason}; SNI sent: {tried}): "
                           "it is not configured to serve this host name.",
                           {"sent_sni": sent, "name_not_served": host})
        if sent is None:
            return verdict(Cause.SNI_REQUIRED,
                           f"The server rejects a handshake without SNI ({reason}): it needs the host name in the "
                           "ClientHello" + (", and a client connecting to an IP address sends none" if is_ip(host) else "")
                           + ".", {"sent_sni": None})
        return verdict(Cause.SNI_REQUIRED,
                       f"The server does not recognise the name {sent!r} sent as SNI ({reason}).", {"sent_sni": sent})
    if mapped is None:
        return verdict(Cause.CIPHER_MISMATCH,
                       f"The handshake failed with OpenSSL reason {reason or first.error_kind!r}, which cxhealth's table "
                       "does not map to a cause (evidence.unmapped); no variant tried (SNI, a client certificate, every "
                       "cipher, every version) was accepted, so the parameters the two sides offer do not meet.",
                       {"unmapped_fallback": True})
    return verdict(Cause.CIPHER_MISMATCH,
                   f"The server refused every ClientHello variant tried ({reason or first.error_kind}): it shares no cipher "
                   "suite or parameters with the client, even widened.")


def _version_in_range(protocol: str | None, lo: str, hi: str) -> bool:
    order = {"TLSv1": 1.0, "TLSv1.1": 1.1, "TLSv1.2": 1.2, "TLSv1.3": 1.3}
    if protocol not in order:
        return False
    return float(lo) <= order[protocol] <= float(hi)


# --- success-path checks and warnings --------------------------------------------------

def classify_success(facts: ChainFacts, *, host: str, pins: Sequence[str], expect_issuers: Sequence[str],
                     hostname_checked: bool, verified: Sequence[x509.Certificate],
                     client_cert: Fault | None = None) -> Verdict:
    """The handshake verified: what the client's own checks (name without SNI, issuer, pins) and the
    server's answer to a client without a certificate add, in contract §1's precedence."""
    names = list(dict.fromkeys(facts.ca_names() + [ch.full_name(c.subject) for c in verified]))
    product = match_inspection(names)
    faults: list[Fault] = []
    if client_cert is not None:
        faults.append(client_cert)
    if not hostname_checked and ch.hostname_matches(facts.leaf, host) is False:
        sans = list(ch.sans(facts.leaf))
        faults.append(Fault(Cause.HOSTNAME_MISMATCH,
                            f"The chain verifies, but the certificate's names ({clip(', '.join(sans[:4]) or 'no SAN', 300)}) "
                            f"do not cover {host}.", {"sans": sans[:20]}))
    if product and product[0].kind == "compromised":
        # The handshake verified only because the client trusts a root whose private key is public
        # (Superfish, eDellRoot, …): anyone can mint a certificate for any host under it, so a
        # verified handshake proves nothing. A failure, not a warning: "ok" would be a lie.
        faults.append(Fault(Cause.PROXY_INTERCEPTION,
                            f"The chain verifies only because the client trusts {clip(product[1], 200)!r} "
                            f"({product[0].name}), a root whose private key is public: anyone can impersonate any "
                            "server to this client.",
                            {"inspection_ca": clip(product[1], 200), "product": product[0].name,
                             "bypass_hint": product[0].bypass_hint, "product_kind": product[0].kind,
                             "remove_root": True, "trusted_by_client": True}))
    if expect_issuers and not expected_issuer_found(names, expect_issuers):
        issuer = ch.name_text(facts.leaf.issuer)
        faults.append(Fault(Cause.PROXY_INTERCEPTION,
                            f"The chain verifies, but it is issued by {issuer!r}, not by the expected issuer "
                            f"({', '.join(expect_issuers)}): a device the client trusts is re-signing the connection"
                            + (f" ({product[0].name})" if product else "") + ".",
                            {"expected_issuers": list(expect_issuers), "issuer": issuer,
                             **({"product": product[0].name, "bypass_hint": product[0].bypass_hint,
                                 "product_kind": product[0].kind, "remove_root": product[0].must_be_removed}
                                if product else {})}))
    if pins:
        chain_pins = [f"sha256/{ch.spki_pin(c)}" for c in list(facts.certs) + list(verified)]
        wanted = {p.strip() for p in pins}
        if not wanted.intersection(chain_pins):
            if product:
                faults.append(Fault(Cause.PROXY_INTERCEPTION,
                                    f"No certificate matches the pins, and the chain comes from an inspection CA "
                                    f"({product[0].name}: {clip(product[1], 200)!r}).",
                                    {"product": product[0].name, "bypass_hint": product[0].bypass_hint,
                                     "product_kind": product[0].kind, "remove_root": product[0].must_be_removed}))
            faults.append(Fault(Cause.PIN_MISMATCH,
                                f"The chain verifies, but none of its {len(set(chain_pins))} keys matches the "
                                f"{len(wanted)} configured pin(s).",
                                {"chain_pins": list(dict.fromkeys(chain_pins))[:10], "pins": sorted(wanted)}))
    if not faults:
        return Verdict(Cause.OK, "")
    return decide(faults)


def client_cert_refusal(status_line: str | None, body: str, error: dict[str, Any] | None, *,
                        protocol: str | None, supplied: bool) -> Fault | None:
    """The server asked for a client certificate, completed the handshake, and then: did it refuse
    the first request? (nginx answers ``400 No required SSL certificate was sent`` or ``400 The SSL
    certificate error``; others close the connection or send an alert.)"""
    if error is not None:
        if error.get("error_kind") == "timeout":
            return None  # no answer is no evidence either way
        reason = error.get("reason") or error.get("error_kind")
        return Fault(Cause.CLIENT_CERT_REQUIRED,
                     f"The server asked for a client certificate during the {protocol or 'TLS'} handshake, completed it "
                     f"{'with the one supplied' if supplied else 'without one'}, and then closed the connection on the "
                     f"first request ({reason}).",
                     {"client_cert_supplied": supplied, "certificate_request": True, "first_request": reason})
    if not status_line:
        return None
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    lowered = body.lower()
    says_cert = "ssl certificate" in lowered or "client certificate" in lowered or "certificate" in lowered
    if status in (495, 496) or (status in (400, 401, 403) and says_cert):
        line = next((ln.strip() for ln in body.splitlines() if "certificate" in ln.lower()), "")
        line = _strip_tags(line)
        return Fault(Cause.CLIENT_CERT_REQUIRED,
                     f"The server asked for a client certificate during the {protocol or 'TLS'} handshake and completed "
                     f"it {'with the one supplied' if supplied else 'without one'}, but refuses the first request: "
                     f"{clip(status_line, 100)}" + (f" ({clip(line, 200)})" if line else "") + ".",
                     {"client_cert_supplied": supplied, "certificate_request": True,
                      "first_request": clip(status_line, 100), "server_says": clip(line, 200) or None})
    return None


def _strip_tags(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", " ", text).strip()


def collect_warnings(*, certs: Sequence[x509.Certificate], verified: Sequence[x509.Certificate], now: datetime,
                     soon_days: int, tls12_only: bool, handshake_verified: bool,
                     names_for_inspection: Sequence[str], certificate_requested: bool = False,
                     client_cert_supplied: bool = False, host: str | None = None) -> list[Finding]:
    out: list[Finding] = []
    everything = list(dict.fromkeys(list(certs) + list(verified)))  # certificates compare by their DER
    horizon = now + timedelta(days=soon_days)
    for c in everything:
        if now <= ch.not_after(c) < horizon:
            out.append(Finding(WarningCode.CERT_EXPIRING_SOON.value,
                               f"{_cn(c)!r} expires on {_when(ch.not_after(c), now)}."))
    for c in certs:  # what the server sent; a store's own root self-signature is never checked
        algo = ch.signature_hash(c)
        if algo and algo.lower() in WEAK_HASHES:
            out.append(Finding(WarningCode.WEAK_SIGNATURE.value,
                               f"{_cn(c)!r} is signed with {algo.upper()}, which is broken for signatures."))
    if handshake_verified:
        found = match_inspection(names_for_inspection)
        if found:
            product, name = found
            if product.kind == "compromised":
                pass  # the cause itself (classify_success): a root whose private key is public
            elif product.must_be_removed:
                out.append(Finding(WarningCode.PROXY_INTERCEPTION.value,
                                   f"The handshake verified only because the client trusts {clip(name, 200)!r} "
                                   f"({product.name}), a {'root whose private key is public' if product.kind == 'compromised' else 'debugging proxy root'}: "
                                   f"remove it — {product.bypass_hint}."))
            else:
                out.append(Finding(WarningCode.PROXY_INTERCEPTION.value,
                                   f"The handshake verified, but the chain comes from the inspection CA {clip(name, 200)!r} "
                                   f"({product.name}) that the client trusts: traffic is decrypted in the path."))
        if len(verified) > 2 and ch.is_self_issued(verified[-1]):
            # intermediates the client's store supplied; a sent copy of one (same name and key, another
            # issuer: a cross-sign) counts as sent
            omitted = [c for c in verified[1:-1] if c not in certs]
            if omitted:
                sent_keys = {(c.subject, ch.spki_pin(c)) for c in certs}
                omitted = [c for c in omitted if (c.subject, ch.spki_pin(c)) not in sent_keys]
            if omitted:
                out.append(Finding(WarningCode.INCOMPLETE_CHAIN.value,
                                   f"The server does not send its intermediate {clip(ch.name_text(omitted[0].subject), 300)!r}"
                                   + (f" (and {len(omitted) - 1} more)" if len(omitted) > 1 else "")
                                   + ": the handshake verified only because this client's store holds it; clients "
                                     "without it fail (unable to get local issuer certificate). The server must send "
                                     "its full chain."))
        if certs and not ch.has_san_extension(certs[0]):
            out.append(Finding(WarningCode.NO_SAN.value,
                               f"The leaf {_cn(certs[0])!r} has no subjectAltName: the host matched its subject CN, which "
                               "Chrome, Go and Java reject; reissue it with the host name in the SAN."))
        if certificate_requested and not client_cert_supplied:
            out.append(Finding(WarningCode.CLIENT_CERT_REQUESTED.value,
                               "The server asked for a client certificate (CertificateRequest) and went on without one: "
                               "mutual TLS is optional here."))
    if tls12_only:
        out.append(Finding(WarningCode.TLS12_ONLY_POLICY.value,
                           "The client policy caps at TLS 1.2: gateways that move clusters to TLS 1.3-only will fail "
                           "downstream calls; allow TLS 1.3 (tls_max = \"1.3\")."))
    return out
