"""``cxhealth diagnose``: argument checking, the run, and the two renderings.

Stays light: no Prefect, no httpx.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, Sequence
from urllib.parse import urlsplit

from cxhealth.tasks.rules import MAX_STEP_TIMEOUT_S, Resolve, host_name, spki_pin
from cxhealth.tasks.tls import DiagnoseOptions, Diagnosis, Endpoint, PolicyError, TLSPolicy, diagnose_many
from cxhealth.tasks.tls.chain import StoreError, load_store
from cxhealth.tasks.tls.model import MAX_CHAIN, MAX_NAME, clip
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
    check_host_name(host, f"target {clip_text(raw)!r}")
    return Endpoint(host=host.lower(), port=port or 443, path=parts.path or "/")


def clip_text(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_host_name(host: str, what: str) -> None:
    """DNS's limits (RFC 1035), the rule targets.toml's hosts follow too (tasks/rules.py)."""
    try:
        host_name(host)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


MAX_TIMEOUT_S = MAX_STEP_TIMEOUT_S  # per network step; a diagnosis then ends within 3x that


def parse_resolve(items: Sequence[str]) -> dict[tuple[str, int], str]:
    """``{(host, port): first address}`` (what a connection dials)."""
    return {key: addresses[0] for key, addresses in parse_resolve_all(items).items()}


def parse_resolve_all(items: Sequence[str]) -> dict[tuple[str, int], tuple[str, ...]]:
    """``{(host, port): (addr, ...)}``: several comma-separated addresses are a name's several
    A records (contract §1/§4); each is diagnosed. The rule is targets.toml's too (tasks/rules.py)."""
    return dict(_parse_resolve_all(tuple(items)))


@functools.lru_cache(maxsize=4)  # a run reads its --resolve list twice (dial addresses, address pools)
def _parse_resolve_all(items: tuple[str, ...]) -> dict[tuple[str, int], tuple[str, ...]]:
    out: dict[tuple[str, int], tuple[str, ...]] = {}
    for item in items:
        try:
            entry = Resolve.parse(item)
        except ValueError as exc:
            raise UsageError(f"--resolve {exc}") from None
        out[(entry.host, entry.port)] = entry.addresses
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
    return [text for _, text in read_numbered_targets(args)]


def read_numbered_targets(args: Any) -> list[tuple[str, str]]:
    """(where, target) pairs: where is "target N" or "--from FILE: line N", for error messages."""
    items = [(f"target {i}", t) for i, t in enumerate(args.targets, 1)]
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
        items += [(f"line {n}", ln.strip()) for n, ln in enumerate(lines, 1)
                  if ln.strip() and not ln.lstrip().startswith("#")]
    if not items:
        raise UsageError("no TARGET given (pass one or more, or --from FILE)")
    return items


def parse_targets(args: Any) -> list[Endpoint]:
    """Every target, or one line naming every malformed one (contract §1: --from names each)."""
    parsed, errors = [], []
    for where, text in read_numbered_targets(args):
        try:
            parsed.append(parse_target(text))
        except UsageError as exc:
            errors.append(f"{where}: {exc}" if where.startswith("line") else str(exc))
    if errors:
        prefix = f"--from {args.from_file}: " if args.from_file and any(e.startswith("line") for e in errors) else ""
        shown = "; ".join(errors[:20]) + (f"; and {len(errors) - 20} more" if len(errors) > 20 else "")
        raise UsageError(f"{prefix}{len(errors)} malformed target(s): {shown}" if len(errors) > 1 else prefix + shown)
    return parsed


def client_key_for(args: Any, cert: str | None, key: str | None) -> str | None:
    """The key file to hand OpenSSL: the given one, or — when it is encrypted — a decrypted copy
    in a private temp dir (0700/0600, removed at exit), made with the passphrase named by
    ``--client-key-password-env``. OpenSSL would prompt on the terminal for an encrypted key;
    this tool never prompts (contract §1)."""
    source = key or cert
    if source is None:
        return key
    with open(source, "rb") as fh:
        data = fh.read()
    if b"ENCRYPTED" not in data:
        return key
    option = "--client-key" if key else "--client-cert"
    var = getattr(args, "client_key_password_env", None)
    if not var:
        raise UsageError(f"{option} {source}: the key is encrypted, pass --client-key-password-env VAR "
                         "(the name of the environment variable holding its passphrase)")
    passphrase = os.environ.get(var)
    if passphrase is None:
        raise UsageError(f"--client-key-password-env {var}: the variable is not set")
    if not passphrase:
        raise UsageError(f"--client-key-password-env {var}: the variable is empty")
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(_key_block(data), password=passphrase.encode("utf-8"))
    except (ValueError, TypeError):
        raise UsageError(f"{option} {source}: the passphrase in ${var} does not decrypt the key") from None
    except Exception as exc:  # noqa: BLE001 - an unsupported key type or cipher
        raise UsageError(f"{option} {source}: the key cannot be read ({type(exc).__name__})") from None
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="cxhealth-key-")  # 0700
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "client.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _key_block(data: bytes) -> bytes:
    """The private-key PEM block of a file that may also hold certificates."""
    start = data.find(b"-----BEGIN ")
    while start >= 0:
        end_line = data.find(b"-----", start + 11)
        label = data[start + 11:end_line]
        if b"PRIVATE KEY" in label:
            stop = data.find(b"-----END " + label + b"-----", end_line)
            if stop >= 0:
                return data[start:stop + len(label) + 14] + b"\n"
        start = data.find(b"-----BEGIN ", end_line)
    return data


