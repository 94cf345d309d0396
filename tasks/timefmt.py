"""One clock for people: every time a person reads (state messages, artifacts,
log lines, Slack) is UTC and says so. The JSON report keeps ISO 8601."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def utc_text(when: datetime | str | None) -> str | None:
    """One clock for people: ``2026-12-01 09:10:05 UTC`` (the JSON keeps ISO 8601)."""
    if when is None:
        return None
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
