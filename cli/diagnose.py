"""``cxhealth diagnose``: argument checking, the run, and the two renderings.

Stays light: no Prefect, no httpx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Sequence
from urllib.parse import urlsplit

from cxhealth.tasks.rules import spki_pin
from cxhealth.tasks.tls import DiagnoseOptions, Diagnosis, Endpoint, PolicyError, TLSPolicy, diagnose_many
from cxhealth.tasks.tls.chain import StoreError, load_store
from cxhealth.tasks.tls.proxy import ProxyConfigError, ProxySettings, route, settings_from_options

from .errors import UsageError


def parse_target(text: str) -> Endpoint:
    """``https://HOST[:PORT][/path]`` or ``HOST[:PORT]`` (port 443 by default)."""
    raw = text.strip()
    if not raw:
        raise UsageError("empty target")
    url = raw if "://" in raw else f"https://{raw}"
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise UsageError(f"target {raw!r}: only https:// targets can be diagnosed (got {parts.scheme}://)")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"target {raw!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host or any(c in host for c in " \t/\\@") or parts.username or parts.password:
        raise UsageError(f"target {raw!r} is not https://HOST[:PORT][/path] or HOST[:PORT]")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"target {raw!r}: port {port} is out of range 1-65535")
    if port == 0:
        raise UsageError(f"target {raw!r}: port 0 is out of range 1-65535")
    return Endpoint(host=host.lower(), port=port or 443, path=parts.path or "/")


def parse_resolve(items: Sequence[str]) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    for item in items:
        host, sep1, rest = item.partition(":")
        port_text, sep2, addr = rest.partition(":")
        if not (sep1 and sep2 and host and port_text and addr):
            raise UsageError(f"--resolve {item!r}: expected HOST:PORT:ADDR (e.g. api.example.com:443:192.0.2.10)")
        addr = addr.strip("[]")
        try:
            port = int(port_text)
            if not 1 <= port <= 65535:
                raise ValueError
        except ValueError:
            raise UsageError(f"--resolve {item!r}: port {port_text!r} is not a number from 1 to 65535") from None
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise UsageError(f"--resolve {item!r}: {addr!r} is not an IP address") from None
        out[(host.lower(), port)] = addr
    return out


def parse_pin(text: str) -> str:
    """The pin rule targets.toml and the blocks use too (tasks/rules.py)."""
    try:
        return spki_pin(text)
    except ValueError as exc:
        raise UsageError(f"--pin {exc}") from None


