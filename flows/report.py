"""Renderings of the contract §2 report: the CLI's table, the Prefect markdown
artifacts (the run's report and one per target). Pure functions of the report dict.

The artifacts fit the UI's width: five short columns (target, connection, host,
result, TLS version), a row per host and connection, unhealthy targets first;
the summary, the fix, the breaker ("open since … because …; probe at …") and the
ciphers go below the table. Every time is UTC and says so."""

from __future__ import annotations

from typing import Any, Mapping

from cxhealth.tasks.timefmt import utc_text
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
    for warning in report.get("warnings") or []:  # e.g. history_unavailable: said here as in the JSON
        lines.append(f"warning: {warning.get('code')}: {warning.get('message')}" if isinstance(warning, dict)
                     else f"warning: {warning}")
    lines.append("healthy" if report["healthy"] else "UNHEALTHY")
    return "\n".join(lines)


def short_tls(protocol: Any) -> str:
    """``TLSv1.3`` -> ``1.3`` (the cipher goes below the table, not in it)."""
    if not protocol:
        return "–"
    return str(protocol).replace("TLSv", "")


def _path(path: Any, limit: int = 22) -> str:
    text = str(path or "?")
    if text.startswith("https://"):
        text = "/" + text.split("/", 3)[-1] if text.count("/") >= 3 else text
    text = text.split("?", 1)[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result(ok: Any, status: Any, cause: Any, error: Any) -> str:
    if ok:
        return f"ok {status}" if status else "ok"
    if cause not in (None, "ok"):
        return f"**{cause}**"
    if error:
        return f"**{error}**" + (f" {status}" if status else "")
    return f"**HTTP {status}**" if status else "**failed**"


def connection_rows(t: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """A row per host and connection: (connection, host, result, TLS)."""
    rows: list[tuple[str, str, str, str]] = []
    hs, oauth = t.get("handshake") or {}, t.get("oauth") or {}
    breaker = t.get("breaker") or {}
    token_host = t.get("token_host") or (hs.get("target") or {}).get("host") or oauth.get("host") or "–"
    if t.get("cause") == "config_error" and not hs:
        rows.append(("configuration", str(t.get("host") or token_host), "**config_error**", "–"))
    elif hs:
        rows.append(("TLS handshake", str(token_host), _result(hs.get("ok"), None, hs.get("cause"), None),
                     short_tls(hs.get("protocol"))))
    elif t.get("stage") == "breaker_open":
        rows.append(("TLS handshake", str(breaker.get("host") or token_host),
                     f"**breaker open** ({t.get('cause')})", "–"))
    if oauth or (t.get("stage") == "oauth"):
        rows.append(("token", str(oauth.get("host") or token_host),
                     _result(oauth.get("ok"), oauth.get("status"), oauth.get("cause"), oauth.get("error"))
                     if oauth else f"**{t.get('cause')}**", short_tls(oauth.get("protocol"))))
    for e in t.get("endpoints") or []:
        result = _result(e.get("ok"), e.get("status"), e.get("cause"), e.get("error"))
        if e.get("error") == "breaker_open":
            result = "skipped: **breaker open**"
        elif e.get("skipped") and not e.get("ok"):
            result = f"skipped ({e.get('cause') or e.get('error')})"
        rows.append((_path(e.get("path")), str(e.get("host") or "–"), result, short_tls(e.get("protocol"))))
    return rows


def _mark(t: Mapping[str, Any]) -> str:
    return ("✓ " if t["healthy"] else "✗ ") + str(t["name"])


def _overview(targets: Any) -> list[str]:
    """One row per target: four short columns."""
    lines = ["| target | health | stage | cause |", "|---|---|---|---|"]
    for t in targets:
        lines.append(f"| {_mark(t)} | {'ok' if t['healthy'] else '**UNHEALTHY**'} | "
                     f"{(t.get('stage') or '–').replace('_', ' ')} | "
                     f"{'ok' if t['healthy'] else '**' + str(t.get('cause')) + '**'} |")
    return lines


def _connections(t: Mapping[str, Any]) -> list[str]:
    """A row per host and connection: three short columns (the TLS version goes with the result)."""
    lines = ["| connection | host | result |", "|---|---|---|"]
    for conn, host, result, tls in connection_rows(t) or [("–", "–", "–", "–")]:
        lines.append(f"| {conn} | {host} | {result}{', TLS ' + tls if tls != '–' else ''} |")
    return lines


def breaker_text(t: Mapping[str, Any]) -> str | None:
    """``open since … because …; probe at … UTC`` when the target's breaker is not closed."""
    b = t.get("breaker") or {}
    if b.get("state") in (None, "closed"):
        return None
    last = b.get("last_failure") or {}
    text = f"{b.get('state')} for {b.get('host') or t.get('host') or '?'}"
    if last.get("at"):
        text += f" since {utc_text(last['at'])}"
    if last.get("cause"):
        text += f" because `{last['cause']}`" + (f" ({last['summary']})" if last.get("summary") else "")
    if b.get("override"):
        text += f"; operator override `{b['override']}`"
    elif b.get("reopen_at"):
        text += f"; one probe is let through at {utc_text(b['reopen_at'])}"
    return text


def _details(t: Mapping[str, Any]) -> list[str]:
    head = f"### {_mark(t)} — " + ("healthy" if t["healthy"] else f"`{t.get('cause')}`")
    lines = [head, ""] + _connections(t) + [""]
    if t["healthy"]:
        return lines
    where = (f"**Where:** {t.get('stage')} stage, host `{t.get('host') or '?'}`"
             + (f" (token host `{t['token_host']}`)" if t.get("token_host") and t.get("token_host") != t.get("host") else ""))
    if t.get("stage") == "breaker_open":
        where = f"**Where:** host `{t.get('host') or '?'}`, turned away by its open breaker (no connection)"
    lines += [where, "", f"**What:** {t.get('summary')}", ""]
    steps = remediation_for(t)
    if steps:
        lines.append("**Fix:**")
        lines += [f"{i}. {step}" for i, step in enumerate(steps[:4], 1)]
        lines.append("")
    b = breaker_text(t)
    if b and t.get("stage") != "breaker_open":  # a turned-away run's summary already says it
        lines += [f"**Breaker:** {b}", ""]
    return lines


def _tls_facts(t: Mapping[str, Any]) -> str | None:
    facts = []
    hs, oauth = t.get("handshake") or {}, t.get("oauth") or {}
    if hs.get("protocol"):
        facts.append(f"handshake {hs.get('protocol')} {hs.get('cipher') or ''}".strip())
    if oauth.get("protocol"):
        facts.append(f"token {oauth.get('protocol')} {oauth.get('cipher') or ''}".strip())
    for e in t.get("endpoints") or []:
        if e.get("protocol"):
            facts.append(f"{_path(e.get('path'))} {e.get('protocol')} {e.get('cipher') or ''}".strip())
    return ("TLS: " + "; ".join(f"`{f}`" for f in facts)) if facts else None


def report_markdown(report: Mapping[str, Any], title: str = "Integration health") -> str:
    """The run's report artifact: an overview row per target (unhealthy first), then per
    unhealthy target its connections, the summary, the fix and the breaker; the healthy
    targets' connections and the ciphers are folded below."""
    targets = sorted(report["targets"], key=lambda t: bool(t["healthy"]))  # unhealthy first (stable)
    bad = [t for t in targets if not t["healthy"]]
    when = utc_text(min((t.get("started_at") for t in targets if t.get("started_at")), default=None))
    head = (f"# {title}: ✗ UNHEALTHY — " + ", ".join(str(t["name"]) for t in bad)
            if bad else f"# {title}: ✓ healthy — {len(targets)} target(s)")
    lines = [head, "", f"Checked at {when or '?'}. Times are UTC.", ""] + _overview(targets)
    for t in bad:
        lines += [""] + _details(t)
    good = [t for t in targets if t["healthy"]]
    if good:
        lines.append("")
        for t in good:
            lines += _details(t)
    facts = [f"- {t['name']}: {f}" for t in targets for f in [_tls_facts(t)] if f]
    if facts:
        lines += ["", "#### TLS versions and ciphers", "", *facts]
    trends = [(t, _trend(t)) for t in targets]
    if any(trend for _, trend in trends):
        lines += ["", "#### Trend and changes", ""]
        for t, trend in trends:
            if trend:
                lines += [f"**{t['name']}**", "", *trend, ""]
    alerts = report.get("alerts")
    if alerts:
        lines += ["", f"Slack: sent {len(alerts.get('sent') or [])}, queued {alerts.get('queued', 0)}"
                  + (f"; configuration errors: {'; '.join(alerts['config_errors'])}" if alerts.get("config_errors") else "")]
    return "\n".join(lines)


def target_markdown(t: Mapping[str, Any]) -> str:
    """One target's artifact: its connections, and what to do when it is unhealthy."""
    lines = [f"Checked at {utc_text(t.get('started_at')) or '?'}. Times are UTC.", ""] + _details(t)
    lines[2] = lines[2].replace("### ", "# ", 1)
    facts = _tls_facts(t)
    if facts:
        lines += ["", facts]
    trend = _trend(t)  # contract §4: the handshake time's trend and the changes with dates
    if trend:
        lines += ["", *trend]
    return "\n".join(lines)


def _trend(t: Mapping[str, Any]) -> list[str]:
    from cxhealth.tasks.history.publish import trend_markdown

    return trend_markdown(t)
