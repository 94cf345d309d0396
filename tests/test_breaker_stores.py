"""The same breaker behaviour on every store, and the fallback when a store is down.

Time: the memory and SQLite stores take an injected clock; Redis reads its own
clock (TIME), so its tests move time with the store's test-only offset. No test
sleeps. Redis tests use the Redis at 127.0.0.1:6379 and skip when it is not
reachable (fail instead with CXHEALTH_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import pytest

from cxhealth.tasks.breaker import BreakerConfig, BreakerState, Override, TransitionKind, open_breaker

HOST = "login.example.com"
CAUSE = {"cause": "cert_expired", "summary": "the leaf expired"}
T0 = 1_700_000_000.0
REDIS_URL = "redis://127.0.0.1:6379/0"


def require_redis(url: str = REDIS_URL) -> None:
    """Skip (or, with CXHEALTH_REQUIRE_SERVICES=1, fail) when Redis is not reachable."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        message = f"Redis not reachable at 127.0.0.1:6379: {exc}"
        if os.environ.get("CXHEALTH_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


class Offset:
    """Seconds added to "now": the injected clock's, or the Redis server's."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.services)])
def store(request, tmp_path):
    """(open(config) -> Breaker, offset): a fresh store of each kind with movable time."""
    offset = Offset()
    kind = request.param
    opened = []
    if kind == "redis":
        require_redis()
        prefix = f"cxhealth-test:{uuid.uuid4().hex}"

        def make(config=BreakerConfig()):
            b = open_breaker(REDIS_URL, config, key_prefix=prefix,
                             redis_time_offset=lambda: offset.seconds)
            opened.append(b)
            return b
    else:
        url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path}/breaker.sqlite3"

        def make(config=BreakerConfig()):
            b = open_breaker(url, config, clock=lambda: T0 + offset.seconds)
            opened.append(b)
            return b

    make.kind = kind
    yield make, offset
    for b in opened:
        assert b.fallback_reason is None, b.fallback_reason
        b.close()
    if kind == "redis":
        delete_redis_prefix(prefix)


# -- the same behaviour on every store ------------------------------------------------


def test_a_whole_incident_on_every_store(store):
    make, offset = store
    breaker = make(BreakerConfig(lease_s=10))
    # Given two failures: one "opened", to the caller whose failure tripped it
    d1, d2 = breaker.admit(HOST), breaker.admit(HOST)
    assert d1.admitted and d1.state is BreakerState.CLOSED and d1.fallback is None
    assert breaker.record_failure(HOST, CAUSE, decision=d1) is None
    opened = breaker.record_failure(HOST, CAUSE, decision=d2)
    assert opened.kind is TransitionKind.OPENED and opened.summary == CAUSE and opened.trips == 1
    assert abs((opened.reopen_at - opened.at).total_seconds() - 30) < 1e-3
    # While open: rejected with the reopen time and the failure that opened it
    rejected = breaker.admit(HOST)
    assert not rejected.admitted and rejected.state is BreakerState.OPEN
    assert rejected.reopen_at == opened.reopen_at and rejected.last_failure == CAUSE
    # After the open time: one probe, the others rejected
    offset.advance(31)
    probe = breaker.admit(HOST)
    assert probe.is_probe and probe.admitted and probe.state is BreakerState.HALF_OPEN
    assert not breaker.admit(HOST).admitted
    # The probe fails: reopened for 60 s
    reopened = breaker.record_failure(HOST, {"cause": "tcp_refused"}, decision=probe)
    assert reopened.kind is TransitionKind.REOPENED and reopened.trips == 2
    assert abs((reopened.reopen_at - reopened.at).total_seconds() - 60) < 1e-3
    offset.advance(61)
    dead = breaker.admit(HOST)
    assert dead.is_probe
    # The prober dies; after its lease another caller probes; the dead one's result is ignored
    offset.advance(11)
    second = breaker.admit(HOST)
    assert second.is_probe and second.lease != dead.lease
    assert breaker.record_success(HOST, decision=dead) is None
    closed = breaker.record_success(HOST, decision=second)
    assert closed.kind is TransitionKind.CLOSED and closed.summary == {"cause": "tcp_refused"}
    assert breaker.record_success(HOST, decision=second) is None
    # Closed again: everyone admitted, trips reset
    status = breaker.status(HOST)
    assert status.state is BreakerState.CLOSED and status.trips == 0
    assert breaker.admit(HOST).admitted


def test_cold_start_in_flight_limit_on_every_store(store):
    make, offset = store
    breaker = make(BreakerConfig(threshold=2, lease_s=10))
    once = breaker._admit_once  # noqa: SLF001 - one answer, without waiting
    # No success recorded: as many in flight as failures still allowed (2), the next one waits
    a, b = once(HOST), once(HOST)
    assert a.admitted and b.admitted and a.lease and b.lease and a.lease != b.lease
    waiting = once(HOST)
    assert not waiting.admitted and waiting.wait and waiting.state is BreakerState.CLOSED
    # One failure: one failure left before the threshold, and b is still in flight
    assert breaker.record_failure(HOST, CAUSE, decision=a) is None
    assert once(HOST).wait
    # b's slot expires (its holder died): the next caller may go
    offset.advance(11)
    c = once(HOST)
    assert c.admitted and not c.wait
    # A success lifts the limit for everyone
    assert breaker.record_success(HOST, decision=c) is None
    assert all(once(HOST).admitted for _ in range(5))
    assert breaker.status(HOST).failures_in_window == 1


def test_window_on_every_store(store):
    make, offset = store
    breaker = make()
    breaker.record_failure(HOST, CAUSE)
    offset.advance(61)
    assert breaker.record_failure(HOST, CAUSE) is None
    assert breaker.status(HOST).failures_in_window == 1
    offset.advance(59)
    assert breaker.record_failure(HOST, CAUSE).kind is TransitionKind.OPENED


def test_stale_results_on_every_store(store):
    make, offset = store
    breaker = make()
    slow = breaker.admit(HOST)
    breaker.record_failure(HOST, CAUSE)
    breaker.record_failure(HOST, CAUSE)
    # failures and non-probe successes while open change nothing
    assert breaker.record_failure(HOST, CAUSE, decision=slow) is None
    offset.advance(30.5)
    probe = breaker.admit(HOST)
    assert breaker.record_success(HOST, decision=slow) is None
    assert breaker.record_success(HOST, decision=probe).kind is TransitionKind.CLOSED
    # a failure admitted before the incident is history once it is over
    assert breaker.record_failure(HOST, CAUSE, decision=slow) is None
    assert breaker.status(HOST).failures_in_window == 0


def test_overrides_on_every_store(store):
    make, offset = store
    breaker = make()
    assert breaker.force_open(HOST, "kill switch").override is Override.FORCED_OPEN
    rejected = breaker.admit(HOST)
    assert not rejected.admitted and rejected.reopen_at is None
    assert rejected.override is Override.FORCED_OPEN and rejected.override_reason == "kill switch"
    status = breaker.disable(HOST, "noisy")
    assert status.state is BreakerState.CLOSED and status.override is Override.DISABLED
    assert breaker.admit(HOST).admitted
    assert breaker.record_failure(HOST, CAUSE) is None
    assert breaker.record_failure(HOST, CAUSE) is None
    assert breaker.clear_override(HOST).override is None
    assert breaker.status(HOST).failures_in_window == 0
    assert breaker.admit(HOST).admitted


def test_stores_shared_by_two_breakers_share_the_state(store):
    make, offset = store
    a, b = make(), make()
    a.record_failure(HOST, CAUSE)
    if make.kind == "memory":
        # memory:// with an injected clock is private to its breaker (tests);
        # without one, memory:// is shared by the whole process.
        assert b.record_failure(HOST, CAUSE) is None
        return
    assert b.record_failure(HOST, CAUSE).kind is TransitionKind.OPENED
    assert not a.admit(HOST).admitted


# -- store specifics ---------------------------------------------------------------------


def test_sqlite_state_survives_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path}/b.sqlite3"
    clock = lambda: T0  # noqa: E731
    first = open_breaker(url, BreakerConfig(), clock=clock)
    first.record_failure(HOST, CAUSE)
    first.record_failure(HOST, CAUSE)
    first.close()
    second = open_breaker(url, BreakerConfig(), clock=clock)
    decision = second.admit(HOST)
    assert not decision.admitted and decision.last_failure == CAUSE
    second.close()


def test_sqlite_uses_wal(tmp_path):
    import sqlite3

    open_breaker(f"sqlite:///{tmp_path}/b.sqlite3", BreakerConfig()).close()
    conn = sqlite3.connect(tmp_path / "b.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.services
def test_redis_keys_are_hash_tagged_per_host_and_use_server_time():
    require_redis()
    import redis

    prefix = f"cxhealth-test:{uuid.uuid4().hex}"
    # a worker whose own clock is a year off does not move the breaker's time
    breaker = open_breaker(REDIS_URL, BreakerConfig(), key_prefix=prefix,
                           clock=lambda: time.time() + 365 * 86400)
    try:
        breaker.record_failure(HOST, CAUSE)
        opened = breaker.record_failure(HOST, CAUSE)
        client = redis.Redis.from_url(REDIS_URL)
        assert client.exists(f"{prefix}:{{{HOST}}}") == 1
        server_now = float(client.time()[0])
        client.close()
        assert abs(opened.at.timestamp() - server_now) < 5
    finally:
        breaker.close()
        delete_redis_prefix(prefix)


# -- an unreachable store falls back, flagged, without crashing or hanging --------------


def test_unreachable_redis_falls_back_with_a_flag_and_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="cxhealth.breaker")
    started = time.monotonic()
    breaker = open_breaker("redis://:s3cret-password@127.0.0.1:1/0", BreakerConfig(),
                           clock=lambda: T0)
    decision = breaker.admit(HOST)
    assert time.monotonic() - started < 3
    assert decision.admitted and decision.fallback is not None
    assert "unreachable" in decision.fallback and "local fallback store" in decision.fallback
    assert "s3cret-password" not in decision.fallback
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    assert not any("s3cret-password" in r.getMessage() for r in caplog.records)
    # the fallback is still a breaker: it opens, and says it is a fallback
    breaker.record_failure(HOST, CAUSE, decision=decision)
    opened = breaker.record_failure(HOST, CAUSE)
    assert opened.kind is TransitionKind.OPENED and opened.fallback == decision.fallback
    rejected = breaker.admit(HOST)
    assert not rejected.admitted and rejected.fallback is not None
    assert breaker.status(HOST).fallback is not None


def test_an_sqlite_path_that_cannot_be_created_is_a_configuration_error(tmp_path):
    """A wrong path is not an outage: falling back would silently stop sharing the breaker."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ValueError, match="cannot be opened"):
        open_breaker(f"sqlite:///{not_a_dir}/breaker.sqlite3", BreakerConfig(), clock=lambda: T0)


def test_a_redis_that_never_answers_does_not_hang():
    # Given a peer that accepts TCP (the kernel's backlog) but never speaks
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        started = time.monotonic()
        breaker = open_breaker(f"redis://127.0.0.1:{port}/0", BreakerConfig(),
                               clock=lambda: T0, timeout_s=0.3, retry_after_s=60)
        decision = breaker.admit(HOST)
        elapsed = time.monotonic() - started
        assert decision.fallback is not None and "Timeout" in decision.fallback
        assert elapsed < 2, elapsed  # one 0.3 s timeout, no retries
    finally:
        silent.close()


def test_a_store_down_at_start_is_used_once_it_answers_after_the_retry_wait(caplog):
    from cxhealth.tasks.breaker import Breaker, MemoryStore, StoreUnavailable

    caplog.set_level(logging.WARNING, logger="cxhealth.breaker")
    clock = lambda: T0  # noqa: E731
    late = MemoryStore(clock)
    late.name = "late"
    up = [False]

    def factory():
        if not up[0]:
            raise StoreUnavailable("late store unreachable: not up yet")
        return late

    now = [0.0]
    breaker = Breaker(factory, BreakerConfig(), description="late://", fallback=MemoryStore(clock),
                      retry_after_s=5, monotonic=lambda: now[0])
    assert "not up yet" in breaker.admit(HOST).fallback
    up[0] = True
    assert breaker.admit(HOST).fallback is not None  # not retried before retry_after_s
    now[0] = 5.0
    decision = breaker.admit(HOST)
    assert decision.fallback is None and decision.store == "late"
    assert any("reachable again" in r.getMessage() for r in caplog.records)


class FlakyStore:
    """A store that works until told it is down (an injected effect, not a patch)."""

    name = "flaky"

    def __init__(self, clock) -> None:
        from cxhealth.tasks.breaker import MemoryStore

        self.inner = MemoryStore(clock)
        self.inner.name = self.name  # its decisions say which store answered
        self.down = False

    def __getattr__(self, attribute):
        method = getattr(self.inner, attribute)

        def call(*args, **kwargs):
            from cxhealth.tasks.breaker import StoreUnavailable

            if self.down:
                raise StoreUnavailable("flaky store unreachable: it is down")
            return method(*args, **kwargs)

        return call


def test_a_store_that_dies_mid_run_falls_back_and_comes_back(caplog):
    from cxhealth.tasks.breaker import Breaker, MemoryStore

    caplog.set_level(logging.WARNING, logger="cxhealth.breaker")
    clock = lambda: T0  # noqa: E731
    flaky = FlakyStore(clock)
    now = [0.0]
    breaker = Breaker(lambda: flaky, BreakerConfig(), description="flaky://",
                      fallback=MemoryStore(clock), retry_after_s=5, monotonic=lambda: now[0])
    admitted = breaker.admit(HOST)
    assert admitted.fallback is None and admitted.store == "flaky"
    # When the store goes down between the admit and the report
    flaky.down = True
    breaker.record_failure(HOST, CAUSE, decision=admitted)
    # Then the failure is counted in the fallback (flagged), not lost
    opened = breaker.record_failure(HOST, CAUSE)
    assert opened.kind is TransitionKind.OPENED and "it is down" in opened.fallback
    assert not breaker.admit(HOST).admitted
    assert sum("unavailable" in r.getMessage() for r in caplog.records) == 1  # one warning
    # And once the store answers again (after retry_after_s) the breaker uses it
    flaky.down = False
    assert breaker.admit(HOST).fallback is not None  # still waiting to retry
    now[0] = 5.0
    back = breaker.admit(HOST)
    assert back.fallback is None and back.admitted  # the store never saw the outage's failures


def test_a_probe_whose_store_died_does_not_close_anything_elsewhere():
    from cxhealth.tasks.breaker import Breaker, MemoryStore

    clock_now = [T0]
    clock = lambda: clock_now[0]  # noqa: E731
    flaky = FlakyStore(clock)
    breaker = Breaker(lambda: flaky, BreakerConfig(), description="flaky://",
                      fallback=MemoryStore(clock), retry_after_s=0)
    breaker.record_failure(HOST, CAUSE)
    breaker.record_failure(HOST, CAUSE)
    clock_now[0] += 31
    probe = breaker.admit(HOST)
    assert probe.is_probe
    flaky.down = True
    assert breaker.record_success(HOST, decision=probe) is None
    flaky.down = False
    assert breaker.record_success(HOST, decision=probe).kind is TransitionKind.CLOSED


def test_memory_url_without_a_clock_is_shared_by_the_process():
    url = f"memory://{uuid.uuid4().hex}"
    a = open_breaker(url, BreakerConfig())
    b = open_breaker(url, BreakerConfig())
    a.record_failure(HOST, CAUSE)
    assert b.record_failure(HOST, CAUSE).kind is TransitionKind.OPENED


def test_the_engine_never_imports_prefect():
    import subprocess
    import sys

    code = ("import sys, cxhealth.tasks.breaker, cxhealth.tasks.breaker.sqlite_store, cxhealth.tasks.breaker.redis_store; "
            "sys.exit('prefect' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr or "cxhealth.tasks.breaker imported prefect"
