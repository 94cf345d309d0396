"""Evidence -> one cause: pure functions, no I/O (sslyze's split).

The engine (engine.py) runs the probes and gathers evidence; everything here
only reads it. The OpenSSL reason and verify-code tables are the project's
single record of what each error means (platform-facts.md, "OpenSSL evidence").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from cryptography import x509

from . import chain as ch
from .inspection import InspectionProduct, match_inspection
from .model import Cause, Finding, WarningCode, is_ip
from .proxy import PROXY_KINDS
from .proxy_causes import proxy_verdict
from .probe import (DNS_FAILURE, HANDSHAKE_TIMEOUT, POST_HANDSHAKE, RESET, TCP_ERROR, TCP_REFUSED,
                    TCP_TIMEOUT, ProbeResult)

# OpenSSL handshake reasons (Python 3.11, OpenSSL 3.0).
NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
                             "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL",
                             "RECORD_LENGTH_MISMATCH", "BAD_PACKET_LENGTH", "WRONG_SSL_VERSION"})
VERSION_REASONS = frozenset({"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE",
                             "UNKNOWN_SSL_VERSION", "VERSION_TOO_LOW", "VERSION_TOO_HIGH",
                             "TLSV1_ALERT_INAPPROPRIATE_FALLBACK"})
SNI_REASONS = frozenset({"TLSV1_UNRECOGNIZED_NAME", "SSLV3_ALERT_UNRECOGNIZED_NAME", "TLSV1_ALERT_UNRECOGNIZED_NAME"})
CLIENT_CERT_REQUIRED_REASONS = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE"})
# Alerts a server sends when it rejects a client certificate it was given.
CLIENT_CERT_REJECTED_REASONS = frozenset({"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                                          "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_ACCESS_DENIED",
                                          "TLSV1_ALERT_DECRYPT_ERROR", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
                                          "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED",
                                          "TLSV13_ALERT_CERTIFICATE_REQUIRED"})

# X509 verify codes (include/openssl/x509_vfy.h).
V_EXPIRED = 10
V_NOT_YET_VALID = 9
V_HOSTNAME = 62
V_IP = 64
V_EMAIL = 63
V_SELF_SIGNED_LEAF = 18
V_CHAIN_CODES = frozenset({2, 19, 20, 21, 27})
V_WEAK = {66: "EE_KEY_TOO_SMALL", 67: "CA_KEY_TOO_SMALL", 68: "CA_MD_TOO_WEAK"}

WEAK_HASHES = frozenset({"sha1", "md5", "md2", "md4"})


@dataclass(frozen=True)
class Verdict:
    cause: Cause
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


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
        return names[0].split(":", 1)[1]
    return ch.name_text(cert.subject) or f"serial {cert.serial_number:x}"


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
        return Verdict(Cause.HANDSHAKE_TIMEOUT, f"TCP to {first.address}:{port} is up, but no TLS answer came within {timeout:g} s.")
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

    @property
    def leaf(self) -> x509.Certificate:
        return self.certs[0]

    def ca_names(self) -> list[str]:
        """Subjects of the CAs in the chain (sent, anchors found) and the issuers named."""
        names: list[str] = []
        for cert in self.certs:
            names.append(ch.name_text(cert.issuer))
            if cert is not self.leaf or ch.is_ca(cert):
                names.append(ch.name_text(cert.subject))
        for path in (self.client, self.reference):
            if path is not None and path.anchor is not None:
                names.append(ch.name_text(path.anchor.subject))
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


def inspection_match(facts: ChainFacts) -> tuple[InspectionProduct, str] | None:
    return match_inspection(facts.ca_names())


def expected_issuer_found(names: Sequence[str], expect: Sequence[str]) -> bool:
    lowered = [n.lower() for n in names]
    return any(e.lower() in n for e in expect for n in lowered)


def classify_verify_failure(first: ProbeResult, facts: ChainFacts, *, host: str, now: datetime,
                            expect_issuers: Sequence[str]) -> Verdict:
    """A verified handshake failed on the certificate: name the root cause."""
    code = first.verify_code
    msg = first.verify_message or "certificate verify failed"
    certs = facts.certs
    product = inspection_match(facts)

    if code == V_EXPIRED or (code is None and any(ch.not_after(c) < now for c in certs)):
        anchors = [p.anchor for p in (facts.client,) if p is not None and p.anchor is not None]
        expired = [c for c in list(certs) + anchors if ch.not_after(c) < now]
        if expired:
            c = expired[0]
            in_store = c in anchors and c not in certs
            return Verdict(Cause.CERT_EXPIRED,
                           f"The certificate {_cn(c)!r} ({'the leaf' if c is certs[0] else 'a CA in the chain'}) "
                           f"expired on {_when(ch.not_after(c), now)}; OpenSSL verify code {code}: {msg}.",
                           {"expired_subject": f"The certificate {ch.name_text(c.subject)!r}",
                            "expired_is_ca": ch.is_ca(c), "expired_in_client_store": in_store,
                            "expired_not_after": ch.not_after(c).isoformat()})
        return Verdict(Cause.CERT_EXPIRED, f"A certificate in the chain has expired (OpenSSL verify code {code}: {msg}).")
    if code == V_NOT_YET_VALID:
        future = [c for c in certs if ch.not_before(c) > now]
        c = future[0] if future else certs[0]
        return Verdict(Cause.CERT_NOT_YET_VALID,
                       f"The certificate {_cn(c)!r} is not valid until {_when(ch.not_before(c), now)} (local clock: "
                       f"{now.isoformat(timespec='seconds')}); OpenSSL verify code {code}.",
                       {"future_subject": f"the certificate {ch.name_text(c.subject)!r}",
                        "not_before": ch.not_before(c).isoformat(), "local_clock": now.isoformat()})
    if code in (V_HOSTNAME, V_IP, V_EMAIL):
        sans = list(ch.sans(facts.leaf))
        return Verdict(Cause.HOSTNAME_MISMATCH,
                       f"The certificate's names ({', '.join(sans[:4]) or 'no SAN'}) do not cover {host}; OpenSSL verify code {code}.",
                       {"sans": sans})
    if code == V_SELF_SIGNED_LEAF or (len(certs) == 1 and ch.is_self_issued(certs[0]) and not _completes(facts)):
        if product:
            return _interception(product, facts, code, msg)
        return Verdict(Cause.SELF_SIGNED,
                       f"The server's certificate {_cn(certs[0])!r} is self-signed (issuer = subject) and no store trusts it; "
                       f"OpenSSL verify code {code}: {msg}.",
                       {"top_subject": ch.name_text(certs[0].subject)})
    # Code 20 & co: one code, four root causes (platform-facts.md). Tell them apart.
    if product:
        return _interception(product, facts, code, msg)
    if expect_issuers and not expected_issuer_found(facts.ca_names(), expect_issuers):
        top = facts.certs[-1]
        return Verdict(Cause.PROXY_INTERCEPTION,
                       f"The chain is issued by {ch.name_text(top.issuer)!r}, not by the expected issuer "
                       f"({', '.join(expect_issuers)}), and does not verify: the connection is being re-signed by an "
                       f"intercepting device; OpenSSL verify code {code}.",
                       {"expected_issuers": list(expect_issuers), "issuer": ch.name_text(top.issuer)})
    client, ref = facts.client, facts.reference
    if client is not None and client.complete:
        if client.used_fetched:  # the client's own store completes it once AIA supplies the intermediate
            return _incomplete(facts, client, code)
        # Our path building completes it, OpenSSL did not: a policy rejection (weak hash or key, purpose, ...).
        return _policy_rejection(facts, client, code, msg)
    if ref is not None and ref.complete:
        if ref.used_fetched or ref.from_store:
            # What is missing is an intermediate (fetched via AIA, or held by the reference store),
            # not a root: the server omits it; the client's store is not the problem.
            return _incomplete(facts, ref, code)
        anchor = ch.name_text(ref.anchor.subject) if ref.anchor is not None else None
        return Verdict(Cause.STALE_TRUST_STORE,
                       f"The chain verifies against the up-to-date reference store (root {anchor!r}) but not against the "
                       f"client's store, which lacks that root; OpenSSL verify code {code}: {msg}.",
                       {"anchor": anchor})
    sent_path = [c for c in (client.path if client is not None else certs) if c in certs]
    top = sent_path[-1] if sent_path else certs[-1]
    urls = ch.aia_ca_issuers(top)
    if not ch.is_self_issued(top) and not ch.is_ca(top) and urls:
        # The server sent its leaf alone, and the leaf names where its issuer is published
        # (as public CAs do) but it could not be fetched here: an omitted intermediate.
        # A lone leaf without an AIA URL is more often signed directly by a private root.
        why = "AIA disabled (--no-aia)" if not facts.aia_enabled else "the AIA fetch failed"
        return Verdict(Cause.INCOMPLETE_CHAIN,
                       f"The server sent only its leaf {_cn(top)!r}, without its issuer {ch.name_text(top.issuer)!r}; "
                       f"the chain cannot be completed here ({why}); OpenSSL verify code {code}.",
                       {"missing_issuer": ch.name_text(top.issuer), "aia_url_unfetched": urls[0]})
    return Verdict(Cause.UNTRUSTED_ROOT,
                   f"The chain ends at {_cn(top)!r}"
                   + (" (a self-signed root)" if ch.is_self_issued(top) else f", issued by {ch.name_text(top.issuer)!r}")
                   + f", which neither the client's store nor the reference store trusts (a private CA); OpenSSL verify code {code}: {msg}.",
                   {"top_subject": ch.name_text(top.subject)})


def _policy_rejection(facts: ChainFacts, path: ch.PathResult, code: int | None, msg: str) -> Verdict:
    """The chain links to a trusted root, yet OpenSSL rejects it: name the certificate its policy refuses."""
    root = ch.name_text(path.anchor.subject) if path.anchor is not None else "?"
    sent = [c for c in path.path if c in facts.certs]
    weak = None
    if code == 68:  # CA_MD_TOO_WEAK: a signature with a broken hash
        weak = next((c for c in sent if (ch.signature_hash(c) or "").lower() in WEAK_HASHES), None)
        what = f"it is signed with {(ch.signature_hash(weak) or '').upper()}" if weak is not None else ""
    elif code in (66, 67):  # EE_KEY_TOO_SMALL / CA_KEY_TOO_SMALL
        weak = next((c for c in sent if (ch.rsa_bits(c) or 4096) < 2048 and ch.is_ca(c) == (code == 67)), None)
        what = f"its key is {ch.rsa_bits(weak)} bits" if weak is not None else ""
    if weak is not None:
        return Verdict(Cause.UNTRUSTED_ROOT,
                       f"The client refuses {_cn(weak)!r}: {what}, below the client's security level (OpenSSL verify "
                       f"code {code}: {msg}); otherwise the chain links to the trusted root {root!r}.",
                       {"weak_subject": ch.name_text(weak.subject), "weakness": what, "anchor": root})
    return Verdict(Cause.UNTRUSTED_ROOT,
                   f"OpenSSL rejects the chain ({msg}, verify code {code}) although it links to the trusted root "
                   f"{root!r}: a certificate in it is not acceptable to the client's policy.",
                   {"top_subject": ch.name_text(sent[-1].subject) if sent else None, "anchor": root})


def _completes(facts: ChainFacts) -> bool:
    return any(p is not None and p.complete for p in (facts.client, facts.reference))


def _incomplete(facts: ChainFacts, path: ch.PathResult, code: int | None) -> Verdict:
    """The server omitted an intermediate that AIA or the reference store supplies."""
    sent = [c for c in path.path if c in facts.certs]
    sent_top = sent[-1] if sent else facts.certs[-1]
    missing = [c for c in path.path if c not in facts.certs]
    anchor = ch.name_text(path.anchor.subject) if path.anchor is not None else None
    urls = [r["url"] for r in facts.aia if r.get("ok")]
    if path.used_fetched:
        how = f"with the intermediate fetched via AIA ({urls[0] if urls else '?'})"
    else:
        how = f"with the intermediate that the {path.store} holds ({', '.join(_cn(c) for c in missing) or '?'})"
    return Verdict(Cause.INCOMPLETE_CHAIN,
                   f"The server sent {len(facts.certs)} certificate(s), stopping at {_cn(sent_top)!r} without its issuer "
                   f"{ch.name_text(sent_top.issuer)!r}; {how}, the chain completes to the root {anchor!r}: the server "
                   f"omits an intermediate; OpenSSL verify code {code}.",
                   {"missing_issuer": ch.name_text(sent_top.issuer),
                    "aia_url": urls[0] if (urls and path.used_fetched) else None,
                    "intermediate_source": "aia" if path.used_fetched else path.store, "anchor": anchor})


def _interception(found: tuple[InspectionProduct, str], facts: ChainFacts, code: int | None, msg: str) -> Verdict:
    product, name = found
    return Verdict(Cause.PROXY_INTERCEPTION,
                   f"The certificate was minted by a TLS-inspecting proxy ({product.name}: {name!r}) that the client does "
                   f"not trust; OpenSSL verify code {code}: {msg}.",
                   {"product": product.name, "bypass_hint": product.bypass_hint, "inspection_ca": name})


# --- handshake-level failures -------------------------------------------------------

def classify_handshake_failure(first: ProbeResult, probes: Sequence[ProbeResult], *, host: str,
                               tls_min: str, tls_max: str, client_cert_supplied: bool) -> Verdict:
    """A handshake failed before certificate checks: decide from the extra probes."""
    reason = first.reason or ""
    by_label = {p.label: p for p in probes}
    if first.error_kind == POST_HANDSHAKE or reason in CLIENT_CERT_REQUIRED_REASONS:
        return Verdict(Cause.CLIENT_CERT_REQUIRED,
                       f"The server completed the {first.protocol or 'TLS'} handshake, then rejected the connection for want "
                       f"of a client certificate ({reason or first.post_handshake}).",
                       {"client_cert_supplied": client_cert_supplied})
    if client_cert_supplied and reason in CLIENT_CERT_REJECTED_REASONS:
        return Verdict(Cause.CLIENT_CERT_REQUIRED,
                       f"The server rejected the client certificate that was supplied ({reason}).",
                       {"client_cert_supplied": True})
    if reason in NOT_TLS_REASONS:
        return Verdict(Cause.NOT_TLS, f"The peer answered the ClientHello with something that is not TLS ({reason}): "
                                      "plain HTTP or another protocol listens on this port.")
    sni = by_label.get("with_sni")
    if sni is not None and sni.ok:
        return Verdict(Cause.SNI_REQUIRED,
                       f"The server rejects the handshake {('without SNI' if first.settings.get('sni') is None else 'with SNI ' + repr(first.settings.get('sni')))} "
                       f"({reason or first.error_kind}) and accepts it with SNI {host!r} ({sni.protocol}).",
                       {"sni_probe": "accepted"})
    cert = by_label.get("dummy_client_cert")
    if cert is not None and (cert.ok or (cert.reason in CLIENT_CERT_REJECTED_REASONS and cert.reason != reason)):
        return Verdict(Cause.CLIENT_CERT_REQUIRED,
                       f"The server fails the handshake without a client certificate ({reason or first.error_kind}) and "
                       f"answers differently when offered one ({'accepted' if cert.ok else cert.reason}): it demands mutual TLS.",
                       {"client_cert_supplied": client_cert_supplied})
    versions = by_label.get("any_version")
    ciphers = by_label.get("any_cipher")
    if ciphers is not None and ciphers.ok:
        return Verdict(Cause.CIPHER_MISMATCH,
                       f"The handshake fails with the client's cipher list ({reason or first.error_kind}); with every cipher "
                       f"allowed the server picks {ciphers.cipher} on {ciphers.protocol}, which the client's list excludes.",
                       {"server_cipher": ciphers.cipher, "server_version": ciphers.protocol})
    if versions is not None and versions.ok:
        in_range = _version_in_range(versions.protocol, tls_min, tls_max)
        if not in_range:
            allowed = f"only TLS {tls_min}" if tls_min == tls_max else f"TLS {tls_min}–{tls_max}"
            return Verdict(Cause.PROTOCOL_VERSION_MISMATCH,
                           f"The client allows {allowed}; the server refused that range ({reason or first.error_kind}) "
                           f"and negotiates {versions.protocol} when allowed: the two ranges do not overlap.",
                           {"server_version": versions.protocol})
        return Verdict(Cause.CIPHER_MISMATCH,
                       f"The handshake fails with the client's settings ({reason}) and succeeds on {versions.protocol} with "
                       f"{versions.cipher} once every cipher is allowed: no cipher suite is shared.",
                       {"server_cipher": versions.cipher, "server_version": versions.protocol})
    if reason in VERSION_REASONS:
        return Verdict(Cause.PROTOCOL_VERSION_MISMATCH,
                       f"The server refused the client's TLS {tls_min}–{tls_max} range ({reason}); no wider range was accepted either.",
                       {})
    if first.error_kind == RESET:
        return Verdict(Cause.CONNECTION_RESET,
                       f"The connection was closed during the handshake with no TLS alert ({reason or 'reset'}), whatever "
                       "SNI, ciphers or versions were offered: something on the path drops the ClientHello.")
    if reason in SNI_REASONS:
        sent = first.settings.get("sni")
        if sent is None:
            return Verdict(Cause.SNI_REQUIRED,
                           f"The server rejects a handshake without SNI ({reason}): it needs the host name in the "
                           "ClientHello" + (", and a client connecting to an IP address sends none" if is_ip(host) else "")
                           + ".", {"sent_sni": None})
        return Verdict(Cause.SNI_REQUIRED,
                       f"The server does not recognise the name {sent!r} sent as SNI ({reason}).", {"sent_sni": sent})
    return Verdict(Cause.CIPHER_MISMATCH,
                   f"The server refused every ClientHello variant tried ({reason or first.error_kind}): it shares no cipher "
                   "suite or parameters with the client, even widened.")


def _version_in_range(protocol: str | None, lo: str, hi: str) -> bool:
    order = {"TLSv1": 1.0, "TLSv1.1": 1.1, "TLSv1.2": 1.2, "TLSv1.3": 1.3}
    if protocol not in order:
        return False
    return float(lo) <= order[protocol] <= float(hi)


# --- success-path checks and warnings --------------------------------------------------

def classify_success(facts: ChainFacts, *, host: str, pins: Sequence[str], expect_issuers: Sequence[str],
                     hostname_checked: bool, verified: Sequence[x509.Certificate]) -> Verdict:
    names = list(dict.fromkeys(facts.ca_names() + [ch.name_text(c.subject) for c in verified]))
    product = match_inspection(names)
    if not hostname_checked and not ch.hostname_matches(facts.leaf, host):
        sans = list(ch.sans(facts.leaf))
        return Verdict(Cause.HOSTNAME_MISMATCH,
                       f"The chain verifies, but the certificate's names ({', '.join(sans[:4]) or 'no SAN'}) do not cover {host}.",
                       {"sans": sans})
    if expect_issuers and not expected_issuer_found(names, expect_issuers):
        issuer = ch.name_text(facts.leaf.issuer)
        return Verdict(Cause.PROXY_INTERCEPTION,
                       f"The chain verifies, but it is issued by {issuer!r}, not by the expected issuer "
                       f"({', '.join(expect_issuers)}): a device the client trusts is re-signing the connection"
                       + (f" ({product[0].name})" if product else "") + ".",
                       {"expected_issuers": list(expect_issuers), "issuer": issuer,
                        **({"product": product[0].name, "bypass_hint": product[0].bypass_hint} if product else {})})
    if pins:
        chain_pins = [f"sha256/{ch.spki_pin(c)}" for c in list(facts.certs) + list(verified)]
        wanted = {p.strip() for p in pins}
        if not wanted.intersection(chain_pins):
            if product:
                return Verdict(Cause.PROXY_INTERCEPTION,
                               f"No certificate matches the pins, and the chain comes from an inspection CA "
                               f"({product[0].name}: {product[1]!r}).",
                               {"product": product[0].name, "bypass_hint": product[0].bypass_hint})
            return Verdict(Cause.PIN_MISMATCH,
                           f"The chain verifies, but none of its {len(set(chain_pins))} keys matches the "
                           f"{len(wanted)} configured pin(s).",
                           {"chain_pins": list(dict.fromkeys(chain_pins)), "pins": sorted(wanted)})
    return Verdict(Cause.OK, "")


def collect_warnings(*, certs: Sequence[x509.Certificate], verified: Sequence[x509.Certificate], now: datetime,
                     soon_days: int, tls12_only: bool, handshake_verified: bool,
                     names_for_inspection: Sequence[str]) -> list[Finding]:
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
            out.append(Finding(WarningCode.PROXY_INTERCEPTION.value,
                               f"The handshake verified, but the chain comes from the inspection CA {found[1]!r} "
                               f"({found[0].name}) that the client trusts: traffic is decrypted in the path."))
    if tls12_only:
        out.append(Finding(WarningCode.TLS12_ONLY_POLICY.value,
                           "The client policy caps at TLS 1.2: gateways that move clusters to TLS 1.3-only will fail "
                           "downstream calls; allow TLS 1.3 (tls_max = \"1.3\")."))
    return out
