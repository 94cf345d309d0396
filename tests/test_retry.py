"""Retry rules (contract §3): only 503/504, 429 after its Retry-After, never a handshake failure.

Waits run on an injected FakeClock: nothing here really sleeps.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from tests.conftest import lab_target

from cxhealth.lab.fake_platform import GENESYS_TLS13, FakePlatform, wait_until
from cxhealth.tasks.checks.http import client_for
from cxhealth.tasks.checks.oauth import check_token
from cxhealth.tasks.checks.retry import FakeClock, RetryPolicy, parse_retry_after, send_with_retry


@pytest.fixture(scope="module")
def fake():
    with FakePlatform() as platform:
        yield platform


@pytest.fixture(autouse=True)
def _fresh(request):
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


def scripted(*responses: httpx.Response):
    """A send() that answers the given responses in order, counting calls."""
    queue = list(responses)
    calls = []

    async def send() -> httpx.Response:
        calls.append(1)
        return queue.pop(0)

    return send, calls


def resp(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def run(coro):
    return asyncio.run(coro)


def test_retry_after_parses_seconds_and_http_dates():
    now = 1_700_000_000.0
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("status", [503, 504])
def test_503_and_504_are_retried_with_backoff_and_every_attempt_counted(status):
    clock = FakeClock()
    send, calls = scripted(resp(status), resp(status), resp(200))
    started = time.monotonic()

    outcome = run(send_with_retry(send, RetryPolicy(backoff_s=0.5), clock))

    assert outcome.response.status_code == 200
    assert outcome.attempts == len(calls) == 3
    assert outcome.waits == (0.5, 1.0) and clock.sleeps == [0.5, 1.0]
    assert time.monotonic() - started < 0.5  # the fake clock, not a real sleep


def test_a_503_with_retry_after_waits_at_least_as_asked():
    clock = FakeClock()
    send, _ = scripted(resp(503, **{"Retry-After": "5"}), resp(200))
    outcome = run(send_with_retry(send, RetryPolicy(backoff_s=0.5), clock))
    assert outcome.waits == (5.0,)


def test_429_is_retried_only_after_its_retry_after_seconds():
    clock = FakeClock()
    send, calls = scripted(resp(429, **{"Retry-After": "7"}), resp(200))
    outcome = run(send_with_retry(send, RetryPolicy(), clock))
    assert outcome.response.status_code == 200 and outcome.attempts == 2 == len(calls)
    assert outcome.waits == (7.0,)


def test_429_with_an_http_date_waits_until_that_date_on_the_injected_clock():
    clock = FakeClock(now=1_700_000_000.0)
    when = email.utils.formatdate(clock.now + 12, usegmt=True)
    send, _ = scripted(resp(429, **{"Retry-After": when}), resp(200))
    outcome = run(send_with_retry(send, RetryPolicy(), clock))
    assert outcome.waits == (pytest.approx(12.0),)


def test_429_without_retry_after_is_not_retried():
    send, calls = scripted(resp(429), resp(200))
    outcome = run(send_with_retry(send, RetryPolicy(), FakeClock()))
    assert outcome.response.status_code == 429 and outcome.attempts == 1 == len(calls)


def test_a_retry_after_beyond_the_budget_stops_instead_of_retrying_early():
    clock = FakeClock()
    send, calls = scripted(resp(429, **{"Retry-After": "60"}), resp(200))
    outcome = run(send_with_retry(send, RetryPolicy(budget_s=30), clock))
    assert outcome.response.status_code == 429 and outcome.attempts == 1 == len(calls)
    assert outcome.stopped == "budget" and clock.sleeps == []


def test_the_budget_bounds_a_503_storm():
    clock = FakeClock()
    send, calls = scripted(*[resp(503)] * 10)
    outcome = run(send_with_retry(send, RetryPolicy(max_attempts=10, budget_s=4, backoff_s=1), clock))
    # waits 1, 2 fit in 4 s; the next (4) would end past the budget
    assert outcome.waits == (1.0, 2.0) and outcome.attempts == 3 == len(calls)
    assert outcome.stopped == "budget"


def test_max_attempts_bounds_retries():
    send, calls = scripted(*[resp(504)] * 10)
    outcome = run(send_with_retry(send, RetryPolicy(max_attempts=4), FakeClock()))
    assert outcome.response.status_code == 504 and outcome.attempts == 4 == len(calls)
    assert outcome.stopped == "max_attempts"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 500, 502])
def test_no_other_status_is_retried(status):
    send, calls = scripted(resp(status), resp(200))
    outcome = run(send_with_retry(send, RetryPolicy(), FakeClock()))
    assert outcome.response.status_code == status and outcome.attempts == 1 == len(calls)


def test_a_transport_error_is_returned_not_retried():
    calls = []

    async def send():
        calls.append(1)
        raise httpx.ConnectError("boom")

    outcome = run(send_with_retry(send, RetryPolicy(), FakeClock()))
    assert outcome.response is None and isinstance(outcome.error, httpx.ConnectError)
    assert outcome.attempts == 1 == len(calls)


# --- as counted by the fake platform, over real TLS ---------------------------------

def test_token_503_burst_then_success_reaches_the_platform_exactly_attempts_times(fake):
    fake.fail("/oauth/token", 503, times=2)
    clock = FakeClock()
    check = run(check_token(lab_target(fake, "genesys"), env=fake.env(), clock=clock))
    assert check.result.ok and check.result.attempts == 3
    assert fake.count(path="/oauth/token") == 3
    assert clock.sleeps == [0.5, 1.0]


def test_token_504_storm_is_bounded_by_the_policy(fake):
    fake.fail("/oauth/token", 504, times=10)
    check = run(check_token(lab_target(fake, "genesys"), env=fake.env(), retry_policy=RetryPolicy(max_attempts=3),
                            clock=FakeClock()))
    assert not check.result.ok and check.result.status == 504 and check.result.attempts == 3
    assert check.result.stopped == "max_attempts"
    assert fake.count(path="/oauth/token") == 3


def test_token_429_is_honoured_as_the_platform_asked(fake):
    fake.rate_limit("/oauth/token", retry_after="2")
    clock = FakeClock()
    check = run(check_token(lab_target(fake, "genesys"), env=fake.env(), clock=clock))
    assert check.result.ok and check.result.attempts == 2 and check.result.waits_s == (2.0,)
    assert fake.count(path="/oauth/token") == 2


def test_a_handshake_failure_is_one_attempt_and_one_handshake(fake):
    # A client capped at TLS 1.2 against the TLS 1.3-only cluster; no transport retry either.
    target = lab_target(fake, "genesys", tls_max="1.2")
    url = fake.url(GENESYS_TLS13, "/api/v2/flows")

    async def go():
        async with client_for(target) as client:
            return await send_with_retry(lambda: client.get(url), RetryPolicy(), FakeClock())

    outcome = run(go())
    assert outcome.response is None and isinstance(outcome.error, httpx.ConnectError)
    assert outcome.attempts == 1
    assert wait_until(lambda: len(fake.handshake_failures) >= 1)
    time.sleep(0.05)  # a (wrong) transport retry would land now
    assert fake.handshake_failures == [("tls13", "SSLError")]
    assert fake.count() == 0
