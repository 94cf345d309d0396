"""The breaker's state machine: pure functions over one host's record.

No I/O and no clock of its own: every function takes ``now`` (epoch seconds)
and returns the new record (or ``None`` when nothing changed) with the answer.
The SQLite and memory stores run these functions inside their critical
section; the Redis store runs the Lua script in ``redis_script.py``, a port of this
module, which the shared store tests hold to the same behaviour.

Rules (issue 4):

* CLOSED -> OPEN when ``threshold`` failures fall within ``window_s``
  (``now - t <= window_s``, exact timestamps). Only failures of callers
  admitted in the current incident epoch count; a result reported after the
  breaker opened (and maybe closed again) is history, not news.
* OPEN rejects until ``reopen_at``; the first caller after it becomes the
  half-open probe under a lease of ``lease_s``; others are rejected.
* Only the lease holder's result decides HALF_OPEN: success -> CLOSED, failure
  -> OPEN for the next backoff. An expired lease is taken over by the next
  caller; the old holder's token then no longer matches and its result is
  ignored. (A late result from a holder whose lease expired but was *not*
  taken over still counts: nobody else has probed.)
* Overrides: FORCED_OPEN rejects everyone with no reopen time; DISABLED admits
  everyone and counts no failures. The machine underneath keeps its state.
* Cold starts (contract §3): while CLOSED with no success recorded within
  ``window_s``, at most ``threshold - failures_in_window`` callers are in flight
  at once — each holds a slot (a lease of ``lease_s``); the next caller is told
  to wait (``Decision.wait``) until a slot frees, a success is recorded (then
  everyone proceeds) or the breaker opens (then everyone is rejected). So many
  processes starting at once reach a failing host no more often than the same
  checks one after another. A slot holder's result (or :func:`release`) frees
  its slot; a dead holder's slot expires with its lease.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from .model import (
    BreakerConfig,
    BreakerState,
    BreakerStatus,
    Decision,
    Override,
    Transition,
    TransitionKind,
    to_datetime,
)

_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@dataclass(frozen=True)
class BreakerRecord:
    """One host's persisted breaker state. ``last_failure`` is kept as JSON text."""

    state: BreakerState = _CLOSED
    failures: tuple[float, ...] = ()
    trips: int = 0
    reopen_at: float | None = None
    lease: str | None = None
    lease_expires: float | None = None
    last_failure: str | None = None
    override: Override | None = None
    override_reason: str | None = None
    epoch: int = 0
    last_success: float | None = None
    inflight: tuple[tuple[str, float], ...] = ()  # (slot token, expires) of cold-start callers


def _decode(last_failure: str | None) -> dict | None:
    return None if last_failure is None else json.loads(last_failure)


def admit(
    record: BreakerRecord, now: float, config: BreakerConfig, host: str, new_lease: str,
    store: str = "",
) -> tuple[BreakerRecord | None, Decision]:
    """Decide whether one caller may touch ``host``; ``new_lease`` is used if it probes.

    ``store`` names the store in the Decision (so a later report can be routed).
    """
    if record.override is Override.DISABLED:
        return None, Decision(
            host, True, _CLOSED, override=Override.DISABLED,
            override_reason=record.override_reason, epoch=record.epoch, store=store,
        )
    if record.override is Override.FORCED_OPEN:
        return None, Decision(
            host, False, _OPEN, last_failure=_decode(record.last_failure),
            override=Override.FORCED_OPEN, override_reason=record.override_reason,
            epoch=record.epoch, store=store,
        )
    if record.state is _CLOSED:
        if _recent_success(record, now, config):
            stale = now - float(record.last_success or 0) > config.window_s / 2
            return None, Decision(host, True, _CLOSED, epoch=record.epoch, store=store, note_success=stale)
        live = tuple(s for s in record.inflight if s[1] > now)
        in_window = sum(1 for t in record.failures if now - t <= config.window_s)
        allowed = max(config.threshold - in_window, 1)
        if len(live) >= allowed:
            return None, Decision(host, False, _CLOSED, reopen_at=to_datetime(min(e for _, e in live)),
                                  epoch=record.epoch, store=store, wait=True)
        new = replace(record, inflight=live + ((new_lease, now + config.lease_s),))
        return new, Decision(host, True, _CLOSED, lease=new_lease, epoch=record.epoch, store=store,
                             note_success=True)
    if record.state is _OPEN and record.reopen_at is not None and now < record.reopen_at:
        return None, Decision(
            host, False, _OPEN, reopen_at=to_datetime(record.reopen_at),
            last_failure=_decode(record.last_failure), epoch=record.epoch, store=store,
        )
    if (
        record.state is _HALF_OPEN
        and record.lease_expires is not None
        and now < record.lease_expires
    ):
        # Someone else is probing; the earliest another caller could probe
        # is when that lease runs out.
        return None, Decision(
            host, False, _HALF_OPEN, reopen_at=to_datetime(record.lease_expires),
            last_failure=_decode(record.last_failure), epoch=record.epoch, store=store,
        )
    # OPEN with its time passed, or HALF_OPEN with a dead prober: this caller probes.
    new = replace(record, state=_HALF_OPEN, lease=new_lease, lease_expires=now + config.lease_s)
    return new, Decision(
        host, True, _HALF_OPEN, is_probe=True, lease=new_lease,
        last_failure=_decode(record.last_failure), epoch=record.epoch, store=store,
    )


