"""``cxhealth run``: the integration checks of a targets.toml, with or without Prefect.

Without ``--flow`` nothing imports Prefect: the checks run in-process. With
``--flow`` the same checks run as the ``integration-health`` flow, recorded by
whichever Prefect API is configured (the embedded SQLite one by default).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Mapping, Sequence

from .cli import UsageError


def load_run_config(path: str, only: Sequence[str] = ()) -> tuple[Any, list[Any]]:
    """Load and validate the file and every secret it names: bad input is exit 2."""
    from tasks.targets import TargetConfigError, load_targets

    try:
        config = load_targets(path)
        selected = [config.target(n) for n in only] if only else list(config.targets)
        for target in selected:  # a missing secret is a configuration error, found before any network
            target.client_secret()
            if target.access_key_secret_env:
                target.access_key_secret()
    except TargetConfigError as exc:
        raise UsageError(str(exc)) from None
    if not selected:
        raise UsageError(f"{path}: no [[target]] to check")
    return config, selected


def alert_settings(config: Any, environ: Mapping[str, str] | None = None) -> Any | None:
    """The [slack] table as AlertSettings (None without one). Raises UsageError."""
    if config.slack is None:
        return None
    from dataclasses import asdict

    from tasks.alerts import AlertConfigError, AlertSettings

    table = {k: v for k, v in asdict(config.slack).items() if v is not None}
    try:
        return AlertSettings.from_config(table, environ)
    except AlertConfigError as exc:
        raise UsageError(str(exc)) from None


def breaker_for(config: Any) -> Any:
    from tasks.breaker import BreakerConfig, open_breaker

    b = config.breaker
    try:
        return open_breaker(b.store, BreakerConfig(threshold=b.threshold, window_s=b.window_s, open_s=b.open_s,
                                                   max_open_s=b.max_open_s))
    except ValueError as exc:
        raise UsageError(f"[breaker] {exc}") from None


def deliver_alerts(config: Any, settings: Any, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Post what this run changed to Slack (incidents, resolves, breaker transitions)."""
    if settings is None:
        return None
    from tasks.alerts import Alerter, open_alert_store

    transitions = [t for r in runs for t in r.get("transitions", [])]
    try:
        store = open_alert_store(config.breaker.store)
    except Exception as exc:  # noqa: BLE001 - the health verdict stands without alerts
        return {"errors": [f"alert store unavailable ({type(exc).__name__})"]}
    report = Alerter(settings, store).process(runs, transitions)
    return report.to_dict()


async def check_all(config: Any, targets: Sequence[Any]) -> list[dict[str, Any]]:
    from tasks.health import check_targets

    breaker = breaker_for(config)
    try:
        runs = await check_targets(targets, breaker)
    finally:
        breaker.close()
    return [r.to_dict() for r in runs]


def run_run(args: Any) -> int:
    config, targets = load_run_config(args.targets, args.only)
    settings = None if args.no_alerts else alert_settings(config)
    if args.flow:
        import os

        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # busy machines
        os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "CRITICAL")  # no ephemeral-server shutdown noise
        from .integration_health import run_flow_sync

        report = run_flow_sync(args.targets, [t.name for t in targets] if args.only else None,
                               alerts=not args.no_alerts)
    else:
        if sys.stderr.isatty() and not args.json:
            print(f"checking {len(targets)} target(s): {', '.join(t.name for t in targets)} ...", file=sys.stderr)
        runs = asyncio.run(check_all(config, targets))
        report = {"healthy": all(r["healthy"] for r in runs), "targets": runs}
        alerts = deliver_alerts(config, settings, runs)
        if alerts is not None:
            report["alerts"] = alerts
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print(render_table(report))
    return 0 if report["healthy"] else 1


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
            for step in _remediation(t)[:2]:
                lines.append(f"    fix: {step}")
    alerts = report.get("alerts")
    if alerts:
        lines.append(f"alerts: sent {len(alerts.get('sent', []))}, queued {alerts.get('queued', 0)}"
                     + (f", config errors: {'; '.join(alerts['config_errors'])}" if alerts.get("config_errors") else ""))
    lines.append("healthy" if report["healthy"] else "UNHEALTHY")
    return "\n".join(lines)


def _remediation(target: Mapping[str, Any]) -> list[str]:
    stage = target.get("stage")
    if stage == "handshake":
        return list((target.get("handshake") or {}).get("remediation") or [])
    if stage == "oauth":
        return list((target.get("oauth") or {}).get("remediation") or [])
    if stage == "endpoints":
        for e in target.get("endpoints") or []:
            if not e.get("ok"):
                return list(e.get("remediation") or [])
    return []