def build_run(args: Any) -> tuple[list[Endpoint], TLSPolicy, DiagnoseOptions]:
    parsed = parse_targets(args)
    resolve = parse_resolve(args.resolve)
    pins = tuple(parse_pin(p) for p in args.pin)
    if not 0 < args.timeout <= MAX_TIMEOUT_S:  # NaN fails too; inf would never give up (3x the timeout bounds a run)
        raise UsageError(f"--timeout {args.timeout:g}: must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}")
    if any(not text.strip() for text in args.expect_issuer):
        raise UsageError("--expect-issuer needs a text the issuer's subject must contain (an empty one matches every chain)")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: must be at least 1")
    if args.sni is not None and not args.sni.strip():
        raise UsageError("--sni needs a host name (use --no-sni to send none)")
    if args.sni is not None:
        check_host_name(args.sni, f"--sni {args.sni!r}")
    if args.ciphers is not None and not args.ciphers.strip():
        raise UsageError("--ciphers needs an OpenSSL cipher string (e.g. ECDHE+AESGCM); leave it out for the default")
    ca = check_pem_file("--ca-bundle", args.ca_bundle)
    ref = check_pem_file("--reference-ca-bundle", args.reference_ca_bundle)
    cert = check_pem_file("--client-cert", args.client_cert)
    key = check_pem_file("--client-key", args.client_key, want="PRIVATE KEY")
    if key and not cert:
        raise UsageError("--client-key needs --client-cert")
    key = client_key_for(args, cert, key)
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
    for ep in parsed:
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


async def _diagnose_all(endpoints: Sequence[Endpoint], policy: TLSPolicy, options: DiagnoseOptions,
                        concurrency: int, pools: dict[tuple[str, int], tuple[str, ...]]) -> list[Diagnosis]:
    """As diagnose_many, but a host given several --resolve addresses has each diagnosed (contract §4)."""
    if not any(len(a) > 1 for a in pools.values()):
        return await diagnose_many(endpoints, policy, options, concurrency=concurrency)
    from cxhealth.tasks.addresses import diagnose_addresses

    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(endpoint: Endpoint) -> Diagnosis:
        async with gate:
            return await diagnose_addresses(endpoint, policy, options, pools.get((endpoint.host, endpoint.port)))

    return list(await asyncio.gather(*(one(e) for e in endpoints)))


def record_diagnoses(results: Sequence[Diagnosis]) -> list[list[dict[str, Any]]]:
    """``--record``: each diagnosis into the default history store (target ``diagnose``); the drift
    each showed. A store error is one warning line on stderr, never the verdict's exit status."""
    from cxhealth.tasks.history import HistoryError, open_history_store, record_target_observations

    try:
        store = open_history_store()
    except (HistoryError, ValueError) as exc:
        print(f"warning: not recorded: {exc}", file=sys.stderr)
        return [[] for _ in results]
    drift = []
    try:
        for d in results:
            doc: dict[str, Any] = {"name": "diagnose", "healthy": d.ok, "handshake": d.to_dict(), "endpoints": []}
            problem = record_target_observations(doc, store)
            if problem:
                print(f"warning: {problem}", file=sys.stderr)
            drift.append(doc.get("drift") or [])
    finally:
        store.close()
    return drift


def run_diagnose(args: Any) -> int:
    import warnings

    with warnings.catch_warnings():
        # Nothing but the diagnosis and the one-line error reaches stdout and stderr (contract §1):
        # no deprecation notice from cryptography or ssl about the legacy certificates under diagnosis.
        warnings.simplefilter("ignore")
        return _run_diagnose(args)


def _safe_dict(d: Diagnosis) -> dict[str, Any]:
    try:
        return d.to_dict()
    except Exception as exc:  # noqa: BLE001 - one target's rendering never costs another its line
        return {"target": {"host": d.endpoint.host, "port": d.endpoint.port}, "ok": d.ok, "cause": d.cause.value,
                "summary": d.summary[:1000], "remediation": [], "protocol": d.protocol, "cipher": d.cipher,
                "handshake_ms": d.handshake_ms, "chain": [], "warnings": [],
                "evidence": {"render_error": type(exc).__name__}}


