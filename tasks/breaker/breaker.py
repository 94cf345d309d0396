"""The breaker callers use: one store behind it, and an in-process fallback.

:func:`open_breaker` picks the store from the URL (contract §2). When the store
cannot be reached, the :class:`Breaker` answers from an in-process
:class:`MemoryStore` instead, says so in every Decision/Transition
(``fallback``) and logs a warning; it tries the store again every
``retry_after_s``. It never raises because of the store and never admits a
caller without a breaker decision.
"""

from __future__ import annotations

import logging
import os
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
from .store import BreakerStore, StoreMisconfigured, StoreUnavailable
from .url import check_store_url

log = logging.getLogger("cxhealth.breaker")

T = TypeVar("T")

# One fallback per store URL per process, so that breakers opened anew for each
# check still share their in-process state while the store is down.
_FALLBACKS: dict[str, MemoryStore] = {}
_MEMORY_STORES: dict[str, MemoryStore] = {}
_REGISTRY_LOCK = threading.Lock()


def _shared_memory_store(registry: dict[str, MemoryStore], key: str) -> MemoryStore:
    with _REGISTRY_LOCK:
        store = registry.get(key)
        if store is None:
            store = registry[key] = MemoryStore()
        return store


class Breaker:
    """Per-host circuit breaker over one store. Thread-safe; create one per process.

    Args:
        store_factory: builds the store; raises StoreUnavailable if it cannot.
        config: the breaker policy.
        description: the store URL without secrets, for logs and reasons.
        fallback: the in-process store used while the store is unreachable.
        retry_after_s: how long to stay on the fallback before trying the store again.
    """

    def __init__(
        self,
        store_factory: Callable[[], BreakerStore],
        config: BreakerConfig,
        *,
        description: str,
        fallback: MemoryStore,
        retry_after_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.description = description
        self._factory = store_factory
        self._fallback = fallback
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
        """Why the in-process fallback is in use, or None when the store answers."""
        return self._fallback_reason

    @property
    def store_name(self) -> str:
        return self._store.name if self._store is not None else "unavailable"

    def _enter_fallback(self, exc: StoreUnavailable) -> None:
        reason = f"{exc}; using an in-process breaker (not shared with other processes)"
        with self._lock:
            was_healthy = self._fallback_reason is None
            self._fallback_reason = reason
            self._retry_at = self._monotonic() + self._retry_after_s
        if was_healthy:
            log.warning("circuit breaker store unavailable: %s", reason)
        else:
            log.debug("circuit breaker store still unavailable: %s", reason)

    def _run(
        self,
        on_store: Callable[[BreakerStore], T],
        on_fallback: Callable[[MemoryStore], T],
    ) -> tuple[T, str | None]:
        """Run on the store; on StoreUnavailable (or while waiting to retry) on the fallback."""
        if self._fallback_reason is None or self._monotonic() >= self._retry_at:
            try:
                store = self._store
                if store is None:
                    store = self._store = self._factory()
                result = on_store(store)
            except StoreUnavailable as exc:
                self._enter_fallback(exc)
            else:
                if self._fallback_reason is not None:
                    with self._lock:
                        self._fallback_reason = None
                    log.warning("circuit breaker store %s reachable again", self.description)
                return result, None
        return on_fallback(self._fallback), self._fallback_reason

    # -- the API --------------------------------------------------------------

    def admit(self, host: str) -> Decision:
        """May a caller touch ``host`` now? Rejections come with ``reopen_at``."""
        host = normalize_host(host)
        lease = os.urandom(16).hex()  # used only if this caller becomes the probe
        decision, fallback = self._run(
            lambda s: s.admit(host, self.config, lease),
            lambda f: f.admit(host, self.config, lease),
        )
        return decision if fallback is None else replace(decision, fallback=fallback)

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
            transition = self._fallback.record_failure(
                host, self.config, summary_json, epoch, lease
            )
            return _flag(transition, decision.fallback)
        transition, fallback = self._run(
            lambda s: s.record_failure(host, self.config, summary_json, epoch, lease),
            lambda f: f.record_failure(host, self.config, summary_json, None, None),
        )
        return _flag(transition, fallback)

    def record_success(self, host: str, decision: Decision | None = None) -> Transition | None:
        """Report a successful handshake; returns the "closed" Transition to the probe.

        Only the half-open probe's success changes anything (it closes the
        breaker); a success of any other caller is a no-op and touches no store.
        """
        if decision is None or not decision.is_probe or decision.lease is None:
            return None
        host = normalize_host(host)
        if decision.fallback is not None:
            return _flag(
                self._fallback.record_success(host, self.config, decision.epoch, decision.lease),
                decision.fallback,
            )
        transition, fallback = self._run(
            lambda s: s.record_success(host, self.config, decision.epoch, decision.lease),
            lambda f: None,  # the lease lives in the unreachable store; it will expire there
        )
        return _flag(transition, fallback)

    def force_open(self, host: str, reason: str) -> BreakerStatus:
        """Kill switch: reject every caller for ``host`` until :meth:`clear_override`."""
        return self._override(host, Override.FORCED_OPEN, reason)

    def disable(self, host: str, reason: str | None = None) -> BreakerStatus:
        """Switch the breaker off for ``host``: admit everyone, count nothing."""
        return self._override(host, Override.DISABLED, reason)

    def clear_override(self, host: str) -> BreakerStatus:
        """Back to the state machine (an OPEN whose time passed then probes)."""
        return self._override(host, None, None)

    def status(self, host: str) -> BreakerStatus:
        """A read-only snapshot: state, failures in window, reopen time, trips, override."""
        host = normalize_host(host)
        snapshot, fallback = self._run(
            lambda s: s.status(host, self.config),
            lambda f: f.status(host, self.config),
        )
        if fallback is None:
            return replace(snapshot, store=self._store.name if self._store else "")
        return replace(snapshot, store="memory", fallback=fallback)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def _override(self, host: str, override: Override | None, reason: str | None) -> BreakerStatus:
        host = normalize_host(host)
        self._run(
            lambda s: s.set_override(host, override, reason),
            lambda f: f.set_override(host, override, reason),
        )
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
    elif scheme in ("redis", "rediss", "unix"):
        try:
            from .redis_store import DEFAULT_KEY_PREFIX, RedisStore, redact_url
        except ImportError as exc:  # redis-py is a declared dependency; be explicit anyway
            raise ValueError(f"a redis breaker store needs the 'redis' package: {exc}") from exc
        description = redact_url(url)
        prefix = key_prefix or DEFAULT_KEY_PREFIX
        factory = lambda: RedisStore(  # noqa: E731
            url, key_prefix=prefix, timeout_s=timeout_s, time_offset=redis_time_offset
        )
        description = f"{description} ({prefix})"
    elif scheme == "memory":
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

    fallback = MemoryStore(clock) if clock is not None else _shared_memory_store(_FALLBACKS, description)
    return Breaker(
        factory, config, description=description, fallback=fallback, retry_after_s=retry_after_s
    )


def sqlite_path(url: str) -> str:
    """``sqlite:///~/x`` -> ``~/x`` expanded; ``sqlite:////abs`` -> ``/abs``; ``sqlite:///rel`` -> ``rel``."""
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"a sqlite breaker store URL is sqlite:///relative or sqlite:////absolute, got {url!r}")
    return os.path.expanduser(url[len(prefix):])
