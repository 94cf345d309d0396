"""Where the history shows outside the CLI: Prefect events and the report artifact. Pure.

* :func:`drift_event_specs` — one ``cxhealth.tls.drift`` event per drift of a run
  (resource: the host; related: the target; payload: code, from, to), as keyword
  arguments for ``prefect.events.emit_event`` (the flow emits them: no Prefect here).
* :func:`trend_markdown` — a target's handshake-time trend as a unicode sparkline
  (renders in the Prefect UI's markdown as plain text) and its recent changes with dates.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

BARS = "▁▂▃▄▅▆▇█"
FAILED = "×"


def drift_event_specs(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        for e in d.get("drift") or ():
            host = str(e.get("host"))
            out.append({
                "event": "cxhealth.tls.drift",
                "resource": {"prefect.resource.id": f"cxhealth.host.{host}",
                             "prefect.resource.name": f"{host}: {e.get('code')}",
                             "cxhealth.host": host, "cxhealth.target": str(d["name"]),
                             "cxhealth.drift": str(e.get("code"))},
                "related": [{"prefect.resource.id": f"cxhealth.target.{d['name']}", "prefect.resource.role": "target",
                             "prefect.resource.name": str(d["name"])}],
                "payload": {"code": e.get("code"), "from": e.get("from"), "to": e.get("to"),
                            "address": e.get("address"), "at": e.get("at")},
            })
    return out


def sparkline(values: Sequence[float | None]) -> str:
    """``▁▂▇█`` scaled between the smallest and largest value; ``×`` for a failed check."""
    known = [v for v in values if v is not None]
    if not known:
        return FAILED * len(values)
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    return "".join(FAILED if v is None else BARS[min(len(BARS) - 1, int((v - low) / span * len(BARS)))]
                   for v in values)


def _when(value: str | None) -> str:
    if not value:
        return "?"
    return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def trend_markdown(t: Mapping[str, Any]) -> list[str]:
    """Markdown lines for a target's ``trend`` (set by the recording step); empty without one."""
    trend = t.get("trend") or {}
    points = trend.get("handshake_ms") or []
    changes = trend.get("changes") or []
    if not points and not changes:
        return []
    lines = []
    if points:
        values = [p.get("ms") for p in points]
        known = [v for v in values if v is not None]
        span = f"{_when(points[0].get('at'))} – {_when(points[-1].get('at'))}"
        rng = f"{min(known):.0f}–{max(known):.0f} ms, latest {known[-1]:.0f} ms" if known else "every check failed"
        lines.append(f"Handshake time, last {len(points)} checks ({span}): `{sparkline(values)}` {rng}"
                     + (f"; {FAILED} = failed" if None in values else ""))
    if changes:
        lines.append("")
        lines.append("Changes:")
        for c in changes:
            where = str(c.get("host")) + (f" ({c['address']})" if c.get("address") else "")
            lines.append(f"- {_when(c.get('at'))} `{c.get('code')}` on {where}: {c.get('from')} → {c.get('to')}")
    return lines