def check_pem_file(option: str, path: str | None, *, want: str = "CERTIFICATE") -> str | None:
    if path is None:
        return None
    full = os.path.expanduser(path)
    try:
        with open(full, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{option} {path}: is a directory, expected a PEM file") from None
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot be read ({exc.strerror})") from None
    if f"-----BEGIN {want}".encode() not in data and not (want == "PRIVATE KEY" and b"PRIVATE KEY-----" in data):
        raise UsageError(f"{option} {path}: not a PEM file with a {want.lower()} (no '-----BEGIN {want}' block)")
    return full


def read_targets(args: Any) -> list[str]:
    items = list(args.targets)
    if args.from_file:
        try:
            if args.from_file == "-":
                lines = sys.stdin.read().splitlines()
            else:
                with open(os.path.expanduser(args.from_file), encoding="utf-8") as fh:
                    lines = fh.read().splitlines()
        except FileNotFoundError:
            raise UsageError(f"--from {args.from_file}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--from {args.from_file}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
        items += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not items:
        raise UsageError("no TARGET given (pass one or more, or --from FILE)")
    return items


def build_run(args: Any) -> tuple[list[Endpoint], TLSPolicy, DiagnoseOptions]:
    targets = read_targets(args)
    resolve = parse_resolve(args.resolve)
    pins = tuple(parse_pin(p) for p in args.pin)
    if args.timeout <= 0 or args.timeout != args.timeout:
        raise UsageError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: must be at least 1")
    if args.sni is not None and not args.sni.strip():
        raise UsageError("--sni needs a host name (use --no-sni to send none)")
    ca = check_pem_file("--ca-bundle", args.ca_bundle)
    ref = check_pem_file("--reference-ca-bundle", args.reference_ca_bundle)
    cert = check_pem_file("--client-cert", args.client_cert)
    key = check_pem_file("--client-key", args.client_key, want="PRIVATE KEY")
    if key and not cert:
        raise UsageError("--client-key needs --client-cert")
    try:
        for label, path in (("--ca-bundle", ca), ("--reference-ca-bundle", ref)):
            if path:
                load_store(label, path)
        policy_kwargs: dict[str, Any] = dict(tls_min=args.tls_min, tls_max=args.tls_max, ca_bundle=ca,
                                             client_cert=cert, client_key=key, timeout=args.timeout)
        if args.ciphers:
            policy_kwargs["ciphers"] = args.ciphers
        policy = TLSPolicy(**policy_kwargs)
        policy.ssl_context()  # fail now, with one line, on a bad bundle/cipher/identity
    except (PolicyError, StoreError) as exc:
        raise UsageError(str(exc)) from None
    proxies = proxy_settings(args)
    endpoints = []
    for text in targets:
        ep = parse_target(text)
        endpoint = Endpoint(host=ep.host, port=ep.port, path=ep.path,
                            sni=args.sni.strip().lower() if args.sni else None,
                            send_sni=not args.no_sni, address=resolve.get((ep.host, ep.port)))
        try:
            endpoints.append(route(endpoint, proxies, resolve))
        except ProxyConfigError as exc:
            raise UsageError(str(exc)) from None
    options = DiagnoseOptions(reference_ca_bundle=ref, expect_issuers=tuple(args.expect_issuer), pins=pins,
                              aia=not args.no_aia)
    return endpoints, policy, options


def proxy_settings(args: Any, env: Any = None) -> ProxySettings:
    """``--proxy``/``--proxy-password-env``/``--no-proxy`` and the environment, checked now (one line, exit 2)."""
    try:
        return settings_from_options(getattr(args, "proxy", None), getattr(args, "proxy_password_env", None),
                                     bool(getattr(args, "no_proxy", False)), env)
    except ProxyConfigError as exc:
        raise UsageError(str(exc)) from None


def run_diagnose(args: Any) -> int:
    endpoints, policy, options = build_run(args)
    results = asyncio.run(diagnose_many(endpoints, policy, options, concurrency=args.concurrency))
    out = sys.stdout
    if args.json:
        out.write("".join(json.dumps(d.to_dict(), separators=(",", ":")) + "\n" for d in results))
    else:
        now = options.now()
        out.write("\n".join(render_text(d, now) for d in results) + "\n")
        if len(results) > 1:
            bad = sum(1 for d in results if not d.ok)
            out.write(f"\n{len(results) - bad} healthy, {bad} failing of {len(results)} endpoints\n")
    out.flush()
    return 0 if all(d.ok for d in results) else 1


# --- the human report ---------------------------------------------------------------

def _expiry(not_after: str, now: datetime) -> str:
    when = datetime.fromisoformat(not_after)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    days = (when - now).total_seconds() / 86400
    if days < 0:
        return f"EXPIRED {when.date()} ({-days:.0f} days ago)"
    flag = "  <- expires soon" if days < 14 else ""
    return f"expires {when.date()} (in {days:.0f} days){flag}"


def render_text(d: Diagnosis, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    t = d.endpoint
    where = f"{t.host}:{t.port}" + (f" ({t.address})" if t.address else "") + (f" via proxy {t.proxy.url}" if t.proxy else "")
    lines = [f"{'OK  ' if d.ok else 'FAIL'} {where} -- {d.cause.value}"]
    if d.ok:
        lines.append(f"     {d.protocol} {d.cipher}, handshake {d.handshake_ms:.1f} ms"
                     + (f", ALPN {d.alpn}" if d.alpn else "")
                     + ("" if t.sni_sent == t.host else f", SNI {t.sni_sent}" if t.sni_sent else ", no SNI"))
    lines.append(f"     {d.summary}")
    if d.remediation:
        lines.append("     What to do:")
        lines += [f"       {i}. {step}" for i, step in enumerate(d.remediation, 1)]
    if d.warnings:
        lines.append("     Warnings:")
        lines += [f"       - {w.code}: {w.message}" for w in d.warnings]
    if d.chain:
        lines.append("     Chain as sent (leaf first):")
        for depth, c in enumerate(d.chain):
            pad = "       " + "   " * depth + ("`- " if depth else "")
            lines.append(f"{pad}{c.subject}  [{_expiry(c.not_after, now)}]"
                         + ("  (CA)" if c.is_ca else "") + ("  (self-signed)" if c.self_issued else ""))
            lines.append(f"{'       ' + '   ' * depth}   issuer: {c.issuer}  sha256 {c.sha256[:16]}...")
    ev = d.evidence
    bits = []
    if ev.get("reason"):
        bits.append(f"reason {ev['reason']}")
    if ev.get("verify_code") is not None:
        bits.append(f"verify code {ev['verify_code']} ({ev.get('verify_message')})")
    bits.append(f"{d.handshakes} handshake(s)")
    probes = [p for p in ev.get("probes", [])[1:]]
    if probes:
        bits.append("extra probes: " + ", ".join(f"{p['probe']}={'accepted' if p['ok'] else p.get('reason') or p.get('error_kind')}"
                                                 for p in probes))
    lines.append("     Evidence: " + "; ".join(bits))
    return "\n".join(lines)
