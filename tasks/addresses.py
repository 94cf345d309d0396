"""A host with several addresses: diagnose each (at most 8), healthy only if every one is.

Contract §4 "Several addresses": when a name has several addresses (DNS, or
``resolve``/``--resolve`` with several, comma-separated), the handshake connects
to each, and a failure says which ("2 of 4 addresses of api…:443 refuse TLS
1.2"). A pool whose members differ is the guide's "intermittent handshake
failures that appear random": a client lands on one member or another.

The engine diagnoses one :class:`Endpoint` with one ``address``; the fan-out is
here, one level up, and the result is still one :class:`Diagnosis` — the first
failing address's (else the first address's), whose ``evidence["addresses"]``
lists every address's facts (what the history records). Prefect-free.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any, Sequence

from cxhealth.tasks.tls import DiagnoseOptions, Diagnosis, Endpoint, TLSPolicy, diagnose

MAX_ADDRESSES = 8


async def addresses_of(endpoint: Endpoint, timeout: float) -> tuple[str, ...]:
    """The distinct addresses DNS gives for the host, in its order, of the first answer's
    family (a host's A records; an AAAA beside them is not another pool member), at most 8.
    Empty when DNS fails: the engine then diagnoses the failure itself."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM), timeout)
    except (OSError, asyncio.TimeoutError, UnicodeError):
        return ()
    if not infos:
        return ()
    family = infos[0][0]
    found = [info[4][0] for info in infos if info[0] == family]
    return tuple(dict.fromkeys(found))[:MAX_ADDRESSES]


def address_facts(d: Diagnosis) -> dict[str, Any]:
    """What the report and the history keep of one address's diagnosis (public facts only)."""
    return {"address": d.endpoint.address, "ok": d.ok, "cause": d.cause.value, "summary": d.summary,
            "protocol": d.protocol, "cipher": d.cipher, "handshake_ms": d.handshake_ms,
            "chain": [{"subject": c.subject, "issuer": c.issuer, "not_after": c.not_after, "sha256": c.sha256,
                       "self_issued": c.self_issued,
                       "spki_pin": f"sha256/{c.spki_sha256_b64}" if c.spki_sha256_b64 else None} for c in d.chain]}


def _failing_phrase(cause: str, policy: TLSPolicy) -> str:
    if cause == "protocol_version_mismatch":
        versions = policy.tls_min if policy.tls_min == policy.tls_max else f"{policy.tls_min}–{policy.tls_max}"
        return f"refuse TLS {versions}"
    return f"fail with {cause}"


def combine(results: Sequence[Diagnosis], policy: TLSPolicy) -> Diagnosis:
    """One verdict for a host from its addresses' diagnoses (input order kept)."""
    facts = [address_facts(d) for d in results]
    bad = [d for d in results if not d.ok]
    base = bad[0] if bad else results[0]
    evidence = {**base.evidence, "addresses": facts}
    if not bad:
        return replace(base, evidence=evidence)
    host = f"{base.endpoint.host}:{base.endpoint.port}"
    causes = list(dict.fromkeys(d.cause.value for d in bad))
    phrase = _failing_phrase(causes[0], policy) if len(causes) == 1 else "fail (" + ", ".join(causes) + ")"
    which = ", ".join(str(d.endpoint.address) for d in bad)
    summary = (f"{len(bad)} of {len(results)} addresses of {host} {phrase} ({which})"
               + (f"; the others succeed, so clients fail or not depending on the address they reach" if len(bad) < len(results) else "")
               + f". {base.endpoint.address}: {base.summary}")
    if len(summary) > 1000:
        summary = summary[:999] + "…"
    return replace(base, summary=summary, evidence=evidence)


async def diagnose_addresses(endpoint: Endpoint, policy: TLSPolicy = TLSPolicy(),
                             options: DiagnoseOptions = DiagnoseOptions(),
                             addresses: Sequence[str] | None = None) -> Diagnosis:
    """Diagnose every address of *endpoint*'s host (the given ones, else DNS's), at most 8, concurrently.

    Through a proxy the proxy resolves the name: one diagnosis, as before.
    """
    if getattr(endpoint, "proxy", None) is not None:
        return await diagnose(endpoint, policy, options)
    if addresses:
        chosen = tuple(dict.fromkeys(addresses))[:MAX_ADDRESSES]
    elif endpoint.address:
        chosen = (endpoint.address,)
    else:
        chosen = await addresses_of(endpoint, policy.timeout)
    if len(chosen) <= 1:
        return await diagnose(replace(endpoint, address=chosen[0]) if chosen else endpoint, policy, options)
    results = await asyncio.gather(*(diagnose(replace(endpoint, address=a), policy, options) for a in chosen))
    return combine(results, policy)
