"""The breaker callers use: one store behind it, and a local fallback.

:func:`open_breaker` picks the store from the URL (contract §2). When the store
cannot be reached or written, the :class:`Breaker` answers from a LOCAL SQLite
store on this machine instead (:func:`fallback_path`; so this machine's
processes still share one breaker), or, if even that cannot be written, from an
in-process :class:`MemoryStore`; it says so in every Decision/Transition/status
(``fallback``) and logs a warning; it tries the store again every
``retry_after_s``. A SQLite store that can still be read (a read-only or full
filesystem) is honoured meanwhile: an OPEN record in it is obeyed.

One host's record that cannot be read (:class:`RecordUnreadable`) makes only
that host's breaker unknown: its callers are decided by the fallback, with a
warning, and :meth:`Breaker.reset` (``cxhealth breaker clear``) forgets the
record. It never raises because of the store and never admits a caller
without a breaker decision.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Mapping, TypeVar

from .memory_store import MemoryStore
from .model import (
    DEFAULT_STORE_URL,
    BreakerConfig,
    BreakerStatus,
    Decision,
    Override,
    Transition,
    encode_summary,
)
from .model import BreakerState, TransitionKind
from .store import BreakerStore, RecordUnreadable, StoreMisconfigured, StoreUnavailable
from .url import check_store_url

log = logging.getLogger("cxhealth.breaker")

T = TypeVar("T")

# One in-process store per key per process, so that breakers opened anew for each
# check still share their in-process state (memory:// and the last-resort fallback).
_FALLBACKS: dict[str, MemoryStore] = {}
_MEMORY_STORES: dict[str, MemoryStore] = {}
_REGISTRY_LOCK = threading.Lock()


def _shared_memory_store(registry: dict[str, MemoryStore], key: str) -> MemoryStore:
    with _REGISTRY_LOCK:
        store = registry.get(key)
        if store is None:
            store = registry[key] = MemoryStore()
        return store


def fallback_dir() -> str:
    """Where the local fallback stores live: ``$CXHEALTH_FALLBACK_DIR``, else a per-user
    folder in the machine's temporary directory (local to the machine, not the home
    folder, which may be a network filesystem or the full disk that failed)."""
    configured = os.environ.get("CXHEALTH_FALLBACK_DIR")
    if configured:
        return os.path.expanduser(configured)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"cxhealth-{uid}")


def fallback_path(description: str) -> str:
    """The local fallback SQLite file of the store described by ``description`` (no secret)."""
    digest = hashlib.sha256(description.encode()).hexdigest()[:12]
    return os.path.join(fallback_dir(), f"fallback-{digest}.sqlite3")


class FallbackStore:
    """The local SQLite fallback, and the in-process store if even that cannot be written.

    ``reason`` says which one answers; the caller adds it to every Decision.
    """

    def __init__(self, path: str | None, clock: Callable[[], float] | None, memory: MemoryStore) -> None:
        self.path = path
        self._clock = clock
        self._memory = memory
        self._local: BreakerStore | None = None
        self._local_error: str | None = None if path else "no local fallback configured"
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "local" if self._local is not None else "memory"

    def _store(self) -> BreakerStore:
        with self._lock:
            if self._local is not None:
                return self._local
            if self._local_error is None and self.path:
                try:
                    from .sqlite_store import SQLiteStore

                    os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                    self._local = SQLiteStore(self.path, clock=self._clock or time.time, busy_timeout_s=2.0)
                    return self._local
                except (StoreUnavailable, OSError) as exc:
                    self._local_error = str(exc)
            return self._memory

    def where(self) -> str:
        store = self._store()
        if store is self._memory:
            why = f" (the local fallback failed too: {self._local_error})" if self.path else ""
            return f"an in-process breaker (not shared with other processes){why}"
        return f"the local fallback store {self.path} (shared by this machine's processes only)"

    def call(self, fn: Callable[[BreakerStore], T]) -> T:
        store = self._store()
        try:
            return fn(store)
        except (StoreUnavailable, RecordUnreadable) as exc:
            if store is self._memory:
                raise
            with self._lock:  # the local file failed (full disk, ...): in-process from now on
                self._local_error = str(exc)
                self._local = None
            log.warning("local fallback store unusable, using an in-process breaker: %s", exc)
            return fn(self._memory)

    def has_records(self) -> bool:
        """Could the local fallback hold anything? (It was used, or its file exists.)"""
        return self._local is not None or bool(self.path and os.path.exists(self.path))

    def peek_rejection(self, host: str, config: BreakerConfig) -> Decision | None:
        """The local store's rejection of ``host`` (OPEN within its time, forced open), or None."""
        try:
            status = self.call(lambda f: f.status(host, config))
        except (StoreUnavailable, RecordUnreadable):
            return None
        if status.state is not BreakerState.OPEN:
            return None
        now = (self._clock or time.time)()
        if status.override is None and (status.reopen_at is None or status.reopen_at.timestamp() <= now):
            return None  # its time has passed: the store decides (one probe)
        return Decision(host, False, BreakerState.OPEN, reopen_at=status.reopen_at,
                        last_failure=status.last_failure, override=status.override,
                        override_reason=status.override_reason, store=self.name)

    def mirror(self, transition: Transition, config: BreakerConfig) -> None:
        """Keep this machine's copy of a transition the store handed out: an OPEN is
        obeyed even if the store comes back empty (a Redis restarted without persistence),
        a CLOSED forgets it. Only when a local file is configured; never raises."""
        if not self.path:
            return
        try:
            if transition.kind is TransitionKind.CLOSED:
                if self.has_records():
                    self.call(lambda f: f.reset(transition.host))
                return
            reopen = transition.reopen_at.timestamp() if transition.reopen_at else None
            summary = encode_summary(transition.summary or {})
            self.call(lambda f: f.mirror_open(transition.host, reopen, summary, transition.trips))
        except Exception as exc:  # noqa: BLE001 - a copy; the store's answer stands
            log.debug("could not keep a local copy of a breaker transition: %s", exc)

    def close(self) -> None:
        if self._local is not None:
            self._local.close()


