"""Run a diagnosis: a verified handshake first, then bounded extra probes.

Budget (issue 2): at most 5 handshakes per diagnosis and at most 3x the
per-step timeout in total. Each extra probe changes one thing (SNI, a client
certificate, the cipher list, the version range) so its answer is evidence.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

from . import chain as ch
from . import classify as cl
from . import openssl_table as table
from .model import Cause, Diagnosis, Endpoint, Finding, clip, is_ip
from .policy import TLSPolicy, build_verifying_context, explain_only_context
from .probe import (POST_HANDSHAKE, VERIFY, ProbeResult, fetch_aia, probe, resolve,
                    watch_certificate_requests)
from .remediation import Facts, remediation_for

MAX_HANDSHAKES = 5
AIA_MAX_HOPS = 3


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class DiagnoseOptions:
    """What a diagnosis checks beyond the policy (contract §1 options).

    reference_ca_bundle: PEM of an up-to-date public store; None = certifi's.
    expect_issuers: substrings one of which a chain CA's subject must contain.
    pins: ``sha256/BASE64`` SPKI pins; one chain cert must match one of them.
    aia: fetch missing intermediates from the AIA caIssuers URL.
    now: the clock, injected (validity windows, expiring-soon).
    on_handshake_failure: awaited with the first (verified) probe as soon as it
        has failed, before any extra probe: the caller records the failure at
        once (the circuit breaker counts it while the diagnosis goes on).
    should_continue: awaited before each extra probe; False skips it (the
        host's breaker opened meanwhile: no new connection to it).
    reference_on_success: after a verified handshake, also build the chain's
        path to the reference store (``evidence.reference_store``): whether the
        chain is a public one, not only one the client trusts (proxy-audit).
    """

    reference_ca_bundle: str | None = None
    expect_issuers: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()
    aia: bool = True
    expiring_soon_days: int = 14
    now: Callable[[], datetime] = field(default=_utcnow, compare=False)
    on_handshake_failure: Callable[[ProbeResult], Awaitable[None]] | None = field(default=None, compare=False)
    should_continue: Callable[[], Awaitable[bool]] | None = field(default=None, compare=False)
    reference_on_success: bool = False  # also chain a verified handshake to the reference store (proxy-audit)


@functools.lru_cache(maxsize=64)
def _verifying_context(policy: TLSPolicy, check_hostname: bool) -> ssl.SSLContext:
    """The probe's own verifying context (not the one httpx clients share): it
    watches for a CertificateRequest, and without SNI it checks the chain only —
    OpenSSL can only check the host name it was given as SNI, so the name is then
    checked on the leaf afterwards (classify_success)."""
    return watch_certificate_requests(build_verifying_context(policy, check_hostname=check_hostname))


@functools.lru_cache(maxsize=64)
def _client_ciphers(policy: TLSPolicy) -> frozenset[str]:
    """The TLS 1.2 suites the client's policy offers (to tell a cipher from a security-level refusal)."""
    try:
        return frozenset(c["name"] for c in _verifying_context(policy, True).get_ciphers())
    except Exception:  # noqa: BLE001
        return frozenset()


@functools.lru_cache(maxsize=64)
def _security_level(policy: TLSPolicy) -> int:
    return int(getattr(_verifying_context(policy, True), "security_level", 2))


@functools.lru_cache(maxsize=1)
def _dummy_client_identity() -> tuple[str, str]:
    """A throwaway self-signed client certificate: offering one tells a server
    that demands mTLS (it answers with a different alert) from other failures."""
    import tempfile
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxhealth diagnostic probe (not a real identity)")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    folder = tempfile.mkdtemp(prefix="cxhealth-probe-")
    cert_path, key_path = os.path.join(folder, "probe.crt"), os.path.join(folder, "probe.key")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


class _Run:
    """One diagnosis in progress: the probes done, the budget left."""

    def __init__(self, endpoint: Endpoint, policy: TLSPolicy, options: DiagnoseOptions):
        self.endpoint, self.policy, self.options = endpoint, policy, options
        self.timeout = policy.timeout
        self.deadline = time.perf_counter() + 3 * policy.timeout
        self.probes: list[ProbeResult] = []
        self.address: str | None = endpoint.address
        self.skipped: list[str] = []

    @property
    def handshakes(self) -> int:
        return sum(1 for p in self.probes if p.handshake_attempted)

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    async def run(self, label: str, context: ssl.SSLContext, settings: dict[str, Any], *,
                  server_hostname: str | None | bool = True, post: bool = False,
                  first_request: str | None = None) -> ProbeResult | None:
        left = self.remaining()
        if self.handshakes >= MAX_HANDSHAKES or left < 0.05:
            self.skipped.append(label)
            return None
        if self.probes and self.options.should_continue is not None and not await self.options.should_continue():
            self.skipped.append(label)  # the caller said stop (its breaker opened): no new connection
            return None
        result = await probe(self.endpoint, context, label=label, timeout=min(self.timeout, left),
                             settings=settings, address=self.address, server_hostname=server_hostname,
                             check_post_handshake=post, deadline=self.deadline, first_request=first_request)
        self.probes.append(result)
        return result


def _settings(policy: TLSPolicy, sni: str | None, **extra: Any) -> dict[str, Any]:
    out = {"sni": sni, "tls_min": policy.tls_min, "tls_max": policy.tls_max, "verify": True}
    out.update(extra)
    return out


async def diagnose(endpoint: Endpoint, policy: TLSPolicy = TLSPolicy(),
                   options: DiagnoseOptions = DiagnoseOptions()) -> Diagnosis:
    """Diagnose one endpoint. Never raises for a property of the endpoint: every
    failure is a :class:`Diagnosis` naming its cause."""
    run = _Run(endpoint, policy, options)
    now = options.now()
    if run.address is None and endpoint.proxy is None:  # a proxy resolves the name itself
        address, dns_ms, err = await resolve(endpoint, policy.timeout)
        if err is not None:
            first = ProbeResult(label="verified", ok=False, settings=_settings(policy, endpoint.sni_sent),
                                dns_ms=dns_ms, **err)
            run.probes.append(first)
            return _finish(run, cl.classify_network(first, endpoint.host, endpoint.port, policy.timeout), now)
        run.address = address
    first = await run.run("verified", _verifying_context(policy, _openssl_checks_name(endpoint)),
                          _settings(policy, endpoint.sni_sent), post=True, first_request=endpoint.path or "/")
    assert first is not None
    network = cl.classify_network(first, endpoint.host, endpoint.port, policy.timeout)
    if network is not None:
        return _finish(run, network, now)
    if not first.ok and options.on_handshake_failure is not None:
        await options.on_handshake_failure(first)  # known now: the caller records it before any extra probe
    try:
        if first.ok:
            return await _diagnose_success(run, first, now)
        if first.error_kind == VERIFY:
            return await _diagnose_verify_failure(run, first, now)
        return await _diagnose_handshake_failure(run, first, now)
    except Exception as exc:  # noqa: BLE001 - the analysis failed; OpenSSL's verdict still stands
        return _fallback(run, first, now, exc)


def _fallback(run: _Run, first: ProbeResult, now: datetime, exc: BaseException) -> Diagnosis:
    """The verdict from the first handshake alone, when the analysis could not complete
    (contract §1: a malformed certificate never ends a diagnosis with an error)."""
    why = f"{type(exc).__name__}: {str(exc)[:200]}"
    if first.ok:
        verdict = cl.Verdict(Cause.OK, "", {"analysis_error": why})
    elif first.error_kind == VERIFY:
        verdict = _verdict_from_code(first, extra={"analysis_error": why})
    else:
        verdict = cl.Verdict(Cause.CIPHER_MISMATCH if table.reason_entry(first.reason) is None else _reason_cause(first),
                             f"The handshake failed ({first.reason or first.error_kind}); the analysis could not "
                             f"complete ({why}).", {"analysis_error": why})
    try:
        return _finish(run, verdict, now, first=first)
    except Exception:  # noqa: BLE001 - not even the chain can be listed
        return _finish(run, verdict, now, first=first, certs=(), skip_chain=True)


def _reason_cause(first: ProbeResult) -> Cause:
    mapped = table.reason_entry(first.reason)
    if isinstance(mapped, Cause):
        return mapped
    if mapped == table.CLIENT_CERT:
        return Cause.CLIENT_CERT_REQUIRED
    return Cause.CIPHER_MISMATCH


def _verdict_from_code(first: ProbeResult, extra: dict[str, Any] | None = None) -> cl.Verdict:
    """What the verify code alone says (no chain to analyse)."""
    entry = table.verify_entry(first.verify_code)
    code, msg = first.verify_code, first.verify_message
    details = dict(extra or {})
    if entry is None:
        details["unmapped"] = {"verify_code": code, "verify_message": msg}
        cause = Cause.INVALID_CHAIN
        details["rule"] = f"OpenSSL verify code {code}"
    elif entry.cause == table.TRUST:
        cause = Cause.UNTRUSTED_ROOT if code == 19 else Cause.INCOMPLETE_CHAIN
        if cause is Cause.UNTRUSTED_ROOT:
            details["top_subject"] = "the chain's root"
    else:
        cause = entry.cause  # type: ignore[assignment]
        if entry.rule:
            details["rule"] = entry.rule
    return cl.Verdict(cause, f"Certificate verification failed (OpenSSL verify code {code}: {msg}); the chain could "
                             "not be captured or analysed.", details)


def _openssl_checks_name(endpoint: Endpoint) -> bool:
    """OpenSSL checks the certificate against the name it is given as SNI. When
    the SNI sent is not the name to verify (``--no-sni``, ``--sni OTHER``), the
    handshake checks the chain only and the name is checked on the leaf after
    (classify_success), against :attr:`Endpoint.verify_name`."""
    return endpoint.server_hostname is not None and endpoint.server_hostname == endpoint.verify_name


def _sni_differs(endpoint: Endpoint) -> bool:
    """Would sending the name to verify as SNI be a different handshake? (never for an IP address)"""
    return endpoint.sni_sent != endpoint.verify_name and not is_ip(endpoint.verify_name)


def _sent_sni_text(endpoint: Endpoint) -> str:
    return "Without SNI" if endpoint.sni_sent is None else f"With SNI {endpoint.sni_sent!r}"


async def _with_right_sni(run: _Run) -> ProbeResult | None:
    """A verified handshake sending the name to verify as SNI."""
    name = run.endpoint.verify_name
    return await run.run("with_sni", _verifying_context(run.policy, True), _settings(run.policy, name),
                         server_hostname=name)


async def _diagnose_success(run: _Run, first: ProbeResult, now: datetime) -> Diagnosis:
    endpoint, options = run.endpoint, run.options
    certs = tuple(ch.parse_der_chain(first.chain_der))
    verified = tuple(ch.parse_der_chain(first.verified_chain_der))
    if not certs:
        return _finish(run, cl.Verdict(Cause.OK, "", {"unanalysed": ch.unparsed(first.chain_der)}), now, first=first,
                       verified_ok=True)
    refusal = None
    if first.first_request is not None:
        fr = first.first_request
        refusal = cl.client_cert_refusal(fr.get("status"), fr.get("body_start") or "", fr.get("error"),
                                         protocol=first.protocol, supplied=bool(run.policy.client_cert))
    facts = cl.ChainFacts(certs=certs, client=None, reference=None)
    verdict = cl.classify_success(facts, host=endpoint.verify_name, pins=options.pins,
                                  expect_issuers=options.expect_issuers,
                                  hostname_checked=_openssl_checks_name(endpoint), verified=verified,
                                  client_cert=refusal)
    if verdict.cause is Cause.HOSTNAME_MISMATCH and _sni_differs(endpoint):
        # The server may present a default certificate for an unknown SNI: does the right name fix it?
        retry = await _with_right_sni(run)
        if retry is not None and retry.ok:
            verdict = cl.Verdict(Cause.SNI_REQUIRED,
                                 f"{_sent_sni_text(endpoint)} the server presents a certificate for other names "
                                 f"({', '.join(verdict.details.get('sans', [])[:3])}); with SNI {endpoint.verify_name!r} "
                                 f"it presents a valid one ({retry.protocol}).", {"sni_probe": "accepted"})
    chain_facts = None
    if options.reference_on_success:
        reference = ch.reference_store(options.reference_ca_bundle)
        chain_facts = cl.ChainFacts(certs=certs, client=None,
                                    reference=ch.build_path(certs[0], list(certs[1:]) + list(verified[1:]), reference))
    return _finish(run, verdict, now, first=first, certs=certs, verified=verified, verified_ok=True,
                   chain_facts=chain_facts)


async def _diagnose_verify_failure(run: _Run, first: ProbeResult, now: datetime) -> Diagnosis:
    endpoint, policy, options = run.endpoint, run.policy, run.options
    explain = await run.run("explain_chain", explain_only_context(policy),
                            _settings(policy, endpoint.sni_sent, verify=False))
    certs = tuple(ch.parse_der_chain(explain.chain_der)) if explain is not None and explain.ok else ()
    if not certs:
        # No chain to analyse: the verify code alone names what it can.
        extra = {"unanalysed": ch.unparsed(explain.chain_der)} if explain is not None and explain.chain_der else {}
        return _finish(run, _verdict_from_code(first, extra), now, first=first)
    client = ch.load_store("client CA bundle" if policy.ca_bundle else "system store", policy.ca_bundle)
    reference = ch.reference_store(options.reference_ca_bundle)
    leaf, sent = certs[0], certs[1:]
    p_client = ch.build_path(leaf, sent, client)
    p_ref = ch.build_path(leaf, sent, reference)
    fetched: list = []
    aia_records: list[dict[str, Any]] = []
    if options.aia and not p_client.complete and not p_ref.complete and \
            (first.verify_code in cl.V_CHAIN_CODES or first.verify_code in table.CHECKED_BEFORE_PATH):
        top = p_client.stopped_at or certs[-1]
        for hop in range(AIA_MAX_HOPS + 1):
            urls = ch.aia_ca_issuers(top)
            if not urls:
                break
            if hop == AIA_MAX_HOPS or run.remaining() < 0.05:  # said, so "not found" is never claimed for it
                aia_records.append({"url": clip(urls[0], 500), "ok": False, "not_fetched":
                                    f"the limit of {AIA_MAX_HOPS} AIA fetches was reached" if hop == AIA_MAX_HOPS
                                    else "the diagnosis's time budget (3x --timeout) ran out"})
                break
            body, record = await fetch_aia(urls[0], min(run.timeout, run.remaining()), proxy=endpoint.proxy)
            issuer = None
            if body:
                issuer = next((c for c in ch.parse_any(body) if c.subject == top.issuer and ch._signs(c, top)), None)
                record["ok"] = issuer is not None
                if issuer is None:
                    record["error"] = "the answer holds no certificate that signs " + ch.name_text(top.subject)
                else:
                    record["got"] = ch.name_text(issuer.subject)
            else:
                record["ok"] = False
            aia_records.append(record)
            if issuer is None:
                break
            fetched.append(issuer)
            p_client = ch.build_path(leaf, sent, client, fetched)
            p_ref = ch.build_path(leaf, sent, reference, fetched)
            if p_client.complete or p_ref.complete or ch.is_self_issued(issuer):
                break
            top = issuer
    facts = cl.ChainFacts(certs=certs, client=p_client, reference=p_ref, fetched=tuple(fetched),
                          aia=tuple(aia_records), aia_enabled=options.aia, reference_store=reference)
    verdict = cl.classify_verify_failure(first, facts, host=endpoint.verify_name, now=now,
                                         expect_issuers=options.expect_issuers, pins=options.pins,
                                         security_level=_security_level(policy))
    left_out = ch.unparsed(explain.chain_der)
    if left_out:
        verdict = cl.Verdict(verdict.cause, verdict.summary, {**verdict.details, "unparsed_certificates": left_out})
    if _sni_differs(endpoint):
        # Servers hand an unknown (or no) SNI a default certificate — often self-signed or
        # for other names. If the right name gets a valid chain, that is the root cause.
        retry = await _with_right_sni(run)
        if retry is not None and retry.ok:
            verdict = cl.Verdict(Cause.SNI_REQUIRED,
                                 f"{_sent_sni_text(endpoint)} the server presents a certificate the client rejects "
                                 f"({verdict.cause.value}: {verdict.summary.rstrip('.')}); with SNI "
                                 f"{endpoint.verify_name!r} it presents a valid one ({retry.protocol}).",
                                 {"sni_probe": "accepted", "without_right_sni": verdict.cause.value})
    return _finish(run, verdict, now, first=first, certs=certs, chain_facts=facts)


async def _diagnose_handshake_failure(run: _Run, first: ProbeResult, now: datetime) -> Diagnosis:
    endpoint, policy = run.endpoint, run.policy
    reason = first.reason or ""
    client_cert = bool(policy.client_cert)
    mapped = table.reason_entry(reason)
    # The table decides alone when the reason names one cause; otherwise the one-change probes do.
    decided = mapped in (Cause.NOT_TLS, Cause.CLIENT_CERT_REQUIRED, Cause.WEAK_CRYPTO, Cause.INVALID_CHAIN)
    decided = decided or (first.error_kind == POST_HANDSHAKE and reason in cl.CLIENT_CERT_REQUIRED_REASONS)
    decided = decided or (client_cert and mapped == table.CLIENT_CERT)
    if not decided:
        if _sni_differs(endpoint):
            await run.run("with_sni", explain_only_context(policy), _settings(policy, endpoint.verify_name, verify=False),
                          server_hostname=endpoint.verify_name)
        if not _accepted(run, "with_sni"):
            version_only = reason in cl.VERSION_REASONS
            if not client_cert and not version_only:
                cert = await run.run("dummy_client_cert", explain_only_context(policy, client_identity=_dummy_client_identity()),
                                     _settings(policy, endpoint.sni_sent, verify=False, client_cert="throwaway"),
                                     post=True)
                if cert is not None and (cert.ok or cert.reason in cl.CLIENT_CERT_REJECTED_REASONS):
                    return _finish(run, _verdict(run, first), now, first=first)
            if not version_only:
                await run.run("any_cipher", explain_only_context(policy, widen_ciphers=True),
                              _settings(policy, endpoint.sni_sent, verify=False, ciphers="ALL:@SECLEVEL=0"))
            if not _accepted(run, "any_cipher"):
                await run.run("any_version", explain_only_context(policy, widen_ciphers=True,
                                                                  tls_min=ssl.TLSVersion.TLSv1,
                                                                  tls_max=ssl.TLSVersion.TLSv1_3),
                              _settings(policy, endpoint.sni_sent, verify=False, tls_min="1.0", tls_max="1.3",
                                        ciphers="ALL:@SECLEVEL=0"))
    return _finish(run, _verdict(run, first), now, first=first)


def _accepted(run: _Run, label: str) -> bool:
    return any(p.label == label and p.ok for p in run.probes)


def _verdict(run: _Run, first: ProbeResult) -> cl.Verdict:
    return cl.classify_handshake_failure(first, run.probes, host=run.endpoint.verify_name, tls_min=run.policy.tls_min,
                                         tls_max=run.policy.tls_max, client_cert_supplied=bool(run.policy.client_cert),
                                         client_ciphers=_client_ciphers(run.policy))


def _finish(run: _Run, verdict: cl.Verdict | None, now: datetime, *, first: ProbeResult | None = None,
            certs: Sequence = (), verified: Sequence = (), verified_ok: bool = False,
            chain_facts: cl.ChainFacts | None = None, skip_chain: bool = False) -> Diagnosis:
    assert verdict is not None
    endpoint, policy, options = run.endpoint, run.policy, run.options
    first = first or (run.probes[0] if run.probes else None)
    if not certs and not skip_chain:
        captured = next((p.chain_der for p in run.probes if p.chain_der), ())
        certs = tuple(ch.parse_der_chain(captured)) if captured else ()
    names = list(dict.fromkeys([ch.full_name(c.issuer) for c in certs] +
                               [ch.full_name(c.subject) for c in list(certs)[1:] + list(verified)]))
    try:
        warnings: list[Finding] = cl.collect_warnings(
            certs=certs, verified=verified, now=now, soon_days=options.expiring_soon_days,
            tls12_only=policy.is_tls12_only, handshake_verified=verified_ok, names_for_inspection=names,
            certificate_requested=bool(first is not None and first.certificate_requested
                                       and verdict.cause is not Cause.CLIENT_CERT_REQUIRED),
            client_cert_supplied=bool(policy.client_cert), host=endpoint.verify_name)
    except Exception as exc:  # noqa: BLE001 - a warning that cannot be computed is not a verdict
        warnings = [Finding("analysis_incomplete", f"warnings could not be computed ({type(exc).__name__})")]
    if verdict.cause is Cause.PROXY_INTERCEPTION:
        warnings = [w for w in warnings if w.code != "proxy_interception"]
    facts = Facts(host=endpoint.host, port=endpoint.port, ca_bundle=policy.ca_bundle, tls_min=policy.tls_min,
                  tls_max=policy.tls_max, details=verdict.details)
    evidence: dict[str, Any] = {"probes": [p.to_evidence() for p in run.probes]}
    if first is not None:
        for key in ("reason", "verify_code", "verify_message", "error_kind"):
            value = getattr(first, key)
            if value is not None:
                evidence[key] = value
        if first.proxy is not None:
            evidence["proxy"] = first.proxy
    if chain_facts is not None:
        evidence.update(chain_facts.describe())
    evidence.update({k: v for k, v in verdict.details.items() if k not in ("bypass_hint",)})
    if run.skipped:
        evidence["skipped_probes"] = run.skipped
    summary = clip(verdict.summary or _ok_summary(first, certs, verified))
    success = first if (first is not None and first.ok) else None
    return Diagnosis(
        endpoint=replace(endpoint, address=run.address),
        cause=verdict.cause,
        summary=summary,
        remediation=remediation_for(verdict.cause, facts),
        protocol=success.protocol if success else None,
        cipher=success.cipher if success else None,
        alpn=success.alpn if success else None,
        handshake_ms=success.handshake_ms if success else None,
        chain=tuple(_cert_infos(certs)),
        warnings=tuple(warnings),
        evidence=evidence,
        handshakes=run.handshakes,
    )


def _cert_infos(certs: Sequence) -> list:
    out = []
    for c in certs:
        try:
            out.append(ch.cert_info(c))
        except Exception:  # noqa: BLE001 - list what can be listed
            continue
    return out


def _ok_summary(first: ProbeResult | None, certs: Sequence, verified: Sequence) -> str:
    if first is None:
        return "Healthy."
    top = verified[-1] if verified else None  # the trust anchor OpenSSL's verified chain ends at
    who = f" to the root {ch.common_name(top.subject) or ch.name_text(top.subject)}" if top is not None else ""
    return (f"Verified {first.protocol} handshake with {first.cipher} in {first.handshake_ms:.1f} ms; "
            f"the chain of {len(certs)} certificate(s) validates{who}.")


async def diagnose_many(endpoints: Sequence[Endpoint], policy: TLSPolicy = TLSPolicy(),
                        options: DiagnoseOptions = DiagnoseOptions(), concurrency: int = 100,
                        policies: Sequence[TLSPolicy] | None = None) -> list[Diagnosis]:
    """Diagnose many endpoints concurrently; results in input order."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int, endpoint: Endpoint) -> Diagnosis:
        async with gate:
            try:
                return await diagnose(endpoint, policies[i] if policies else policy, options)
            except Exception as exc:  # noqa: BLE001 - one target's trouble never costs another its line
                return _internal_error(endpoint, exc)

    return list(await asyncio.gather(*(one(i, e) for i, e in enumerate(endpoints))))


def _internal_error(endpoint: Endpoint, exc: BaseException) -> Diagnosis:
    """The last resort: a diagnosis that says the engine failed (still one line, still this target's)."""
    why = f"{type(exc).__name__}: {str(exc)[:200]}"
    return Diagnosis(endpoint=endpoint, cause=Cause.CONNECTION_RESET,
                     summary=f"cxhealth could not complete the diagnosis of {endpoint.host}:{endpoint.port} ({why}).",
                     remediation=("Rerun with CXHEALTH_DEBUG=1 and report the error; compare with "
                                  f"`openssl s_client -connect {endpoint.host}:{endpoint.port}`.",),
                     evidence={"internal_error": why})


def diagnose_sync(endpoint: Endpoint, policy: TLSPolicy = TLSPolicy(),
                  options: DiagnoseOptions = DiagnoseOptions()) -> Diagnosis:
    return asyncio.run(diagnose(endpoint, policy, options))
