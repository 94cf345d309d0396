"""The fleet end to end: real `prefect server start` processes, real workers, real lab hosts.

Issue 5's deploy test: prefect.yaml deploys against a real server and a worker
runs one deployment to Completed.

Issue 7's end-to-end test: a server on PostgreSQL, three process workers, one
Redis breaker store. Rounds of concurrent integration-health runs across the
workers against a host whose handshake fails (an expired certificate) and a
healthy one; then the host recovers. The breaker's windows are the test's, not
the machine's (issue 16): the breaker opens for an hour, and the test ends an
open time by moving the record's reopen time to the Redis server's now in the
store itself (:class:`_StoreClock`) -- the workers are other processes, and the
store is what they all read. So the counts are exact on a loaded or a quiet
machine. What must hold, whatever order the workers pick the runs in:

* the two tripping checks reach the host (a failed verified handshake each, and
  the first one's chain capture: the second's failure opens the breaker);
* while open, EVERY run is turned away and the host sees no connection; when the
  open time is over, of several runs at once exactly one (the probe) reaches the
  host -- one connection, its failed handshake reopens the breaker -- and the
  others are turned away; after recovery one probe closes it;
* exactly one Slack root message per incident reached the fake Slack (the breaker's
  opening is a reply in the target incident's thread) and one resolve;
* the healthy target's runs completed;
* the breaker's opened event reached the server, and the Automation paused the
  WFM sync's work queue: a gated-wfm-sync run stays Scheduled while it is paused;
* recovery closes the breaker, resumes the queue (the sync then runs and writes
  its rows).

Nothing here sleeps a fixed time: every wait polls the server (or the lab)
against a deadline. Every process is stopped in the fixtures' finalizers, even
when an assertion fails.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sqlite3
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import need_service

pytestmark = [pytest.mark.slow]

OPEN_S = 3600.0        # the breaker's open time (max_open_s too): nothing expires by itself; the test ends it
WINDOW_S = 600.0       # the failure window: the two tripping checks fall in it however slow the machine
OPEN_ROUND = 3         # runs of the failing target started at once while the breaker is open (+ 1 healthy-only)
PROBE_ROUND = 3        # runs of it started at once when the open time is over: one probes
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _fleet():
    import cxhealth.lab.fleet as fleet

    return fleet


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _state(run: Any) -> str:
    """A flow run's state type (Prefect's FlowRun, as its client reads it)."""
    return run.state.type.value if run.state is not None else "?"


def _message(run: Any) -> str:
    return (run.state.message if run.state is not None else None) or ""


def _wait_final(api: Any, ids: list[Any], timeout: float, on_poll: Callable[[], None] = lambda: None) -> dict[Any, Any]:
    fleet = _fleet()
    latest: dict[Any, Any] = {}

    def done() -> bool:
        on_poll()
        latest.update({r.id: r for r in fleet.flow_runs(api, ids)})
        return len(latest) == len(ids) and all(_state(r) in FINAL for r in latest.values())

    fleet.wait_for(done, timeout, 0.3, f"{len(ids)} flow runs to finish")
    return latest


def _submissions(state: Any) -> Counter:
    """How many flow runs each worker started (from its own log; a worker that loses the
    race for a run logs "Aborted submission" instead)."""
    seen: Counter = Counter()
    for proc in state.workers:
        text = Path(proc.log).read_text(errors="replace")
        seen[proc.name] = len(re.findall(r"Flow run '[^']+' submitted to infrastructure", text))
    return seen


# ---------------------------------------------------------------------------
# (a) issue 5: prefect.yaml deploys against a real server; a worker runs it
# ---------------------------------------------------------------------------

def test_prefect_yaml_deploys_and_one_worker_runs_a_deployment_to_completed(tmp_path):
    from cxhealth.lab.fake_platform import FakePlatform

    fleet = _fleet()
    with FakePlatform() as fake:
        targets = fake.write_targets(tmp_path / "targets.toml", platforms=("genesys",))
        options = fleet.FleetOptions(state_dir=tmp_path / "fleet", workers=1, database="sqlite", scheduler=False,
                                     ui=False, worker_poll_s=1, worker_env=fake.env())
        try:
            state = fleet.up(options)
            with fleet.client(state.api_url) as api:
                names = {d.name for d in api.read_deployments()}
                assert names == {"every-5-minutes", "hourly"}, names
                deployment = api.read_deployment_by_name("integration-health/every-5-minutes")
                assert deployment.work_pool_name == "cxhealth-pool"
                assert deployment.entrypoint == "cxhealth.flows.integration_health:integration_health"
                run = api.create_flow_run_from_deployment(
                    deployment.id, parameters={"targets_file": str(targets), "alerts": False})
                final = _wait_final(api, [run.id], timeout=90)[run.id]
            assert _state(final) == "COMPLETED", _message(final)
            assert _message(final) == "1 target(s) healthy: lab-genesys"
            assert fake.count(path="/oauth/token") == 1, "the worker's flow run really checked the lab"
            assert sum(_submissions(state).values()) == 1
        finally:
            report = fleet.down(tmp_path / "fleet")
        assert report.left == [], "down leaves nothing running"
        assert len(report.stopped) + len(report.killed) == 2  # the server and the worker


# ---------------------------------------------------------------------------
# (b) issue 7: the breaker, the alerts and the Automation across a fleet
# ---------------------------------------------------------------------------

@pytest.fixture()
def redis_url():
    """An empty Redis database of our own (the outbox is per database), flushed afterwards."""
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    for db in range(15, 7, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=db)
        if client.dbsize() == 0:
            client.set("cxhealth:fleet-test:claimed", "1", ex=900)
            try:
                yield f"redis://127.0.0.1:6379/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    pytest.fail("no empty Redis database among 8-15 for the fleet test", pytrace=False)


_END_OPEN_LUA = r"""
-- The test's clock: the open time of one host's breaker has passed. Compare-and-set, so that
-- only the open the test read is ended (never a later reopen): reopen_at := the server's now,
-- in the field and the "%.6f" format that tasks/breaker/redis_script.py reads and writes.
if redis.call('HGET', KEYS[1], 'state') ~= 'open' or redis.call('HGET', KEYS[1], 'reopen_at') ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'reopen_at', string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000 - 0.001))
return 1
"""


class _StoreClock:
    """The breaker's windows, driven through the fleet's shared Redis store.

    The workers' flow runs are separate processes, so no in-process clock or offset reaches
    them; what they all read is the store. The breaker opens for OPEN_S (an hour: nothing
    expires by itself while the test runs, however loaded the machine), and when the test
    wants an open time over it moves that record's ``reopen_at`` to the Redis server's now --
    what every worker's next admit would see an hour later: an OPEN whose time has passed, so
    the first caller probes. Nothing else changes (the failures, the trips, the probe's lease
    run on the server's clock as before), and no product code has a hook for it.

    This machine's copy of the OPEN (the workers' local fallback store, which an emptied Redis
    would fall back on: ``FallbackStore.mirror``) keeps the same reopen time, so the same hour
    passes there too: every worker's flow runs share the test's ``CXHEALTH_FALLBACK_DIR``.
    """

    def __init__(self, url: str, host: str) -> None:
        import redis
        from cxhealth.tasks.breaker import BreakerConfig, open_breaker
        from cxhealth.tasks.breaker.breaker import fallback_path
        from cxhealth.tasks.breaker.redis_store import RedisStore

        self.host = host
        self.store = RedisStore(url)  # the default key prefix: the one the workers' breakers use
        self.key = self.store.key(host)
        self.config = BreakerConfig(threshold=2, window_s=WINDOW_S, open_s=OPEN_S, max_open_s=OPEN_S)
        breaker = open_breaker(url, self.config)  # as a worker opens it: the same description, the same copy
        self.local_copy = fallback_path(breaker.description)
        breaker.close()
        self._client = redis.Redis.from_url(url)
        self._end_open = self._client.register_script(_END_OPEN_LUA)

    def status(self) -> Any:
        return self.store.status(self.host, self.config)

    def end_open(self) -> None:
        """The current open time is over (the breaker must be open, within its time)."""
        status = self.status()
        reopen_at = status.reopen_at.timestamp()
        assert status.state.value == "open" and reopen_at > time.time() + OPEN_S / 2, status
        with sqlite3.connect(self.local_copy, timeout=10) as db:  # the copy the transition's process made
            moved = db.execute("UPDATE breaker SET reopen_at = ? WHERE host = ? AND state = 'open' "
                               "AND abs(reopen_at - ?) < 0.001", (time.time() - 0.001, self.host, reopen_at)).rowcount
        assert moved == 1, f"this machine's copy of the OPEN ({self.local_copy}) holds the store's reopen time"
        stored = self._client.hget(self.key, "reopen_at")
        assert self._end_open(keys=[self.key], args=[stored]) == 1, "the open the test read is the store's"
        assert self.status().reopen_at.timestamp() <= time.time(), "the store reads its open time as over"

    def close(self) -> None:
        self.store.close()
        self._client.close()


@pytest.mark.timeout(900)
def test_breaker_alerts_and_automation_hold_across_a_fleet(tmp_path, redis_url):
    need_service("PostgreSQL", "127.0.0.1", 5432)
    from cxhealth.lab.fake_platform import FakePlatform
    from cxhealth.lab.fake_slack import FakeSlack
    from cxhealth.lab.switchable import SwitchableTLSServer

    fleet = _fleet()
    suffix = secrets.token_hex(3)
    flaky_name, healthy_name = f"fleet-flaky-{suffix}", f"fleet-healthy-{suffix}"
    slack_token = "xoxb-fleet-" + secrets.token_hex(8)
    db_name = f"cxhealth_fleet_test_{suffix}"
    with FakePlatform() as fake, SwitchableTLSServer() as flaky, \
            FakeSlack(token=slack_token, channels={"C0FLEET": "fleet-alerts"}) as slack:
        targets = tmp_path / "targets.toml"
        text = fake.targets_toml(platforms=("genesys",)).replace('name = "lab-genesys"', f'name = "{healthy_name}"')
        # JSON strings and arrays of strings are valid TOML for these ASCII values.
        text += "\n[[target]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in flaky.target_values(flaky_name).items())
        text += (f'\n\n[breaker]\nstore = "{redis_url}"\nthreshold = 2\nwindow_s = {WINDOW_S}\n'
                 f"open_s = {OPEN_S}\nmax_open_s = {OPEN_S}\n"
                 f'\n[slack]\nbot_token_env = "FLEET_SLACK_TOKEN"\nchannel = "C0FLEET"\napi_base = "{slack.api_base}"\n')
        targets.write_text(text)
        wfm_db = tmp_path / "wfm.sqlite3"
        worker_env = {**fake.env(), **flaky.env(), "FLEET_SLACK_TOKEN": slack_token}
        options = fleet.FleetOptions(state_dir=tmp_path / "fleet", workers=3, database="postgres", db_name=db_name,
                                     fresh=True, scheduler=False, ui=False, worker_poll_s=1, worker_env=worker_env)
        clock = _StoreClock(redis_url, flaky.host)
        try:
            began = time.monotonic()
            state = fleet.up(options)
            print(f"\nfleet up in {time.monotonic() - began:.1f}s {state.timings}")
            with fleet.client(state.api_url) as api:
                _exercise_fleet(fleet, api, state, flaky, slack, targets, wfm_db, flaky_name, healthy_name, clock)
        finally:
            clock.close()
            report = fleet.down(tmp_path / "fleet", drop_db=True)
        assert report.left == [], "down leaves nothing running"


def _exercise_fleet(fleet: Any, api: Any, state: Any, flaky: Any, slack: Any, targets: Path, wfm_db: Path,
                    flaky_name: str, healthy_name: str, clock: _StoreClock) -> None:
    # The prefect.yaml deployment runs one at a time (concurrency_limit 1, on purpose for its
    # schedule); the rounds need a twin without that limit, on the same pool and pull steps.
    base = api.read_deployment_by_name("integration-health/every-5-minutes")
    burst = fleet.twin_deployment(api, base, "fleet-burst", concurrency_limit=None)
    sync = api.read_deployment_by_name("gated-wfm-sync/hourly")
    mixed = {"targets": [flaky_name, healthy_name], "targets_file": str(targets), "alerts": True}
    healthy_only = {"targets": [healthy_name], "targets_file": str(targets), "alerts": True}
    runs: dict[Any, str] = {}  # flow run id -> "mixed" | "healthy"
    host_resource = f"cxhealth.breaker.{flaky.host}"
    handshake_failed = f"{flaky_name}: handshake failed (cert_expired)"
    turned_away = f"{flaky_name}: breaker open (cert_expired)"
    began = time.monotonic()
    phases: dict[str, float] = {}
    timeline: list[str] = []  # what the failing host saw, phase by phase (for the assertion messages)
    counted = 0
    poll: list[Callable[[], None]] = []  # what every wait also checks (the held sync, once it exists)
    ended: dict[Any, Any] = {}  # the final state of the other runs a round waited for

    def on_poll() -> None:
        for check in poll:
            check()

    def round_of(phase: str, kinds: list[str], also: tuple[Any, ...] = ()) -> list[Any]:
        """Start these runs at once (spread over the workers) and wait for every one (and *also*) to end."""
        ids = []
        for kind in kinds:
            run = api.create_flow_run_from_deployment(burst, parameters=mixed if kind == "mixed" else healthy_only)
            runs[run.id] = kind
            ids.append(run.id)
        finals = _wait_final(api, ids + list(also), timeout=240, on_poll=on_poll)
        for rid in also:
            ended[rid] = finals[rid]
        phases[phase] = round(time.monotonic() - began, 1)
        for rid, kind in zip(ids, kinds):
            run = finals[rid]
            if kind == "healthy":
                assert _state(run) == "COMPLETED", (phase, _state(run), _message(run))
            elif _state(run) != "COMPLETED":  # a Completed run's message names its healthy targets
                assert healthy_name not in _message(run), ("the healthy target never fails", phase, _message(run))
        return [finals[rid] for rid in ids if runs[rid] == "mixed"]

    def connections(phase: str, expected: int) -> list[Any]:
        """The failing host's connections since the last phase. The lab records one when it ends,
        which is before the check that made it reported its run's end; a moment's grace anyway."""
        nonlocal counted
        fleet.wait_for(lambda: len(flaky.connections()) >= counted + expected, 10, 0.1,
                       f"{expected} connection(s) to the failing host in {phase}")
        new = flaky.connections()[counted:]
        counted += len(new)
        timeline.append(f"{phase}: {[(c.outcome, c.healthy) for c in new]}")
        return new

    def transitions(expected: list[str]) -> list[Any]:
        """The breaker's transitions on the server, once as many as expected arrived (then exactly those)."""
        def found() -> list[Any] | None:
            events = fleet.events(api, ["cxhealth.breaker.opened", "cxhealth.breaker.closed"],
                                  resource_prefix=host_resource)
            return events if len(events) >= len(expected) else None
        events = fleet.wait_for(found, 30, 0.3, f"the breaker's transitions {expected} on the server")
        assert [e.payload["transition"] for e in events] == expected, \
            [(e.occurred.isoformat(), e.payload) for e in events]
        return events

    def paused() -> bool:
        return api.read_work_queue_by_name("wfm-sync", work_pool_name=state.pool).is_paused

    # -- 1. trip: two failing checks (the threshold), one after the other (the first beside a healthy-only run)
    [first] = round_of("trip 1", ["mixed", "healthy"])
    assert _state(first) == "FAILED" and handshake_failed in _message(first), _message(first)
    # its verified handshake failed, then its chain capture (the breaker is still closed)
    assert [c.outcome for c in connections("trip 1", 2)] == ["handshake_failed", "handshake_only"], timeline
    assert clock.status().state.value == "closed" and clock.status().failures_in_window == 1
    [second] = round_of("trip 2", ["mixed"])
    assert _state(second) == "FAILED" and handshake_failed in _message(second), _message(second)
    # its failure opened the breaker, which stops its chain capture (contract §3)
    assert [c.outcome for c in connections("trip 2", 1)] == ["handshake_failed"], timeline
    opened = clock.status()
    assert opened.state.value == "open" and opened.trips == 1, opened
    [event] = transitions(["opened"])
    assert int(_epoch(event.payload["reopen_at"])) == math.ceil(opened.reopen_at.timestamp()), \
        "the event names the store's reopen time (to the second, rounded up)"
    fleet.wait_for(paused, 30, 0.2, "the Automation to pause the wfm-sync queue")

    # A sync run while the queue is paused: it must not start until the breaker closes.
    sync_run = api.create_flow_run_from_deployment(sync.id, parameters={
        "targets": [healthy_name], "targets_file": str(targets), "db_path": str(wfm_db)})
    paused_observations = 0

    def sync_must_wait() -> None:
        nonlocal paused_observations
        # The run's state first, then the queue: still paused afterwards means it was paused
        # before too (only a close resumes it, and nothing reopens it after the recovery).
        observed = _state(api.read_flow_run(sync_run.id))
        if paused():
            assert observed == "SCHEDULED", f"the gated sync left Scheduled ({observed}) while its queue was paused"
            paused_observations += 1

    poll.append(sync_must_wait)

    # -- 2. open: every run is turned away, and nobody connects to the host
    for run in round_of("open", ["mixed"] * OPEN_ROUND + ["healthy"]):
        assert _state(run) == "FAILED" and turned_away in _message(run) and handshake_failed not in _message(run), \
            _message(run)
    assert connections("open", 0) == [], timeline
    assert clock.status().reopen_at == opened.reopen_at, "the same open: nothing expired by itself"

    # -- 3. half-open, still failing: of several runs at once, exactly one probes (one connection)
    clock.end_open()
    probing = round_of("half-open (failing)", ["mixed"] * PROBE_ROUND)
    assert sorted(handshake_failed in _message(r) for r in probing) == [False] * (PROBE_ROUND - 1) + [True], \
        [_message(r)[:160] for r in probing]
    assert all(_state(r) == "FAILED" for r in probing)
    assert sum(turned_away in _message(r) for r in probing) == PROBE_ROUND - 1, [_message(r)[:160] for r in probing]
    # the probe's failure reopens the breaker at once, which stops its chain capture
    assert [c.outcome for c in connections("half-open (failing)", 1)] == ["handshake_failed"], timeline
    reopened = clock.status()
    assert reopened.state.value == "open" and reopened.trips == 2 and reopened.reopen_at > opened.reopen_at, reopened
    event = transitions(["opened", "reopened"])[1]
    assert int(_epoch(event.payload["reopen_at"])) == math.ceil(reopened.reopen_at.timestamp())

    # -- 4. open again: every run turned away, no connection
    for run in round_of("reopened", ["mixed"] * 2):
        assert _state(run) == "FAILED" and turned_away in _message(run) and handshake_failed not in _message(run), \
            _message(run)
    assert connections("reopened", 0) == [], timeline
    assert clock.status().reopen_at == reopened.reopen_at

    # -- 5. recovery: the host presents a valid certificate; the next half-open's probe closes it
    flaky.recover()
    clock.end_open()
    [probe] = round_of("half-open (recovered)", ["mixed"])
    assert _state(probe) == "COMPLETED", _message(probe)
    recovered = connections("half-open (recovered)", 1)
    assert all(c.healthy and c.outcome != "handshake_failed" for c in recovered), timeline
    assert clock.status().state.value == "closed"
    transitions(["opened", "reopened", "closed"])
    fleet.wait_for(lambda: not paused(), 30, 0.2, "the Automation to resume the wfm-sync queue")
    poll.clear()
    # closed: a run checks the recovered target again, meanwhile the resumed sync runs
    [after] = round_of("closed", ["mixed"], also=(sync_run.id,))
    sync_final = ended[sync_run.id]
    assert _state(after) == "COMPLETED", _message(after)
    assert all(c.healthy for c in connections("closed", 1)), timeline
    transitions(["opened", "reopened", "closed"])

    # ---- what the runs said, in all -------------------------------------------------------------
    all_runs = {r.id: r for r in fleet.flow_runs(api, list(runs))}
    assert len(all_runs) == len(runs)
    assert all(_state(r) in ("COMPLETED", "FAILED") for r in all_runs.values()), \
        [(_state(r), _message(r)[:120]) for r in all_runs.values()]
    checked = [r for r in all_runs.values() if handshake_failed in _message(r)]
    rejected = [r for r in all_runs.values() if turned_away in _message(r)]
    assert len(checked) == 3, "the two tripping checks and the failing probe: nothing else reached the host"
    assert len(rejected) == OPEN_ROUND + (PROBE_ROUND - 1) + 2, "every run made while open was turned away"

    # ---- spread over the workers -------------------------------------------------------------
    per_worker = _submissions(state)
    assert sum(1 for n in per_worker.values() if n) >= 2, per_worker

    # ---- the WFM sync: held while paused, ran once resumed ----------------------------------------
    assert paused_observations >= 3, "the sync run was observed Scheduled while the queue was paused"
    assert _state(sync_final) == "COMPLETED", _message(sync_final)
    with sqlite3.connect(wfm_db) as db:
        assert db.execute("select count(*) from schedules").fetchone()[0] == 6

    # ---- Slack: one root per incident, one resolve ---------------------------------------------------
    def roots_resolved() -> list[dict] | None:
        roots = slack.top_level("C0FLEET")
        resolves = [m for r in roots for m in slack.replies(r["ts"]) if m["text"].startswith("[resolved]")]
        return roots if resolves else None

    roots = fleet.wait_for(roots_resolved, 30, 0.2, "the resolve in Slack")
    # One incident (the target, cert_expired): one root; the breaker's opening is in its thread.
    assert len(roots) == 1 and flaky_name in roots[0]["text"], [r["text"][:80] for r in roots]
    replies = slack.replies(roots[0]["ts"])
    assert sum(m["text"].startswith("[resolved]") for m in replies) == 1, [m["text"][:80] for m in replies]
    assert any("breaker opened" in m["text"].lower() for m in replies), [m["text"][:80] for m in replies]
    print(f"\nfleet e2e: {len(runs)} integration-health runs ({Counter(runs.values())}), per worker {dict(per_worker)}; "
          f"{len(rejected)} turned away by the open breaker, {len(checked)} failing checks reached the host; "
          f"{paused_observations} observations of the paused sync; Slack roots {len(roots)}; phases {phases}; "
          f"host saw {timeline}")
