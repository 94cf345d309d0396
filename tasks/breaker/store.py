"""The one small interface every breaker store implements.

A store owns the atomicity: each method is one atomic read-modify-write of one
host's record (a lock, an SQLite ``BEGIN IMMEDIATE`` transaction, or one Redis
Lua script), so that every transition is computed, and returned, exactly once.
A store that cannot be reached raises :class:`StoreUnavailable` and nothing
else; :class:`~tasks.breaker.breaker.Breaker` turns that into the in-process
fallback.
"""

from __future__ import annotations

from typing import Protocol

from .model import BreakerConfig, BreakerStatus, Decision, Override, Transition


class StoreUnavailable(Exception):
    """The store could not be reached or used. The message never holds a secret."""


class RecordUnreadable(Exception):
    """One host's record in the store cannot be read (a corrupt row or hash): that
    host's breaker is unknown; every other host's is fine. Never holds a secret."""

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(f"the breaker record of {host} cannot be read ({detail})")
        self.host = host


class StoreMisconfigured(StoreUnavailable, ValueError):
    """The store answers but refuses the configuration (wrong password, no such
    database, a path that cannot be created): a configuration error to report,
    not an outage to ride out on the in-process fallback."""


class BreakerStore(Protocol):
    #: "memory", "sqlite" or "redis"; copied into each Decision's ``store``.
    name: str

    def admit(self, host: str, config: BreakerConfig, new_lease: str) -> Decision: ...

    def record_failure(
        self, host: str, config: BreakerConfig, summary_json: str,
        epoch: int | None, lease: str | None,
    ) -> Transition | None: ...

    def record_success(
        self, host: str, config: BreakerConfig, epoch: int | None, lease: str | None,
    ) -> Transition | None: ...

    def release(self, host: str, lease: str | None) -> None:
        """Free a cold-start slot whose holder reports no result."""

    def amend_failure(self, host: str, early_json: str, final_json: str) -> None:
        """:func:`machine.amend_failure` on the host's record."""

    def set_override(self, host: str, override: Override | None, reason: str | None) -> None: ...

    def status(self, host: str, config: BreakerConfig) -> BreakerStatus: ...

    def reset(self, host: str) -> None:
        """Forget the host's record whatever it holds (``cxhealth breaker clear`` of an unreadable one)."""

    def close(self) -> None: ...
