"""``cxhealth history [HOST] [--targets FILE] [--since 7d] [--json]`` (contract §4).

Newest first: the observations and the drift events, then the upcoming expiries.
The store is the targets file's ``[history] store`` (the default without one);
with ``--targets`` only that file's targets are shown. Prefect-free.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from .errors import UsageError

_SINCE = re.compile(r"^\s*(\d{1,5})\s*([dh])\s*$", re.IGNORECASE)


def parse_since(text: str) -> timedelta:
    """``7d`` / ``12h`` (contract §4). Raises UsageError."""
    m = _SINCE.match(text or "")
    if not m or int(m.group(1)) < 1:
        raise UsageError(f"--since {text!r}: write a number of days or hours, e.g. 7d or 12h")
    n = int(m.group(1))
    return timedelta(days=n) if m.group(2).lower() == "d" else timedelta(hours=n)


def history_source(targets_file: str | None) -> tuple[Any, list[str] | None]:
    """(HistorySettings, target names or None for all) from ``--targets``."""
    from cxhealth.tasks.targets import HistorySettings, TargetConfigError, load_targets

    if targets_file is None:
        return HistorySettings(), None
    try:
        config = load_targets(targets_file)
    except TargetConfigError as exc:
        raise UsageError(str(exc)) from None
    return config.history, [t.name for t in config.targets]


def open_store(settings: Any) -> Any | None:
    """The store, or None when a SQLite store does not exist yet (nothing recorded)."""
    from cxhealth.tasks.history import HistoryError, open_history_store

    if settings.store.lower().startswith("sqlite:///"):
        if not Path(settings.store[len("sqlite:///"):]).expanduser().exists():
            return None
    try:
        return open_history_store(settings.store, settings.retention_days)
    except (HistoryError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def expiries(observations: Sequence[Any], now: datetime) -> list[dict[str, Any]]:
    """The earliest expiry each (target, host) last presented, soonest first."""
    latest: dict[tuple[str, str, int], Any] = {}
    for o in observations:  # newest first: the first seen is the latest
        if o.not_after is not None:
            latest.setdefault((o.target, o.host, o.port), o)
    out = [{"kind": "expiry", "target": o.target, "host": o.host, "port": o.port,
            "not_after": o.not_after.isoformat(timespec="seconds"),
            "days": round((o.not_after - now).total_seconds() / 86400, 1)} for o in latest.values()]
    return sorted(out, key=lambda e: e["not_after"])


def history_items(store: Any, host: str | None, targets: list[str] | None, since: datetime,
                  now: datetime) -> list[dict[str, Any]]:
    observations = store.observations(host=host, targets=targets, since=since)
    drift = store.drift_events(host=host, targets=targets, since=since)
    items = [o.to_dict() for o in observations] + [d.to_dict() for d in drift]
    # newest first; at one time a drift comes before the observation that showed it
    items.sort(key=lambda d: (d.get("until") or d["at"], d["kind"] == "drift"), reverse=True)
    return items + expiries(observations, now)


def render(items: Sequence[dict[str, Any]]) -> str:
    lines = []
    for d in items:
        if d["kind"] == "drift":
            where = f"{d['host']}:{d['port']}" + (f" {d['address']}" if d.get("address") else "")
            lines.append(f"{_when(d['at'])}  DRIFT {d['code']:<18} {d['target']}  {where}: {d['from']} -> {d['to']}")
        elif d["kind"] == "observation":
            where = f"{d['host']}:{d['port']}" + (f" {d['address']}" if d.get("address") else "")
            ms = f"{d['handshake_ms']:.1f} ms" if d.get("handshake_ms") is not None else "-"
            seen = f"  x{d['count']} since {_when(d['at'])}" if d.get("count") else ""
            lines.append(f"{_when(d.get('until') or d['at'])}  {d['cause']:<24} {d['target']}  {where}  "
                         f"{d.get('protocol') or '-'} {d.get('cipher') or '-'}  {ms}{seen}")
        else:
            lines.append(f"expires {_when(d['not_after'])} ({d['days']:.0f} days)  {d['target']}  {d['host']}:{d['port']}")
    return "\n".join(lines) if lines else "no observations in this period"


def run_history(args: Any) -> int:
    since = parse_since(args.since)
    settings, targets = history_source(args.targets)
    store = open_store(settings)
    now = datetime.now(timezone.utc)
    if store is None:
        items: list[dict[str, Any]] = []
    else:
        try:
            items = history_items(store, (args.host or "").lower() or None, targets, now - since, now)
        finally:
            store.close()
    if args.json:
        for d in items:
            print(json.dumps(d))
    else:
        print(render(items))
    return 0
