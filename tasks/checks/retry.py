"""Retry discipline for the token request and the endpoint GETs (contract §3).

* Retried: HTTP 503 and 504 (load-balancer congestion), with exponential backoff,
  and never sooner than a ``Retry-After`` they carry.
* HTTP 429 is retried only after its ``Retry-After`` (seconds or an HTTP-date),
  never sooner; a 429 without one is not retried.
* Never retried: a TLS handshake failure or any connection error (they are
  exceptions here, and only *responses* are retried), and every other 4xx.
* A total budget bounds attempts and waits: a retry whose wait would end past
  the budget is not made (rather than made early).

Effects are injected (:class:`Clock`): tests pass a fake whose ``sleep`` advances
its time, so they never really sleep. Every attempt is counted.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_result

RETRYABLE_STATUSES = frozenset({503, 504})
RATE_LIMITED = 429


class Clock(Protocol):
    """Time as the retry loop sees it."""

    def monotonic(self) -> float: ...  # budget
    def time(self) -> float: ...       # wall clock, for HTTP-date Retry-After
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The production clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class FakeClock:
    """A clock for tests: ``sleep`` records the wait and advances time instantly."""

    now: float = 1_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:  # an HTTP-date is always GMT; a naive one is malformed
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (a value; see the module docstring for the rules).

    Attributes:
        max_attempts: attempts in total, the first included.
        budget_s: time from the first attempt's start by which the last retry must start.
        backoff_s: first wait after a 503/504; doubles per retry, capped at ``max_backoff_s``.
    """

    max_attempts: int = 4
    budget_s: float = 30.0
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.budget_s < 0 or self.backoff_s < 0:
            raise ValueError("max_attempts >= 1, budget_s >= 0 and backoff_s >= 0 are required")

    def wait_for(self, response: httpx.Response, retry_number: int, now: float) -> float | None:
        """Seconds to wait before retrying after *response*, or None when it must not be retried.

        *retry_number* is 1 for the first retry.
        """
        asked = parse_retry_after(response.headers.get("retry-after"), now)
        if response.status_code == RATE_LIMITED:
            return asked  # only after its Retry-After; none given → no retry
        if response.status_code in RETRYABLE_STATUSES:
            backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (retry_number - 1))
            return max(backoff, asked or 0.0)  # never sooner than asked
        return None


@dataclass(frozen=True)
class RetryOutcome:
    """The last response (or the exception of the last attempt) and what it took."""

    response: httpx.Response | None
    attempts: int
    waits: tuple[float, ...] = ()
    stopped: str | None = None  # why retrying stopped early: "max_attempts" | "budget" | None
    error: BaseException | None = None


async def send_with_retry(send: Callable[[], Awaitable[httpx.Response]], policy: RetryPolicy = RetryPolicy(),
                          clock: Clock | None = None) -> RetryOutcome:
    """Call *send* until a response that must not be retried, under *policy*.

    *send* makes one attempt (one request). An exception from it (a handshake
    failure, a connect or read error) ends the loop at once and is returned in
    ``RetryOutcome.error`` — it is never retried.
    """
    clock = clock or SystemClock()
    attempts = 0
    waits: list[float] = []
    started = clock.monotonic()
    stop_reason: list[str] = []

    def wait(state: RetryCallState) -> float:
        response = state.outcome.result() if state.outcome and not state.outcome.failed else None
        if response is None:
            return 0.0
        seconds = policy.wait_for(response, state.attempt_number, clock.time())
        return math.inf if seconds is None else seconds

    def should_stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            stop_reason.append("max_attempts")
            return True
        if clock.monotonic() - started + state.upcoming_sleep > policy.budget_s:
            stop_reason.append("budget")  # waiting as asked would end past the budget: stop, never retry early
            return True
        return False

    def is_retryable(response: httpx.Response) -> bool:
        return response.status_code in RETRYABLE_STATUSES or (
            response.status_code == RATE_LIMITED and response.headers.get("retry-after") is not None
            and parse_retry_after(response.headers.get("retry-after"), clock.time()) is not None)

    async def attempt() -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return await send()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await clock.sleep(seconds)

    retrying = AsyncRetrying(retry=retry_if_result(is_retryable), wait=wait, stop=should_stop, sleep=sleep,
                             retry_error_callback=lambda state: state.outcome.result())  # type: ignore[union-attr]
    try:
        response = await retrying(attempt)
    except (httpx.HTTPError, OSError) as exc:  # transport failures: reported, never retried
        return RetryOutcome(None, attempts, tuple(waits), None, exc)
    return RetryOutcome(response, attempts, tuple(waits), stop_reason[-1] if stop_reason else None)