class Breaker:
    """Per-host circuit breaker over one store. Thread-safe; create one per process.

    Args:
        store_factory: builds the store; raises StoreUnavailable if it cannot.
        config: the breaker policy.
        description: the store URL without secrets, for logs and reasons.
        fallback: the local store used while the store is unreachable (or a
            MemoryStore: in-process only).
        reader: a read-only view of the store, consulted while on the fallback:
            an OPEN record it still shows is obeyed (a read-only or full SQLite).
        retry_after_s: how long to stay on the fallback before trying the store again.
    """

    def __init__(
        self,
        store_factory: Callable[[], BreakerStore],
        config: BreakerConfig,
        *,
        description: str,
        fallback: FallbackStore | MemoryStore,
        reader: Callable[[], BreakerStore] | None = None,
        retry_after_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self.description = description
        self._factory = store_factory
        if isinstance(fallback, MemoryStore):
            fallback = FallbackStore(None, None, fallback)
        self._fallback = fallback
        self._reader_factory = reader
        self._reader: BreakerStore | None = None
        self._retry_after_s = retry_after_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._store: BreakerStore | None = None
        self._fallback_reason: str | None = None
        self._retry_at = 0.0
        try:
            self._store = store_factory()
        except StoreMisconfigured:
            raise  # a configuration error (a ValueError): reported, never ridden out in-process
        except StoreUnavailable as exc:
            self._enter_fallback(exc)

    # -- fallback plumbing --------------------------------------------------

    @property
    def fallback_reason(self) -> str | None:
        """Why the fallback is in use, or None when the store answers."""
        return self._fallback_reason

    @property
    def store_name(self) -> str:
        return self._store.name if self._store is not None else "unavailable"

    def _enter_fallback(self, exc: StoreUnavailable) -> None:
        reason = f"{exc}; using {self._fallback.where()}"
        with self._lock:
            was_healthy = self._fallback_reason is None
            self._fallback_reason = reason
            self._retry_at = self._monotonic() + self._retry_after_s
        if was_healthy:
            log.warning("circuit breaker store unavailable: %s", reason)
        else:
            log.debug("circuit breaker store still unavailable: %s", reason)

    def _unreadable(self, exc: RecordUnreadable) -> str:
        reason = (f"{exc} in {self.description}: this host's breaker is unknown there; using "
                  f"{self._fallback.where()} for it ('cxhealth breaker clear {exc.host}' resets the record)")
        log.warning("circuit breaker: %s", reason)
        return reason

    def _run(
        self,
        on_store: Callable[[BreakerStore], T],
        on_fallback: Callable[[BreakerStore], T],
    ) -> tuple[T, str | None]:
        """Run on the store; on StoreUnavailable (or while waiting to retry) on the fallback;
        on RecordUnreadable on the fallback for this call only."""
        if self._fallback_reason is None or self._monotonic() >= self._retry_at:
            try:
                store = self._store
                if store is None:
                    store = self._store = self._factory()
                result = on_store(store)
            except RecordUnreadable as exc:
                return self._fallback.call(on_fallback), self._unreadable(exc)
            except StoreUnavailable as exc:
                self._enter_fallback(exc)
            else:
                if self._fallback_reason is not None:
                    with self._lock:
                        self._fallback_reason = None
                    log.warning("circuit breaker store %s reachable again", self.description)
                return result, None
        return self._fallback.call(on_fallback), self._fallback_reason

    def _obeyed_rejection(self, host: str, lease: str) -> Decision | None:
        """While on the fallback: what the store can still be read to say (an OPEN is obeyed)."""
        if self._reader_factory is None:
            return None
        try:
            if self._reader is None:
                self._reader = self._reader_factory()
            decision = self._reader.admit(host, self.config, lease)
        except (StoreUnavailable, RecordUnreadable):  # a probe is due there, or nothing to read
            return None
        return decision if not decision.admitted else None

    # -- the API --------------------------------------------------------------

    def admit(self, host: str, lease_s: float | None = None) -> Decision:
        """May a caller touch ``host`` now? Rejections come with ``reopen_at``.

        After a fallback period the local store may hold an OPEN the store never
        saw (the failures were counted locally): it is obeyed until its time passes.

        ``lease_s``: the worst case of this caller's check; its probe lease (or
        cold-start slot) lasts that long if longer than ``[breaker] lease_s``.
        """
        host = normalize_host(host)
        config = self._lease_config(lease_s)
        started = self._monotonic()
        while True:
            decision = self._admit_once(host, config)
            if not self._should_wait(decision, config, started):
                return decision
            self._sleep(config.wait_poll_s)

    async def admit_async(self, host: str, lease_s: float | None = None) -> Decision:
        """:meth:`admit` for a caller in an event loop: each store call runs in a worker thread,
        the waiting of a cold start runs in the loop.

        Why: many targets of one run wait on the same cold host at once. Waiting inside
        ``asyncio.to_thread(admit)`` would hold every thread of the loop's default pool
        (6 on a 2-core machine), and the checks that hold the slots need those threads to
        record the success that lets the others through: the run stalls until the leases end.
        """
        import asyncio

        host = normalize_host(host)
        config = self._lease_config(lease_s)
        started = self._monotonic()
        while True:
            decision = await asyncio.to_thread(self._admit_once, host, config)
            if not self._should_wait(decision, config, started):
                return decision
            await asyncio.sleep(config.wait_poll_s)

    def _lease_config(self, lease_s: float | None) -> BreakerConfig:
        return self.config if not lease_s or lease_s <= self.config.lease_s else replace(self.config, lease_s=lease_s)

    def _should_wait(self, decision: Decision, config: BreakerConfig, started: float) -> bool:
        # Cold start: as many checks are in flight as failures are still allowed.
        # Wait for a slot, a success (then everyone proceeds) or the breaker to open;
        # at the latest a slot's lease runs out (its holder may have died) — then the
        # decision (not admitted) is returned: never past the worst case of one check.
        return decision.wait and self._monotonic() - started <= config.lease_s + config.wait_poll_s

    def _admit_once(self, host: str, config: BreakerConfig | None = None) -> Decision:
        config = config or self.config
        lease = os.urandom(16).hex()  # used only if this caller becomes the probe (or takes a slot)
        decision, fallback = self._run(
            lambda s: s.admit(host, config, lease),
            lambda f: self._obeyed_rejection(host, lease) or f.admit(host, config, lease),
        )
        if (fallback is None and (decision.admitted or decision.wait) and not decision.is_probe
                and self._fallback.has_records()):
            local = self._fallback.peek_rejection(host, self.config)
            if local is not None:
                if decision.admitted and decision.lease and self._store is not None:
                    try:  # the cold-start slot it was given is not used
                        self._store.release(host, decision.lease)
                    except (StoreUnavailable, RecordUnreadable):
                        pass
                theirs = self._store_rejection(host)
                if theirs is not None:  # the local OPEN is this machine's copy of the store's own
                    return theirs
                return replace(local, fallback=f"the store {self.description} answers again, but this machine's "
                                             f"fallback store recorded the breaker open meanwhile; obeyed until "
                                             f"{local.reopen_at.isoformat() if local.reopen_at else 'cleared'}")
        return decision if fallback is None else replace(decision, fallback=fallback)

    def _store_rejection(self, host: str) -> Decision | None:
        """The store's OPEN of ``host``, read again, or None.

        Why: a caller the store admitted just before another process's failure opened the
        breaker finds that OPEN in this machine's copy (:meth:`FallbackStore.mirror`) a moment
        later. The store is healthy and says OPEN too: that is the store's rejection, not a
        fallback. Only when the store does not know the OPEN (it came back empty) is the local
        copy obeyed as one."""
        try:
            status = self._store.status(host, self.config) if self._store is not None else None
        except (StoreUnavailable, RecordUnreadable):
            return None
        if status is None or status.state is not BreakerState.OPEN:
            return None
        return Decision(host, False, BreakerState.OPEN, reopen_at=status.reopen_at,
                        last_failure=status.last_failure, override=status.override,
                        override_reason=status.override_reason, store=self._store.name)

    def record_failure(
        self, host: str, summary: Mapping[str, Any], decision: Decision | None = None
    ) -> Transition | None:
        """Count one handshake-stage failure of ``host``.

        Call it once per failed check (not per probe the diagnosis made), and
        only for handshake failures; HTTP statuses never count. Pass the
        Decision the caller was admitted with: a probe's failure reopens the
        breaker, a failure of a caller admitted before the breaker last opened
        is ignored. Returns the "opened"/"reopened" Transition to the one caller
        whose failure caused it, else None.
        """
        host = normalize_host(host)
        summary_json = encode_summary(summary)
        epoch, lease = self._routing(decision)
        if decision is not None and decision.fallback is not None:
            # Admitted by the fallback: its epoch and lease only mean something there.
            transition = self._fallback.call(
                lambda f: f.record_failure(host, self.config, summary_json, epoch, lease))
            return _flag(transition, decision.fallback)
        transition, fallback = self._run(
            lambda s: s.record_failure(host, self.config, summary_json, epoch, lease),
            lambda f: f.record_failure(host, self.config, summary_json, None, None),
        )
        if transition is not None and fallback is None:
            self._fallback.mirror(transition, self.config)
        return _flag(transition, fallback)

    def amend_failure(self, host: str, early: Mapping[str, Any], final: Mapping[str, Any],
                      decision: Decision | None = None) -> None:
        """The whole diagnosis' verdict replaces the early failure this check recorded when its first
        handshake failed (:func:`machine.amend_failure`), on the store that recorded it and on this
        machine's copy, so a caller turned away while the breaker is open reads the real cause and fix."""
        host = normalize_host(host)
        early_json, final_json = encode_summary(early), encode_summary(final)
        if early_json == final_json:
            return
        if decision is not None and decision.fallback is not None:
            self._fallback.call(lambda f: f.amend_failure(host, early_json, final_json))
            return
        _, fallback = self._run(lambda s: s.amend_failure(host, early_json, final_json),
                                lambda f: f.amend_failure(host, early_json, final_json))
        if fallback is None and self._fallback.path and self._fallback.has_records():
            try:  # this machine's copy of the OPEN (FallbackStore.mirror)
                self._fallback.call(lambda f: f.amend_failure(host, early_json, final_json))
            except Exception as exc:  # noqa: BLE001 - a copy; the store's record stands
                log.debug("could not amend the local copy of a breaker failure: %s", exc)

    def record_success(self, host: str, decision: Decision | None = None) -> Transition | None:
        """Report a successful handshake; returns the "closed" Transition to the probe.

        Only the half-open probe's success changes the state (it closes the
        breaker); a cold-start caller's success frees its slot and lifts the
        cold-start limit (everyone proceeds); any other success touches no store
        unless the store's last success is getting old.
        """
        if decision is None or not (decision.is_probe or decision.note_success):
            return None
        if decision.is_probe and decision.lease is None:
            return None
        host = normalize_host(host)
        if decision.fallback is not None:
            return _flag(
                self._fallback.call(
                    lambda f: f.record_success(host, self.config, decision.epoch, decision.lease)),
                decision.fallback,
            )
        transition, fallback = self._run(
            lambda s: s.record_success(host, self.config, decision.epoch, decision.lease),
            lambda f: None,  # the lease lives in the unreachable store; it will expire there
        )
        if transition is not None and fallback is None:
            self._fallback.mirror(transition, self.config)
        return _flag(transition, fallback)

    def release(self, host: str, decision: Decision | None) -> None:
        """The admitted check ends without a handshake result (a configuration error,
        a crash): free its cold-start slot so that nobody waits for its lease."""
        if decision is None or not decision.admitted or decision.is_probe or not decision.lease:
            return
        host = normalize_host(host)
        lease = decision.lease
        try:
            if decision.fallback is not None:
                self._fallback.call(lambda f: f.release(host, lease))
            else:
                self._run(lambda s: s.release(host, lease), lambda f: None)
        except (StoreUnavailable, RecordUnreadable):
            pass  # it expires with its lease

    def force_open(self, host: str, reason: str) -> BreakerStatus:
        """Kill switch: reject every caller for ``host`` until :meth:`clear_override`."""
        return self._override(host, Override.FORCED_OPEN, reason)

    def disable(self, host: str, reason: str | None = None) -> BreakerStatus:
        """Switch the breaker off for ``host``: admit everyone, count nothing."""
        return self._override(host, Override.DISABLED, reason)

    def clear_override(self, host: str) -> BreakerStatus:
        """Back to the state machine (an OPEN whose time passed then probes).

        A record that cannot be read is reset instead (forgotten: CLOSED), so
        ``cxhealth breaker clear`` always works."""
        host = normalize_host(host)
        try:
            return self._override(host, None, None)
        except RecordUnreadable:
            return self.reset(host)

    def reset(self, host: str) -> BreakerStatus:
        """Forget the host's record (also in the fallback): CLOSED, no failures, no override."""
        host = normalize_host(host)
        self._run(lambda s: s.reset(host), lambda f: f.reset(host))
        try:
            self._fallback.call(lambda f: f.reset(host))
        except (StoreUnavailable, RecordUnreadable):
            pass
        return self.status(host)

    def status(self, host: str) -> BreakerStatus:
        """A read-only snapshot: state, failures in window, reopen time, trips, override.

        A record that cannot be read is reported as state ``unknown`` with the reason."""
        host = normalize_host(host)
        try:
            snapshot, fallback = self._run_status(host)
        except RecordUnreadable as exc:
            return BreakerStatus(host, BreakerState.UNKNOWN, BreakerState.UNKNOWN, 0, None, 0, None,
                                 fallback=self._unreadable(exc), store=self.store_name)
        if fallback is None:
            if snapshot.state is BreakerState.CLOSED and self._fallback.has_records():
                # What admit() obeys, status says: an OPEN only this machine's local store recorded
                # (the store came back empty). Never over a HALF_OPEN: the store let a probe through,
                # and the probe asks status whether to go on (a local clock a little behind the
                # store's must not cut it short).
                local = self._fallback.peek_rejection(host, self.config)
                if local is not None:
                    seen = self._fallback.call(lambda f: f.status(host, self.config))
                    return replace(seen, store=self._fallback.name, fallback=(
                        f"the store {self.description} shows {snapshot.state}, but this machine's fallback store "
                        f"recorded the breaker open; obeyed until "
                        f"{local.reopen_at.isoformat() if local.reopen_at else 'cleared'}"))
            return replace(snapshot, store=self._store.name if self._store else "")
        return replace(snapshot, store=self._fallback.name, fallback=fallback)

    def _run_status(self, host: str) -> tuple[BreakerStatus, str | None]:
        if self._fallback_reason is None or self._monotonic() >= self._retry_at:
            try:
                store = self._store
                if store is None:
                    store = self._store = self._factory()
                result = store.status(host, self.config)
            except StoreUnavailable as exc:
                self._enter_fallback(exc)
            else:
                if self._fallback_reason is not None:
                    with self._lock:
                        self._fallback_reason = None
                return result, None
        reader = None
        if self._reader_factory is not None:
            try:
                reader = self._reader = self._reader or self._reader_factory()
                seen = reader.status(host, self.config)
                if seen.state is not BreakerState.CLOSED:
                    return seen, self._fallback_reason
            except (StoreUnavailable, RecordUnreadable):
                pass
        return self._fallback.call(lambda f: f.status(host, self.config)), self._fallback_reason

    def close(self) -> None:
        for store in (self._store, self._reader):
            if store is not None:
                store.close()
        self._fallback.close()

    def _override(self, host: str, override: Override | None, reason: str | None) -> BreakerStatus:
        host = normalize_host(host)
        store = self._store
        if store is None:
            try:
                store = self._store = self._factory()
            except StoreUnavailable:
                store = None
        if store is not None:
            try:  # an operator's override goes to the shared store, or says why it cannot
                try:
                    store.set_override(host, override, reason)
                except RecordUnreadable:  # an unreadable record: forget it, then override
                    store.reset(host)
                    store.set_override(host, override, reason)
                return self.status(host)
            except StoreUnavailable as exc:
                self._enter_fallback(exc)
        self._fallback.call(lambda f: f.set_override(host, override, reason))
        return self.status(host)

    def _routing(self, decision: Decision | None) -> tuple[int | None, str | None]:
        if decision is None:
            return None, None
        if decision.fallback is None and self._store is not None and decision.store != self._store.name:
            return None, None
        return decision.epoch, decision.lease

    def __repr__(self) -> str:
        state = f"fallback: {self._fallback_reason}" if self._fallback_reason else "ok"
        return f"<Breaker {self.description} ({state})>"


def _flag(transition: Transition | None, fallback: str | None) -> Transition | None:
    if transition is None or fallback is None:
        return transition
    return replace(transition, fallback=fallback)


def normalize_host(host: str) -> str:
    """Breakers are per host name, case-insensitively (DNS names are)."""
    return host.strip().rstrip(".").lower()


def open_breaker(
    url: str | None = None,
    config: BreakerConfig | None = None,
    *,
    clock: Callable[[], float] | None = None,
    key_prefix: str | None = None,
    timeout_s: float = 1.0,
    busy_timeout_s: float = 5.0,
    retry_after_s: float = 5.0,
    redis_time_offset: Callable[[], float] | None = None,
    fallback: str | None = "local",
) -> Breaker:
    """Open the breaker configured by ``url`` (contract §2 ``[breaker] store``).

    URL forms: ``sqlite:///~/relative/to/home.sqlite3``, ``sqlite:////abs/path``,
    ``sqlite:///relative/path``, ``redis://host:port/db`` (``rediss://`` too),
    ``memory://`` (in-process only). ``None`` means the default SQLite store.

    Args:
        clock: epoch seconds for the SQLite and memory stores (tests inject it);
            Redis always uses the server's clock.
        key_prefix: Redis key prefix (default ``cxhealth:breaker``).
        timeout_s: Redis connect/read timeout; short, so a dead store never hangs.
        busy_timeout_s: the longest SQLite waits for its write lock.
        retry_after_s: how long to stay on the fallback before retrying the store.
        redis_time_offset: tests only: seconds added to the Redis server's clock.
        fallback: ``"local"`` (default): a local SQLite file per store
            (:func:`fallback_path`) shared by this machine's processes, then
            in-process; ``"memory"``: in-process only; or a path for the file.

    Raises:
        ValueError: the URL is malformed, or the store refuses the configuration
            (:class:`StoreMisconfigured`: wrong password, no such database, a
            path that cannot be created) — a configuration error, unlike an
            unreachable store, which falls back.
    """
    url = check_store_url(url or DEFAULT_STORE_URL)
    config = config or BreakerConfig()
    scheme = url.split(":", 1)[0].lower()
    wall = clock or time.time

    if scheme == "sqlite":
        path = sqlite_path(url)
        from .sqlite_store import SQLiteStore

        description = f"sqlite:{path}"
        factory: Callable[[], BreakerStore] = lambda: SQLiteStore(  # noqa: E731
            path, clock=wall, busy_timeout_s=busy_timeout_s
        )
        reader: Callable[[], BreakerStore] | None = lambda: SQLiteStore(  # noqa: E731
            path, clock=wall, busy_timeout_s=busy_timeout_s, read_only=True
        )
    elif scheme in ("redis", "rediss", "unix"):
        try:
            from .redis_store import DEFAULT_KEY_PREFIX, RedisStore, redact_url
        except ImportError as exc:  # redis-py is a declared dependency; be explicit anyway
            raise ValueError(f"a redis breaker store needs the 'redis' package: {exc}") from exc
        reader = None
        description = redact_url(url)
        prefix = key_prefix or DEFAULT_KEY_PREFIX
        factory = lambda: RedisStore(  # noqa: E731
            url, key_prefix=prefix, timeout_s=timeout_s, time_offset=redis_time_offset
        )
        description = f"{description} ({prefix})"
    elif scheme == "memory":
        reader = None
        fallback = "memory"
        description = url
        if clock is None:
            shared = _shared_memory_store(_MEMORY_STORES, url)
            factory = lambda: shared  # noqa: E731
        else:
            own = MemoryStore(clock)
            factory = lambda: own  # noqa: E731
    else:
        raise ValueError(
            f"unsupported breaker store URL scheme {scheme!r}: use sqlite:///path, "
            "redis://host:port/db or memory://"
        )

    if clock is None and redis_time_offset is not None:  # tests: the local copy keeps the store's time
        clock = lambda: time.time() + redis_time_offset()  # noqa: E731
    memory = MemoryStore(clock) if clock is not None else _shared_memory_store(_FALLBACKS, description)
    local = None if fallback == "memory" else (fallback_path(description) if fallback in (None, "local") else fallback)
    return Breaker(
        factory, config, description=description, fallback=FallbackStore(local, clock, memory),
        reader=reader, retry_after_s=retry_after_s,
    )


def sqlite_path(url: str) -> str:
    """``sqlite:///~/x`` -> ``~/x`` expanded; ``sqlite:////abs`` -> ``/abs``; ``sqlite:///rel`` -> ``rel``."""
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"a sqlite breaker store URL is sqlite:///relative or sqlite:////absolute, got {url!r}")
    return os.path.expanduser(url[len(prefix):])