def _json_line(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str) + "\n"


def _run_diagnose(args: Any) -> int:
    endpoints, policy, options = build_run(args)
    pools = parse_resolve_all(args.resolve)
    import gc

    # What is alive now (modules, the parsed targets) lives as long as the process: kept out
    # of the collector's full passes, which a fleet's thousands of probes trigger (~0.05 s at 2,000).
    gc.freeze()
    results = asyncio.run(_diagnose_all(endpoints, policy, options, args.concurrency, pools))
    drift = record_diagnoses(results) if getattr(args, "record", False) else None
    out = sys.stdout
    if args.json:
        docs = [_safe_dict(d) for d in results]
        if drift is not None:
            for doc, events in zip(docs, drift):
                doc["drift"] = events
        out.write("".join(_json_line(doc) for doc in docs))
    else:
        now = options.now()
        out.write("\n".join(_render_safely(d, now) for d in results) + "\n")
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


def _render_safely(d: Diagnosis, now: datetime) -> str:
    try:
        return render_text(d, now)
    except Exception as exc:  # noqa: BLE001 - one target's rendering never costs another its line
        return f"{'OK  ' if d.ok else 'FAIL'} {d.endpoint.host}:{d.endpoint.port} -- {d.cause.value}\n     {d.summary[:1000]}" \
               f"\n     (the report could not be rendered in full: {type(exc).__name__})"


def render_text(d: Diagnosis, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    t = d.endpoint
    where = f"{t.host}:{t.port}" + (f" ({t.address})" if t.address else "") + (f" via proxy {t.proxy.url}" if t.proxy else "")
    lines = [f"{'OK  ' if d.ok else 'FAIL'} {where} -- {d.cause.value}"]
    if d.ok:
        lines.append(f"     {d.protocol} {d.cipher}, handshake {d.handshake_ms:.1f} ms"
                     + (f", ALPN {d.alpn}" if d.alpn else "")
                     + ("" if t.sni_sent == t.host else f", SNI {t.sni_sent}" if t.sni_sent else ", no SNI"))
    lines.append(f"     {clip(d.summary)}")
    pool = d.evidence.get("addresses") or []
    if pool:  # several addresses, each diagnosed (contract §4)
        lines.append("     Addresses: " + "; ".join(
            f"{a['address']} {a.get('protocol') or '-'}" if a.get("ok") else f"{a['address']} {a.get('cause')}"
            for a in pool))
    if d.remediation:
        lines.append("     What to do:")
        lines += [f"       {i}. {clip(step)}" for i, step in enumerate(d.remediation, 1)]
    if d.warnings:
        lines.append("     Warnings:")
        lines += [f"       - {w.code}: {clip(w.message)}" for w in d.warnings]
    if d.chain:
        lines.append("     Chain as sent (leaf first):")
        for depth, c in enumerate(d.chain[:MAX_CHAIN]):
            pad = "       " + "   " * depth + ("`- " if depth else "")
            lines.append(f"{pad}{clip(c.subject, MAX_NAME)}  [{_expiry(c.not_after, now)}]"
                         + ("  (CA)" if c.is_ca else "") + ("  (self-signed)" if c.self_issued else ""))
            lines.append(f"{'       ' + '   ' * depth}   issuer: {clip(c.issuer, MAX_NAME)}  sha256 {c.sha256[:16]}...")
        if len(d.chain) > MAX_CHAIN:
            lines.append(f"       ... and {len(d.chain) - MAX_CHAIN} more certificate(s) ({len(d.chain)} in all)")
    ev = d.evidence
    bits = []
    if ev.get("reason"):
        bits.append(f"reason {ev['reason']}")
    if ev.get("verify_code") is not None:
        bits.append(f"verify code {ev['verify_code']} ({ev.get('verify_message')})")
    proxy = ev.get("proxy") if isinstance(ev.get("proxy"), dict) else None
    if proxy and d.cause.value.startswith("proxy_") and proxy.get("status_line"):
        bits.append(f"the proxy answered {proxy['status_line']!r}"
                    + (f" offering {', '.join(proxy['auth_schemes'])}" if proxy.get("auth_schemes") else "")
                    + (f" ({proxy['x_squid_error']})" if proxy.get("x_squid_error") else ""))
    bits.append(f"{d.handshakes} handshake(s)")
    probes = [p for p in ev.get("probes", [])[1:]]
    if probes:
        bits.append("extra probes: " + ", ".join(f"{p['probe']}={'accepted' if p['ok'] else p.get('reason') or p.get('error_kind')}"
                                                 for p in probes))
    lines.append("     Evidence: " + "; ".join(bits))
    return "\n".join(lines)
