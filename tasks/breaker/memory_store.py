"""The in-process store: a dict under a lock.

Used for ``memory://`` and as the fallback when the configured store is
unreachable. It protects the threads of one process only.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from . import machine
from .machine import BreakerRecord
from .model import BreakerConfig, BreakerStatus, Decision, Override, Transition

_EMPTY = BreakerRecord()


class MemoryStore:
    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._records: dict[str, BreakerRecord] = {}
        self._lock = threading.Lock()

    def admit(self, host: str, config: BreakerConfig, new_lease: str) -> Decision:
        with self._lock:
            new, decision = machine.admit(
                self._records.get(host, _EMPTY), self._clock(), config, host, new_lease, self.name
            )
            if new is not None:
                self._records[host] = new
        return decision

    def record_failure(
        self, host: str, config: BreakerConfig, summary_json: str,
        epoch: int | None, lease: str | None,
    ) -> Transition | None:
        with self._lock:
            new, transition = machine.record_failure(
                self._records.get(host, _EMPTY), self._clock(), config, host,
                summary_json, epoch, lease,
            )
            if new is not None:
                self._records[host] = new
        return transition

    def record_success(
        self, host: str, config: BreakerConfig, epoch: int | None, lease: str | None,
    ) -> Transition | None:
        with self._lock:
            new, transition = machine.record_success(
                self._records.get(host, _EMPTY), self._clock(), config, host, epoch, lease
            )
            if new is not None:
                self._records[host] = new
        return transition

    def release(self, host: str, lease: str | None) -> None:
        with self._lock:
            new = machine.release(self._records.get(host, _EMPTY), self._clock(), host, lease)
            if new is not None:
                self._records[host] = new

    def amend_failure(self, host: str, early_json: str, final_json: str) -> None:
        with self._lock:
            new = machine.amend_failure(self._records.get(host, _EMPTY), early_json, final_json)
            if new is not None:
                self._records[host] = new

    def mirror_open(self, host: str, reopen_at: float | None, summary_json: str, trips: int) -> None:
        with self._lock:
            self._records[host] = machine.mirror_open(self._records.get(host, _EMPTY), reopen_at, summary_json, trips)

    def set_override(self, host: str, override: Override | None, reason: str | None) -> None:
        with self._lock:
            self._records[host] = machine.set_override(
                self._records.get(host, _EMPTY), override, reason
            )

    def status(self, host: str, config: BreakerConfig) -> BreakerStatus:
        with self._lock:
            record = self._records.get(host, _EMPTY)
        return machine.status(record, self._clock(), config, host)

    def reset(self, host: str) -> None:
        with self._lock:
            self._records.pop(host, None)

    def close(self) -> None:
        pass
