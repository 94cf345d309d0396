"""``cxhealth proxy-audit``: which of a platform's hosts the egress proxy tunnels, intercepts or refuses.

Every host a Genesys or NICE client reaches in the region (tasks/platforms.py)
is diagnosed through the proxy in use (``--proxy``, else the environment's, as
``cxhealth diagnose``); each gets one verdict:

* ``tunnelled``   — a verified handshake with the platform's own certificate;
* ``intercepted`` — the certificate was re-signed: a known inspection product's
  CA (the inspection table), trusted or not, or a private root no public store
  knows (a platform host never presents one) — untrusted, or trusted only
  through ``--ca-bundle`` (a verified chain that does not reach the reference
  store, certifi's or ``--reference-ca-bundle``);
* ``refused``     — the proxy would not tunnel (403/405/…, or 407);
* ``failed``      — anything else (the proxy unreachable, the proxy could not
  reach the host, a TLS fault), with its cause.

Then the bypass list: the allow-list domains (platform-facts.md) that cover
every intercepted host, in the form the detected product's console takes.
Exit 0 when every host is tunnelled, 1 otherwise, 2 bad input. Stays light (no
Prefect, no httpx), like ``diagnose``.

``--connect-to HOST1:PORT1:HOST2:PORT2`` (curl's option, HOST1/PORT1 empty =
any) sends the CONNECT for HOST1:PORT1 to HOST2:PORT2 while SNI and
verification stay on HOST1: for staging endpoints and for the lab, whose copies
of the platform's hosts listen on loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from typing import Any, Sequence

from cxhealth.tasks.platforms import PlatformError, platform_hosts
from cxhealth.tasks.tls import DiagnoseOptions, Diagnosis, Endpoint, PolicyError, TLSPolicy, diagnose_many
from cxhealth.tasks.tls.bypass import bypass_list, console_note
from cxhealth.tasks.tls.chain import StoreError, load_store
from cxhealth.tasks.tls.inspection import INSPECTION_PRODUCTS, match_inspection
from cxhealth.tasks.tls.proxy import ProxyConfigError, route

from .diagnose import check_pem_file, proxy_settings
from .errors import UsageError

TUNNELLED, INTERCEPTED, REFUSED, FAILED = "tunnelled", "intercepted", "refused", "failed"
_PRIVATE_ROOT_CAUSES = ("untrusted_root", "self_signed")


def parse_connect_to(items: Sequence[str]) -> list[tuple[str, int | None, str, int]]:
    """curl's ``HOST1:PORT1:HOST2:PORT2`` (HOST1 and PORT1 may be empty: any)."""
    out = []
    for item in items:
        text = item.strip()
        parts = _split_hostports(text)
        if parts is None:
            raise UsageError(f"--connect-to {item!r}: expected HOST1:PORT1:HOST2:PORT2 (e.g. "
                             "api.mypurecloud.com:443:10.0.0.5:8443; HOST1 and PORT1 may be empty)")
        h1, p1, h2, p2 = parts
        try:
            port1 = int(p1) if p1 else None
            port2 = int(p2)
            if not 1 <= port2 <= 65535 or (port1 is not None and not 1 <= port1 <= 65535):
                raise ValueError
        except ValueError:
            raise UsageError(f"--connect-to {item!r}: ports must be numbers from 1 to 65535") from None
        if not h2:
            raise UsageError(f"--connect-to {item!r}: HOST2 is required")
        out.append((h1.lower(), port1, h2.lower(), port2))
    return out


def _split_hostports(text: str) -> tuple[str, str, str, str] | None:
    fields: list[str] = []
    rest = text
    for _ in range(4):
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                return None
            fields.append(rest[1:end])
            rest = rest[end + 1:]
            if rest.startswith(":"):
                rest = rest[1:]
            elif rest:
                return None
        else:
            head, sep, rest = rest.partition(":")
            fields.append(head)
            if not sep and len(fields) < 4:
                return None
    if rest or len(fields) != 4:
        return None
    return fields[0], fields[1], fields[2], fields[3]


def _connect_to(host: str, port: int, rules: Sequence[tuple[str, int | None, str, int]]) -> tuple[str, int] | None:
    for h1, p1, h2, p2 in rules:
        if (not h1 or h1 == host) and (p1 is None or p1 == port):
            return h2, p2
    return None


def not_public(d: Diagnosis) -> bool:
    """A verified handshake whose chain does not reach the reference store (the public roots):
    the client trusts it only through its own bundle. On a platform host that is a private CA's
    chain, i.e. an inspecting proxy's, whatever the CA is called."""
    ref = d.evidence.get("reference_store")
    return d.ok and isinstance(ref, dict) and ref.get("complete") is False


def verdict_of(d: Diagnosis) -> dict[str, Any]:
    """One host's verdict, with the product and CA when intercepted.

    Intercepted: a known inspection product's CA anywhere in the chain (trusted
    or not), or a private root: a chain no public root signs, whether the
    client rejects it (untrusted_root, self_signed) or trusts it through
    ``--ca-bundle`` (the usual corporate set-up: the inspection CA is pushed
    into the trust store). Who issued the chain decides, not whether the
    client trusts it.
    """
    names = [c.issuer for c in d.chain] + [c.subject for c in d.chain[1:]]
    found = match_inspection(names, INSPECTION_PRODUCTS) if names else None
    trusted_inspection = d.ok and any(w.code == "proxy_interception" for w in d.warnings)
    private_trusted = not_public(d)
    out: dict[str, Any] = {"host": d.endpoint.host, "port": d.endpoint.port, "cause": d.cause.value,
                           "summary": d.summary}
    if (d.cause.value == "proxy_interception" or trusted_inspection or private_trusted
            or d.cause.value in _PRIVATE_ROOT_CAUSES):
        out["verdict"] = INTERCEPTED
        out["product"] = found[0].name if found else None
        out["inspection_ca"] = found[1] if found else (d.chain[-1].issuer if d.chain else None)
        out["trusted_by_client"] = bool(d.ok)
        if private_trusted and not found and not trusted_inspection:
            out["summary"] = (f"The handshake verified only through the client's own CA bundle: the chain is issued "
                              f"by {out['inspection_ca']!r}, which no root of the reference store (the public "
                              f"roots) signs; a platform host presents a public chain, so this is an inspecting "
                              "proxy's CA that the client trusts.")
    elif d.ok:
        out["verdict"] = TUNNELLED
    elif d.cause.value in ("proxy_refused", "proxy_auth_required"):
        out["verdict"] = REFUSED
        status = (d.evidence.get("proxy") or {}).get("status_line")
        out["status_line"] = status
    else:
        out["verdict"] = FAILED
    return out