def record_failure(
    record: BreakerRecord,
    now: float,
    config: BreakerConfig,
    host: str,
    summary_json: str,
    epoch: int | None,
    lease: str | None,
) -> tuple[BreakerRecord | None, Transition | None]:
    """Count one handshake failure; return the transition if this one caused it."""
    if record.override is Override.DISABLED:
        return None, None
    if record.state is _CLOSED:
        if epoch is not None and epoch != record.epoch:
            return None, None  # admitted before an incident that has since ended
        failures = tuple(t for t in record.failures if now - t <= config.window_s) + (now,)
        inflight = tuple(s for s in record.inflight if s[1] > now and s[0] != lease)
        if len(failures) < config.threshold:
            # the latest failure's summary is kept while closed too: the check that trips the breaker
            # may be cut short (no new connection once it is open) and reuse this full diagnosis
            return replace(record, failures=failures, inflight=inflight, last_failure=summary_json), None
        trips = record.trips + 1
        reopen_at = now + config.open_duration(trips)
        new = replace(
            record, state=_OPEN, failures=(), trips=trips, reopen_at=reopen_at,
            lease=None, lease_expires=None, last_failure=summary_json, epoch=record.epoch + 1, inflight=(),
        )
        return new, Transition(
            TransitionKind.OPENED, host, to_datetime(now), to_datetime(reopen_at),
            _decode(summary_json), trips,
        )
    if record.state is _HALF_OPEN and lease is not None and lease == record.lease:
        trips = record.trips + 1
        reopen_at = now + config.open_duration(trips)
        new = replace(
            record, state=_OPEN, trips=trips, reopen_at=reopen_at, lease=None,
            lease_expires=None, last_failure=summary_json,
        )
        return new, Transition(
            TransitionKind.REOPENED, host, to_datetime(now), to_datetime(reopen_at),
            _decode(summary_json), trips,
        )
    return None, None  # OPEN, or HALF_OPEN and not the probe: only the probe decides


def amend_failure(record: BreakerRecord, early_json: str, final_json: str) -> BreakerRecord | None:
    """Replace the stored last failure by the whole diagnosis' verdict, if it is still the early
    one this check recorded (a check records its failure as soon as the first handshake fails, and
    knows the cause only when its diagnosis ends): what a turned-away caller reads is then the cause
    and the fix, not the first probe's guess. Compare-and-set: a later failure is never overwritten."""
    if record.last_failure != early_json or early_json == final_json:
        return None
    return replace(record, last_failure=final_json)


def record_success(
    record: BreakerRecord,
    now: float,
    config: BreakerConfig,
    host: str,
    epoch: int | None,
    lease: str | None,
) -> tuple[BreakerRecord | None, Transition | None]:
    """Report a successful handshake; only the half-open probe's success closes.

    A success while CLOSED does not clear the failure window: two failures
    within ``window_s`` open the breaker whatever succeeded in between; it is
    remembered (``last_success``: the cold-start limit is lifted) and frees the
    caller's slot.
    """
    if record.state is _HALF_OPEN and lease is not None and lease == record.lease:
        new = replace(
            record, state=_CLOSED, failures=(), trips=0, reopen_at=None, lease=None,
            lease_expires=None, last_failure=None, epoch=record.epoch + 1, last_success=now, inflight=(),
        )
        return new, Transition(
            TransitionKind.CLOSED, host, to_datetime(now), None,
            _decode(record.last_failure), record.trips,
        )
    if record.state is _CLOSED and (epoch is None or epoch == record.epoch):
        # a cold-start caller's success: its slot frees and everyone proceeds
        inflight = tuple(s for s in record.inflight if s[1] > now and s[0] != lease)
        return replace(record, last_success=now, inflight=inflight), None
    return None, None


def mirror_open(record: BreakerRecord, reopen_at: float | None, summary_json: str, trips: int) -> BreakerRecord:
    """A local copy of an OPEN recorded by the shared store (obeyed if that store comes back empty)."""
    return replace(record, state=_OPEN, failures=(), trips=max(trips, record.trips), reopen_at=reopen_at,
                   lease=None, lease_expires=None, last_failure=summary_json, inflight=())


def release(record: BreakerRecord, now: float, host: str, lease: str | None) -> BreakerRecord | None:
    """Free a cold-start slot whose holder reports nothing (its check ended otherwise)."""
    if lease is None or not any(s[0] == lease for s in record.inflight):
        return None
    return replace(record, inflight=tuple(s for s in record.inflight if s[1] > now and s[0] != lease))


def _recent_success(record: BreakerRecord, now: float, config: BreakerConfig) -> bool:
    return record.last_success is not None and now - record.last_success <= config.window_s


def set_override(
    record: BreakerRecord, override: Override | None, reason: str | None
) -> BreakerRecord:
    """Set (or clear, with ``None``) the operator override; the machine is untouched."""
    return replace(record, override=override, override_reason=reason if override else None)


def status(record: BreakerRecord, now: float, config: BreakerConfig, host: str) -> BreakerStatus:
    """A read-only snapshot of ``record`` at ``now``."""
    if record.override is Override.FORCED_OPEN:
        effective = _OPEN
    elif record.override is Override.DISABLED:
        effective = _CLOSED
    else:
        effective = record.state
    in_window = sum(1 for t in record.failures if now - t <= config.window_s)
    return BreakerStatus(
        host=host,
        state=effective,
        underlying_state=record.state,
        failures_in_window=in_window,
        reopen_at=to_datetime(record.reopen_at) if record.state is _OPEN else None,
        trips=record.trips,
        override=record.override,
        override_reason=record.override_reason,
        last_failure=_decode(record.last_failure),
        probe_lease_expires_at=(
            to_datetime(record.lease_expires) if record.state is _HALF_OPEN else None
        ),
        epoch=record.epoch,
    )
