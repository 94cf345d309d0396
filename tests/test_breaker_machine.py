"""The breaker's state machine, driven by an injected clock: no sleeping.

Given/When/Then in each test; the store is the in-process one (the machine's
functions under a lock), so these run in microseconds.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cxhealth.tasks.breaker import (
    BreakerConfig,
    BreakerState,
    Override,
    TransitionKind,
    open_breaker,
    sqlite_path,
)
from cxhealth.tasks.breaker.machine import BreakerRecord, admit as machine_admit

HOST = "api.example.com"
T0 = 1_700_000_000.0
CAUSE = {"cause": "cert_expired", "summary": "the leaf expired"}


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_breaker(clock: FakeClock, **config):
    return open_breaker("memory://", BreakerConfig(**config), clock=clock)


def warm(breaker, host: str = HOST) -> None:
    """A recent success: the cold-start in-flight limit is lifted (tests of concurrent callers)."""
    decision = breaker.admit(host)
    assert breaker.record_success(host, decision=decision) is None


def trip(breaker, host: str = HOST):
    """Two failures from callers admitted while CLOSED; returns the opening transition."""
    first = breaker.record_failure(host, CAUSE, decision=breaker.admit(host))
    assert first is None
    return breaker.record_failure(host, CAUSE, decision=breaker.admit(host))


# -- the sliding window ------------------------------------------------------


def test_two_failures_just_over_the_window_apart_do_not_trip(clock):
    breaker = make_breaker(clock)
    assert breaker.record_failure(HOST, CAUSE) is None
    clock.advance(60.001)
    assert breaker.record_failure(HOST, CAUSE) is None
    assert breaker.admit(HOST).admitted
    assert breaker.status(HOST).failures_in_window == 1


def test_two_failures_exactly_the_window_apart_trip(clock):
    breaker = make_breaker(clock)
    breaker.record_failure(HOST, CAUSE)
    clock.advance(60.0)
    transition = breaker.record_failure(HOST, CAUSE)
    assert transition is not None and transition.kind is TransitionKind.OPENED


def test_window_slides_over_exact_timestamps_not_a_bucket(clock):
    # Given failures at 0 and 50 s (threshold 3): at 70 s only the one at 50 s is in window
    breaker = make_breaker(clock, threshold=3)
    breaker.record_failure(HOST, CAUSE)
    clock.advance(50)
    breaker.record_failure(HOST, CAUSE)
    clock.advance(20)
    assert breaker.record_failure(HOST, CAUSE) is None  # 0 s fell out; 50 s and 70 s remain
    clock.advance(39)
    transition = breaker.record_failure(HOST, CAUSE)  # 50, 70, 109: all within 60 s of 109
    assert transition is not None and transition.kind is TransitionKind.OPENED


def test_a_success_while_closed_does_not_clear_the_window(clock):
    breaker = make_breaker(clock)
    breaker.record_failure(HOST, CAUSE)
    d = breaker.admit(HOST)
    assert breaker.record_success(HOST, decision=d) is None
    assert breaker.record_failure(HOST, CAUSE).kind is TransitionKind.OPENED


def test_hosts_are_independent_and_case_insensitive(clock):
    breaker = make_breaker(clock)
    breaker.record_failure("API.example.com", CAUSE)
    breaker.record_failure("other.example.com", CAUSE)
    assert breaker.record_failure("api.example.com.", CAUSE).kind is TransitionKind.OPENED
    assert breaker.admit("other.example.com").admitted


# -- opening, rejecting, probing ------------------------------------------------


def test_opening_returns_the_transition_with_reopen_time_and_summary(clock):
    breaker = make_breaker(clock)
    transition = trip(breaker)
    assert transition.kind is TransitionKind.OPENED
    assert transition.host == HOST
    assert transition.at == at(T0)
    assert transition.reopen_at == at(T0 + 30)
    assert transition.summary == CAUSE
    assert transition.trips == 1


def test_open_breaker_rejects_with_reopen_time_and_last_failure(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    clock.advance(29.999)
    decision = breaker.admit(HOST)
    assert not decision.admitted
    assert decision.state is BreakerState.OPEN
    assert decision.reopen_at == at(T0 + 30)
    assert decision.last_failure == CAUSE
    assert decision.fallback is None


def test_failures_while_open_are_not_counted_and_return_nothing(clock):
    breaker = make_breaker(clock)
    warm(breaker)
    admitted_before = [breaker.admit(HOST) for _ in range(5)]
    breaker.record_failure(HOST, CAUSE, decision=admitted_before[0])
    assert breaker.record_failure(HOST, CAUSE, decision=admitted_before[1]) is not None
    assert [breaker.record_failure(HOST, CAUSE, decision=d) for d in admitted_before[2:]] == [None] * 3
    assert breaker.status(HOST).trips == 1


def test_after_open_time_exactly_one_caller_probes(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    clock.advance(30)
    probe = breaker.admit(HOST)
    others = [breaker.admit(HOST) for _ in range(10)]
    assert probe.admitted and probe.is_probe and probe.lease
    assert probe.state is BreakerState.HALF_OPEN
    assert probe.last_failure == CAUSE
    assert not any(d.admitted or d.is_probe for d in others)
    assert {d.state for d in others} == {BreakerState.HALF_OPEN}
    # the others learn when the probe's lease runs out, the latest the breaker decides again
    assert others[0].reopen_at == at(T0 + 30 + 60)


def test_probe_success_closes_once_and_resolves_the_incident(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    clock.advance(30)
    probe = breaker.admit(HOST)
    closed = breaker.record_success(HOST, decision=probe)
    assert closed.kind is TransitionKind.CLOSED
    assert closed.summary == CAUSE and closed.reopen_at is None and closed.at == at(T0 + 30)
    assert breaker.record_success(HOST, decision=probe) is None  # only once
    assert breaker.admit(HOST).admitted
    assert breaker.status(HOST).trips == 0


def test_probe_failure_reopens_with_the_next_backoff(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    clock.advance(30)
    probe = breaker.admit(HOST)
    reopened = breaker.record_failure(HOST, {"cause": "tcp_refused"}, decision=probe)
    assert reopened.kind is TransitionKind.REOPENED
    assert reopened.reopen_at == at(T0 + 30 + 60)
    assert reopened.summary == {"cause": "tcp_refused"}
    assert breaker.admit(HOST).last_failure == {"cause": "tcp_refused"}
    assert breaker.record_failure(HOST, CAUSE, decision=probe) is None  # the lease is spent


def test_backoff_doubles_per_consecutive_trip_and_caps(clock):
    breaker = make_breaker(clock, open_s=30, max_open_s=300)
    opened = trip(breaker)
    durations = [(opened.reopen_at - opened.at).total_seconds()]
    for _ in range(6):
        clock.advance(durations[-1])
        probe = breaker.admit(HOST)
        assert probe.is_probe
        t = breaker.record_failure(HOST, CAUSE, decision=probe)
        durations.append((t.reopen_at - t.at).total_seconds())
    assert durations == [30, 60, 120, 240, 300, 300, 300]


def test_backoff_restarts_after_a_close(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    clock.advance(30)
    probe = breaker.admit(HOST)
    breaker.record_failure(HOST, CAUSE, decision=probe)  # trip 2: 60 s
    clock.advance(60)
    breaker.record_success(HOST, decision=breaker.admit(HOST))
    again = trip(breaker)
    assert (again.reopen_at - again.at).total_seconds() == 30


def test_a_non_probe_success_never_closes_a_half_open_breaker(clock):
    breaker = make_breaker(clock)
    warm(breaker)
    admitted_while_closed = breaker.admit(HOST)
    trip(breaker)
    clock.advance(30)
    probe = breaker.admit(HOST)
    assert breaker.record_success(HOST, decision=admitted_while_closed) is None
    assert breaker.record_success(HOST) is None
    assert breaker.status(HOST).state is BreakerState.HALF_OPEN
    assert breaker.record_success(HOST, decision=probe).kind is TransitionKind.CLOSED


def test_a_failure_admitted_before_an_incident_that_ended_is_ignored(clock):
    # Given a caller admitted while CLOSED that is slow to report
    breaker = make_breaker(clock)
    warm(breaker)
    slow = breaker.admit(HOST)
    trip(breaker)
    clock.advance(30)
    breaker.record_success(HOST, decision=breaker.admit(HOST))
    # When its failure arrives after the breaker opened and closed again
    breaker.record_failure(HOST, CAUSE, decision=slow)
    # Then it is history, not a new failure
    assert breaker.status(HOST).failures_in_window == 0


def test_a_failure_without_a_decision_counts_while_closed(clock):
    breaker = make_breaker(clock)
    breaker.record_failure(HOST, CAUSE)
    assert breaker.status(HOST).failures_in_window == 1


# -- the probe's lease ------------------------------------------------------------


def test_a_dead_probers_lease_expires_and_another_caller_probes(clock):
    breaker = make_breaker(clock, lease_s=20)
    trip(breaker)
    clock.advance(30)
    dead = breaker.admit(HOST)  # this prober never reports
    clock.advance(19.999)
    assert not breaker.admit(HOST).admitted
    clock.advance(0.001)
    second = breaker.admit(HOST)
    assert second.is_probe and second.lease != dead.lease
    assert not breaker.admit(HOST).admitted
    # the first prober wakes up: its lease was taken over, its result is ignored
    assert breaker.record_success(HOST, decision=dead) is None
    assert breaker.record_failure(HOST, CAUSE, decision=dead) is None
    assert breaker.record_success(HOST, decision=second).kind is TransitionKind.CLOSED


def test_a_late_probe_result_counts_when_nobody_took_the_lease_over(clock):
    breaker = make_breaker(clock, lease_s=20)
    trip(breaker)
    clock.advance(30)
    slow = breaker.admit(HOST)
    clock.advance(45)  # lease expired, but no other caller came
    assert breaker.record_success(HOST, decision=slow).kind is TransitionKind.CLOSED


# -- operator overrides ---------------------------------------------------------------


def test_forced_open_rejects_everyone_without_a_reopen_time(clock):
    breaker = make_breaker(clock)
    status = breaker.force_open(HOST, "vendor maintenance window")
    assert status.state is BreakerState.OPEN and status.override is Override.FORCED_OPEN
    clock.advance(10_000)
    decision = breaker.admit(HOST)
    assert not decision.admitted and not decision.is_probe
    assert decision.state is BreakerState.OPEN and decision.reopen_at is None
    assert decision.override is Override.FORCED_OPEN
    assert decision.override_reason == "vendor maintenance window"


def test_forced_open_holds_past_the_open_time_and_clearing_lets_one_probe(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    breaker.force_open(HOST, "kill switch")
    clock.advance(31)
    assert not breaker.admit(HOST).admitted
    status = breaker.clear_override(HOST)
    assert status.override is None and status.override_reason is None
    assert breaker.admit(HOST).is_probe
    assert not breaker.admit(HOST).admitted


def test_disabled_admits_everyone_and_counts_nothing(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    status = breaker.disable(HOST, "false positives")
    assert status.state is BreakerState.CLOSED and status.underlying_state is BreakerState.OPEN
    decisions = [breaker.admit(HOST) for _ in range(3)]
    assert all(d.admitted and not d.is_probe for d in decisions)
    assert {d.override for d in decisions} == {Override.DISABLED}
    assert breaker.record_failure(HOST, CAUSE, decision=decisions[0]) is None
    breaker.clear_override(HOST)
    assert not breaker.admit(HOST).admitted  # the machine kept its state underneath


def test_disabled_on_a_closed_breaker_does_not_count_failures(clock):
    breaker = make_breaker(clock)
    breaker.disable(HOST)
    for _ in range(5):
        assert breaker.record_failure(HOST, CAUSE) is None
    breaker.clear_override(HOST)
    assert breaker.status(HOST).failures_in_window == 0


# -- values and configuration ----------------------------------------------------------


def test_summary_is_stored_as_json():
    clock = FakeClock()
    breaker = make_breaker(clock)
    breaker.record_failure(HOST, {"cause": "ok", "when": at(T0)})
    t = breaker.record_failure(HOST, {"cause": "cert_expired", "n": 1})
    assert t.summary == {"cause": "cert_expired", "n": 1}


def test_status_is_read_only(clock):
    breaker = make_breaker(clock)
    trip(breaker)
    clock.advance(31)
    status = breaker.status(HOST)
    assert status.state is BreakerState.OPEN and status.reopen_at == at(T0 + 30)
    assert breaker.admit(HOST).is_probe  # status did not take the probe


def test_the_machine_takes_its_lease_token_from_the_caller():
    record = BreakerRecord(state=BreakerState.OPEN, reopen_at=T0, trips=1)
    new, decision = machine_admit(record, T0, BreakerConfig(), HOST, "token-1")
    assert decision.lease == "token-1" and new.lease == "token-1"
    assert new.lease_expires == T0 + 60


@pytest.mark.parametrize("bad", [
    {"threshold": 0}, {"threshold": 1.5}, {"window_s": 0}, {"open_s": -1},
    {"open_s": 60, "max_open_s": 30}, {"lease_s": 0},
])
def test_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        BreakerConfig(**bad)


def test_config_from_the_toml_table():
    config = BreakerConfig.from_mapping(
        {"threshold": 3, "window_s": 120, "store": "redis://x:6379/0"}
    )
    assert (config.threshold, config.window_s, config.open_s) == (3, 120, 30.0)
    with pytest.raises(ValueError, match="unknown"):
        BreakerConfig.from_mapping({"treshold": 3})


def test_store_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sqlite_path("sqlite:////abs/path.db") == "/abs/path.db"
    assert sqlite_path("sqlite:///rel/path.db") == "rel/path.db"
    assert sqlite_path("sqlite:///~/.cxhealth/breaker.sqlite3") == f"{tmp_path}/.cxhealth/breaker.sqlite3"
    with pytest.raises(ValueError):
        open_breaker("postgres://localhost/x", BreakerConfig())
    with pytest.raises(ValueError):
        open_breaker("sqlite://", BreakerConfig())


def test_default_store_is_sqlite_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    breaker = open_breaker(None, BreakerConfig())
    assert breaker.fallback_reason is None and breaker.store_name == "sqlite"
    assert (tmp_path / ".cxhealth" / "breaker.sqlite3").exists()
    breaker.close()


# -- cold starts: the in-flight limit (contract §3) ---------------------------------


def test_a_cold_host_lets_in_at_most_the_failures_still_allowed(clock):
    waits = []
    breaker = open_breaker("memory://", BreakerConfig(threshold=2, lease_s=40, wait_poll_s=1), clock=clock)
    first, second = breaker.admit(HOST), breaker.admit(HOST)
    assert first.admitted and second.admitted and first.lease and second.lease

    def sleep(seconds):  # the injected sleep: time passes, and the second check fails meanwhile
        waits.append(seconds)
        clock.advance(seconds)
        if len(waits) == 3:
            breaker.record_failure(HOST, CAUSE, decision=second)

    breaker._sleep, breaker._monotonic = sleep, clock  # noqa: SLF001
    # A third caller waits while two are in flight (two failures would open the breaker) ...
    assert breaker.record_failure(HOST, CAUSE, decision=first) is None
    third = breaker.admit(HOST)
    # ... and once the second fails and opens it, is rejected: it never reached the host
    assert not third.admitted and third.state is BreakerState.OPEN and len(waits) == 3


def test_a_slot_whose_holder_died_frees_after_its_lease(clock):
    waits = []
    breaker = open_breaker("memory://", BreakerConfig(threshold=2, lease_s=40, wait_poll_s=1), clock=clock)
    held = [breaker.admit(HOST), breaker.admit(HOST)]
    assert all(d.admitted for d in held)
    breaker._sleep = lambda s: (waits.append(s), clock.advance(s))  # noqa: SLF001
    breaker._monotonic = clock  # noqa: SLF001
    late = breaker.admit(HOST)  # both holders are gone and never report
    assert late.admitted and 39 <= sum(waits) <= 41


def test_once_a_check_succeeds_everyone_proceeds(clock):
    breaker = make_breaker(clock)
    first, second = breaker.admit(HOST), breaker.admit(HOST)
    breaker._sleep = lambda s: (_ for _ in ()).throw(AssertionError("must not wait"))  # noqa: SLF001
    assert breaker.record_success(HOST, decision=first) is None
    assert all(breaker.admit(HOST).admitted for _ in range(10))
    # and a failure frees its slot too
    breaker.record_failure(HOST, CAUSE, decision=second)
    assert breaker.status(HOST).failures_in_window == 1


def test_a_released_slot_is_free_at_once(clock):
    breaker = make_breaker(clock)
    held = [breaker.admit(HOST), breaker.admit(HOST)]
    breaker._sleep = lambda s: (_ for _ in ()).throw(AssertionError("must not wait"))  # noqa: SLF001
    breaker.release(HOST, held[0])
    assert breaker.admit(HOST).admitted
