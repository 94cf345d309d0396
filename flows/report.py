"""Renderings of the contract §2 report: the CLI's table, the Prefect markdown
artifact, a target's table artifact. Pure functions of the report dict."""

from __future__ import annotations

from typing import Any, Mapping

from cxhealth.tasks.remedies import remediation_for


def render_table(report: Mapping[str, Any]) -> str:
    rows = [("TARGET", "HEALTH", "STAGE", "CAUSE", "TLS", "TOKEN", "ENDPOINTS", "BREAKER")]
    for t in report["targets"]:
        hs = t.get("handshake") or {}
        oauth = t.get("oauth") or {}
        eps = t.get("endpoints") or []
        ok_eps = sum(1 for e in eps if e.get("ok"))
        tls = hs.get("protocol") or "-"
        token = "-" if not oauth else (f"{oauth.get('status')} {oauth.get('ms') or 0:.0f}ms" if oauth.get("ok")
                                       else f"FAIL {oauth.get('error') or oauth.get('status')}")
        breaker = (t.get("breaker") or {}).get("state", "closed")
        rows.append((t["name"], "ok" if t["healthy"] else "FAIL", t.get("stage") or "-", t.get("cause") or "ok",
                     tls, token, f"{ok_eps}/{len(eps)}" if eps else "-", breaker))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for t in report["targets"]:
        if not t["healthy"]:
            lines.append(f"- {t['name']}: {t.get('summary')}")
            for step in remediation_for(t)[:2]:
                lines.append(f"    fix: {step}")
    alerts = report.get("alerts")
    if alerts:
        lines.append(f"alerts: sent {len(alerts.get('sent', []))}, queued {alerts.get('queued', 0)}"
                     + (f", config errors: {'; '.join(alerts['config_errors'])}" if alerts.get("config_errors") else ""))
    lines.append("healthy" if report["healthy"] else "UNHEALTHY")
    return "\n".join(lines)


def report_markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# Integration health: {'healthy' if report['healthy'] else 'UNHEALTHY'}", "",
             "| target | health | stage | cause | TLS | token | endpoints | breaker |",
             "|---|---|---|---|---|---|---|---|"]
    for t in report["targets"]:
        hs, oauth, eps = t.get("handshake") or {}, t.get("oauth") or {}, t.get("endpoints") or []
        lines.append(f"| {t['name']} | {'ok' if t['healthy'] else '**FAIL**'} | {t.get('stage') or '-'} | "
                     f"`{t.get('cause')}` | {hs.get('protocol') or '-'} {hs.get('cipher') or ''} | "
                     f"{oauth.get('status') or '-'} | {sum(1 for e in eps if e.get('ok'))}/{len(eps)} | "
                     f"{(t.get('breaker') or {}).get('state')} |")
    for t in report["targets"]:
        if t["healthy"]:
            continue
        lines += ["", f"## {t['name']}: `{t.get('cause')}` at {t.get('stage')}", "", t.get("summary") or ""]
        for i, step in enumerate(remediation_for(t), 1):
            lines.append(f"{i}. {step}")
    return "\n".join(lines)


def target_table(t: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [{"check": "handshake", "ok": (t.get("handshake") or {}).get("ok"),
             "detail": (t.get("handshake") or {}).get("cause"),
             "protocol": (t.get("handshake") or {}).get("protocol"), "ms": (t.get("handshake") or {}).get("handshake_ms")}]
    if t.get("oauth"):
        o = t["oauth"]
        rows.append({"check": "oauth", "ok": o.get("ok"), "detail": o.get("error") or o.get("status"),
                     "protocol": o.get("protocol"), "ms": o.get("ms")})
    for e in t.get("endpoints") or []:
        rows.append({"check": e.get("path"), "ok": e.get("ok"), "detail": e.get("error") or e.get("status"),
                     "protocol": e.get("protocol"), "ms": e.get("ms")})
    rows.append({"check": "breaker", "ok": (t.get("breaker") or {}).get("state") == "closed",
                 "detail": (t.get("breaker") or {}).get("state"), "protocol": None,
                 "ms": None})
    return rows