def build_audit(args: Any) -> tuple[list[Endpoint], list[str], TLSPolicy, DiagnoseOptions, Any]:
    try:
        hosts = platform_hosts(args.platform, args.region)
    except PlatformError as exc:
        raise UsageError(str(exc)) from None
    if args.timeout <= 0 or args.timeout != args.timeout:
        raise UsageError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    ca = check_pem_file("--ca-bundle", args.ca_bundle)
    ref = check_pem_file("--reference-ca-bundle", getattr(args, "reference_ca_bundle", None))
    try:
        if ca:
            load_store("--ca-bundle", ca)
        if ref:
            load_store("--reference-ca-bundle", ref)
        policy = TLSPolicy(ca_bundle=ca, timeout=args.timeout)
        policy.ssl_context()
    except (PolicyError, StoreError) as exc:
        raise UsageError(str(exc)) from None
    rules = parse_connect_to(args.connect_to)
    settings = proxy_settings(args)
    endpoints, roles = [], []
    for host, role in hosts:
        endpoint = Endpoint(host=host, port=443, connect_to=_connect_to(host, 443, rules))
        try:
            endpoints.append(route(endpoint, settings))
        except ProxyConfigError as exc:
            raise UsageError(str(exc)) from None
        roles.append(role)
    return endpoints, roles, policy, DiagnoseOptions(reference_ca_bundle=ref, reference_on_success=True), settings


def run_proxy_audit(args: Any) -> int:
    endpoints, roles, policy, options, _ = build_audit(args)
    results = asyncio.run(diagnose_many(endpoints, policy, options, concurrency=8))
    hosts = []
    for role, d in zip(roles, results):
        row = verdict_of(d)
        row["role"] = role
        row["diagnosis"] = d.to_dict()
        hosts.append(row)
    intercepted = [h for h in hosts if h["verdict"] == INTERCEPTED]
    groups: dict[str | None, list[str]] = {}
    for h in intercepted:
        groups.setdefault(h.get("product"), []).append(h["host"])
    bypass = []
    for product, names in groups.items():
        entries = bypass_list(names, args.platform, product)
        hint = next((p.bypass_hint for p in INSPECTION_PRODUCTS if p.name == product), None)
        bypass.append({"product": product, "where": hint,
                       "note": console_note(product, entries[0].domain) if entries else None,
                       "patterns": [e.pattern for e in entries], "entries": [e.to_dict() for e in entries]})
    proxies = {e.proxy.url for e in endpoints if e.proxy is not None}
    report = {"platform": args.platform, "region": args.region,
              "proxy": sorted(proxies)[0] if len(proxies) == 1 else (sorted(proxies) or None),
              "ok": all(h["verdict"] == TUNNELLED for h in hosts), "hosts": hosts, "bypass": bypass}
    if args.json:
        sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(render(report, endpoints) + "\n")
    sys.stdout.flush()
    return 0 if report["ok"] else 1


def render(report: dict[str, Any], endpoints: Sequence[Endpoint]) -> str:
    via = report["proxy"]
    source = next((e.proxy.source for e in endpoints if e.proxy is not None), None)
    lines = [f"proxy-audit {report['platform']} {report['region']}: "
             + (f"through {via}" + (f" (from {source})" if source and source != "--proxy" else "")
                if via else "no proxy in use (direct connections)")]
    width = max(len(f"{h['host']}:{h['port']}") for h in report["hosts"])
    for h in report["hosts"]:
        where = f"{h['host']}:{h['port']}".ljust(width)
        if h["verdict"] == INTERCEPTED:
            what = (f"by {h['product']}" if h.get("product") else "by an unrecognised inspection CA") \
                + (f" (CA {h['inspection_ca']!r})" if h.get("inspection_ca") else "") \
                + ("; the client trusts that CA" if h.get("trusted_by_client") else "")
        elif h["verdict"] == TUNNELLED:
            what = "tunnelled untouched: " + h["summary"]
        elif h["verdict"] == REFUSED:
            what = f"{h['cause']}: {h['summary']}"
        else:
            what = f"{h['cause']}: {h['summary']}"
        lines.append(f"  {h['verdict'].upper():<12} {where}  {h['role']}: {what}")
    for group in report["bypass"]:
        product = group["product"] or "the inspecting proxy"
        lines.append(f"Bypass list for {product}" + (f" ({group['where']})" if group["where"] else "") + ":")
        lines += [f"  {p}" for p in group["patterns"]]
        if group.get("note"):
            lines.append(f"  ({group['note']})")
    bad = sum(1 for h in report["hosts"] if h["verdict"] != TUNNELLED)
    lines.append(f"{len(report['hosts']) - bad} of {len(report['hosts'])} hosts tunnelled untouched"
                 + ("." if not bad else f"; {bad} not."))
    return "\n".join(lines)
