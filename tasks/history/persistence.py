"""Persistence: is a target's failure transient, intermittent or persistent? A pure function.

Judged over the target's last checks (contract §4: the last 10 within retention),
newest first. A check failed when any of its connections failed; it was split
when some addresses of a host failed and others did not (a pool whose members
behave differently fails "at random" for clients that land on the bad ones).
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from .model import CheckOutcome, HistoryPolicy, Persistence, PersistenceKind


def judge_persistence(checks: Sequence[CheckOutcome], *, streak_started: datetime | None = None,
                      policy: HistoryPolicy = HistoryPolicy()) -> Persistence | None:
    """The persistence of the newest check's failure, or None when it did not fail.

    Args:
        checks: the target's checks, newest first (the current one included).
        streak_started: when every check in the window failed, the first failed
            check after the target's last healthy one, if the store knows it from
            before the window (a host broken for a week is persistent since then).
        policy: how many checks to judge over.
    """
    window = list(checks)[:policy.persistence_checks]
    if not window or not window[0].failed:
        return None
    streak = 0
    while streak < len(window) and window[streak].failed:
        streak += 1
    streak_since = window[streak - 1].at
    if streak == len(window) and streak_started is not None and streak_started < streak_since:
        streak_since = streak_started
    failed = [c for c in window if c.failed]
    earlier_failures = any(c.failed for c in window[streak:])
    if window[0].split or earlier_failures:
        # Failures that come and go (across checks, or across a host's addresses).
        since = failed[-1].at if earlier_failures else streak_since
        return Persistence(PersistenceKind.INTERMITTENT, since)
    if streak == 1:
        return Persistence(PersistenceKind.TRANSIENT, window[0].at)
    return Persistence(PersistenceKind.PERSISTENT, streak_since)
