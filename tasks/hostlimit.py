"""A bound on concurrent connections per host, shared by every target of a run.

Why: a run of many targets that share an API host would otherwise open all their
connections at once — a burst a real gateway answers with 429s or drops (the
guide's retry-storm warning, made by the tool itself). Each host gets a
semaphore; the handshake diagnosis holds one slot while it probes (its probes
run one after another), each HTTP request holds one while it is in flight.

A diagnosis takes its slot before its deadline starts, so waiting for a slot never
turns into a ``handshake_timeout``; an HTTP request takes its slot before httpx's
connect/read timeouts start (the request's total deadline includes the wait).
Prefect-free: the limiter lives in the event loop of the run (one per loop, :func:`limiter`).
"""

from __future__ import annotations

import asyncio
import weakref
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

DEFAULT_PER_HOST = 8
"""Concurrent connections to one host (name and port) in one run, unless a target's
``max_connections_per_host`` says fewer. 8 is what browsers allow per origin over HTTP/1.1
(6–8) and well under the 429 thresholds of the platforms' gateways."""


class HostLimiter:
    """Semaphores per (host, port), made at a host's first use with the bound that use asks
    for (a target's ``max_connections_per_host``, else :data:`DEFAULT_PER_HOST`): targets that
    share a host share its bound, so set it in ``[defaults]`` when they should agree.

    ``peak`` records the most slots held at once per host (what the tests and the benchmark read).
    """

    def __init__(self, default: int = DEFAULT_PER_HOST) -> None:
        self.default = max(1, int(default))
        self._semaphores: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._in_use: dict[tuple[str, int], int] = {}
        self.bounds: dict[tuple[str, int], int] = {}
        self.peak: dict[tuple[str, int], int] = {}

    async def acquire(self, host: str, port: int, bound: int | None = None) -> Callable[[], None]:
        """Wait for a slot of ``host:port``; returns the function that gives it back (call it once)."""
        key = (host.lower().rstrip("."), int(port))
        sem = self._semaphores.get(key)
        if sem is None:
            self.bounds[key] = max(1, int(bound)) if bound else self.default
            sem = self._semaphores[key] = asyncio.Semaphore(self.bounds[key])
        await sem.acquire()
        self._in_use[key] = self._in_use.get(key, 0) + 1
        self.peak[key] = max(self.peak.get(key, 0), self._in_use[key])
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_use[key] -= 1
                sem.release()

        return release

    @asynccontextmanager
    async def slot(self, host: str, port: int, bound: int | None = None) -> AsyncIterator[None]:
        release = await self.acquire(host, port, bound)
        try:
            yield
        finally:
            release()


_LIMITERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HostLimiter]" = weakref.WeakKeyDictionary()


def limiter() -> HostLimiter:
    """The running loop's limiter: every target checked in this loop shares it."""
    loop = asyncio.get_running_loop()
    found = _LIMITERS.get(loop)
    if found is None:
        found = _LIMITERS[loop] = HostLimiter()
    return found
