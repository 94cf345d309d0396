"""Forty real processes against one host's breaker, on SQLite and on Redis.

Each test starts 40 worker processes (forkserver) that open their own breaker
on the shared store and run the same phases in lockstep: a barrier releases all
of them at once, each puts what it was answered on a multiprocessing queue, and
the parent counts. Time moves only through a shared offset (SQLite: the
injected clock; Redis: the store's test-only offset on the server clock).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import ssl
import threading
import time
import traceback
import uuid
from collections import Counter

import pytest

from cxhealth.tasks.breaker import BreakerConfig, open_breaker

from .test_breaker_stores import REDIS_URL, delete_redis_prefix, require_redis

N_PROCESSES = 40
T0 = 1_700_000_000.0
CONFIG = BreakerConfig(threshold=2, window_s=60, open_s=30, max_open_s=300, lease_s=60)
CAUSE = {"cause": "connection_reset", "summary": "the peer closed the connection"}
TIMEOUT_S = 60

pytestmark = pytest.mark.slow


# -- the worker (runs in the child processes) -----------------------------------------


# What these tests check is the coordination of 40 processes through one store, not the
# store's timeouts (tests/test_faults_store.py breaks the store on purpose). On a loaded
# 2-core machine 40 processes handshaking at once can keep one of them off the CPU for
# longer than the product's short Redis timeout (1 s) or SQLite busy wait (5 s), and it
# would then fall back to its local store: generous timeouts keep every answer the store's.
STORE_TIMEOUT_S = 20.0


def _open_worker_breaker(store: dict, offset):
    # The crowd's local fallback file (shared by its 40 processes, as on one machine) is the test's:
    # the workers come from the forkserver, whose environment predates conftest's CXHEALTH_FALLBACK_DIR.
    if store["kind"] == "sqlite":
        return open_breaker(store["url"], CONFIG, clock=lambda: T0 + offset.value,
                            busy_timeout_s=STORE_TIMEOUT_S, fallback=store["fallback"])
    return open_breaker(store["url"], CONFIG, key_prefix=store["prefix"], fallback=store["fallback"],
                        redis_time_offset=lambda: offset.value, timeout_s=STORE_TIMEOUT_S)


def _handshake_fails(host: str, port: int) -> bool:
    """A real, verifying TLS handshake to the lab server; True when it fails.

    PROTOCOL_TLS_CLIENT verifies the chain and the host name by default; no CA
    is loaded because no handshake to this server may succeed anyway (and
    loading the system store in 40 processes only costs time).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return False
    except (ssl.SSLError, OSError):
        return True


def _worker(store: dict, offset, command, barrier, results) -> None:
    pid = os.getpid()
    try:
        breaker = _open_worker_breaker(store, offset)
        decisions = {}
        while True:
            barrier.wait(TIMEOUT_S)
            phase, host, port = command.value.decode().split("|")
            if phase == "stop":
                break
            decision, transition = decisions.get(host), None
            if phase == "fail":  # every admitted caller reports a handshake failure
                decision = breaker.admit(host)
                if decision.admitted:
                    transition = breaker.record_failure(host, CAUSE, decision=decision)
            elif phase == "admit":
                decision = breaker.admit(host)
            elif phase == "report_success":  # only a probe's report can matter
                transition = breaker.record_success(host, decision=decision)
            elif phase == "check":  # the caller code of the integration
                decision = breaker.admit(host)
                if decision.admitted and _handshake_fails(host, int(port)):
                    transition = breaker.record_failure(host, CAUSE, decision=decision)
            decisions[host] = decision
            results.put({
                "phase": phase, "pid": pid,
                "admitted": decision.admitted, "is_probe": decision.is_probe,
                "state": decision.state.value, "fallback": decision.fallback,
                "transition": transition.kind.value if transition else None,
            })
        breaker.close()
    except BaseException:  # report, so that the parent fails with the reason
        results.put({"phase": "error", "pid": pid, "error": traceback.format_exc()})
        barrier.abort()


# -- the harness (runs in the test process) ---------------------------------------------


class Crowd:
    """N worker processes released phase by phase; collects what each was answered.

    One crowd serves every test of a store (starting 40 processes is the slow
    part); each test uses its own host.
    """

    def __init__(self, store: dict) -> None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        self.offset = ctx.Value("d", 0.0)
        self.command = ctx.Array("c", 256)
        self.results = ctx.Queue()
        self.barrier = ctx.Barrier(N_PROCESSES + 1)
        self.processes = [
            ctx.Process(
                target=_worker,
                args=(store, self.offset, self.command, self.barrier, self.results),
                daemon=True,
            )
            for _ in range(N_PROCESSES)
        ]
        for p in self.processes:
            p.start()

    def run(self, phase: str, host: str, port: int = 0) -> list[dict]:
        self.command.value = f"{phase}|{host}|{port}".encode()
        self.barrier.wait(TIMEOUT_S)
        answers = [self.results.get(timeout=TIMEOUT_S) for _ in range(N_PROCESSES)]
        errors = [a["error"] for a in answers if a["phase"] == "error"]
        assert not errors, errors[0]
        assert {a["phase"] for a in answers} == {phase}
        assert len({a["pid"] for a in answers}) == N_PROCESSES
        fallbacks = [a["fallback"] for a in answers if a["fallback"]]
        assert not fallbacks, f"{len(fallbacks)} of {N_PROCESSES} fell back: {sorted(set(fallbacks))}"
        return answers

    def advance(self, seconds: float) -> None:
        with self.offset.get_lock():
            self.offset.value += seconds

    def close(self) -> None:
        try:
            self.command.value = b"stop||0"
            self.barrier.wait(TIMEOUT_S)
        except Exception:  # a broken barrier: the workers are gone or stuck
            pass
        for p in self.processes:
            p.join(timeout=TIMEOUT_S)
        for p in self.processes:
            if p.is_alive():
                p.terminate()
                p.join(5)


def transitions(answers: list[dict]) -> Counter:
    return Counter(a["transition"] for a in answers if a["transition"])


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.services)])
def crowd(request, tmp_path_factory):
    """40 processes sharing one store of each kind."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("breaker") / "breaker.sqlite3"
        store = {"kind": "sqlite", "url": f"sqlite:///{path}"}
    else:
        require_redis()
        store = {"kind": "redis", "url": REDIS_URL, "prefix": f"cxhealth-test:{uuid.uuid4().hex}"}
    store["fallback"] = str(tmp_path_factory.mktemp("crowd-fallback") / "fallback.sqlite3")
    crowd = Crowd(store)
    yield crowd
    crowd.close()
    if store["kind"] == "redis":
        delete_redis_prefix(store["prefix"])
    assert all(p.exitcode == 0 for p in crowd.processes), [p.exitcode for p in crowd.processes]


class CountingFailingServer:
    """A 127.0.0.1 TCP server that stamps the time of each connection and closes it at once.

    A verifying TLS client sees the handshake fail (EOF/reset, no ServerHello).
    Shared with tests/test_faults_breaker.py.
    """

    def __init__(self) -> None:
        self.accepted: list[float] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted.append(time.time())
            conn.close()

    def take(self) -> list[float]:
        """The times of the connections since the last take, and forget them."""
        with self._lock:
            out, self.accepted = self.accepted, []
        return out

    def take_count(self) -> int:
        return len(self.take())

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)


# -- the tests -----------------------------------------------------------------------------


def test_forty_processes_one_opened_one_probe_one_closed(crowd):
    host = f"race-{uuid.uuid4().hex[:8]}.test"
    # When 40 processes fail against one host at once
    failed = crowd.run("fail", host)
    # Then exactly one of them is handed the "opened" transition
    assert transitions(failed) == Counter({"opened": 1})
    assert sum(a["admitted"] for a in failed) >= 2

    # While open, nobody is admitted
    assert sum(a["admitted"] for a in crowd.run("admit", host)) == 0

    # After the open time, exactly one of 40 concurrent callers probes
    crowd.advance(CONFIG.open_s + 1)
    after = crowd.run("admit", host)
    assert sum(a["admitted"] for a in after) == 1
    assert sum(a["is_probe"] for a in after) == 1
    assert Counter(a["state"] for a in after) == Counter({"half_open": N_PROCESSES})

    # The probe succeeds: exactly one "closed"
    reported = crowd.run("report_success", host)
    assert transitions(reported) == Counter({"closed": 1})

    # And everyone is admitted again
    closed = crowd.run("admit", host)
    assert all(a["admitted"] and a["state"] == "closed" for a in closed)


def test_an_open_breaker_keeps_every_process_off_the_failing_host(crowd):
    host = f"lab-{uuid.uuid4().hex[:8]}.test"
    server = CountingFailingServer()
    try:
        # Given 40 callers checking a host whose handshake fails: it opens, once
        first = crowd.run("check", host, server.port)
        assert transitions(first) == Counter({"opened": 1})
        assert server.take_count() == sum(a["admitted"] for a in first)

        # While open: no caller opens a connection
        during = crowd.run("check", host, server.port)
        assert sum(a["admitted"] for a in during) == 0
        assert server.take_count() == 0

        # After the open time: a single connection, the probe's, however many callers arrive
        crowd.advance(CONFIG.open_s + 1)
        after = crowd.run("check", host, server.port)
        assert sum(a["admitted"] for a in after) == 1
        assert sum(a["is_probe"] for a in after) == 1
        assert server.take_count() == 1
        assert transitions(after) == Counter({"reopened": 1})

        # The probe failed: open for the next backoff (60 s), so 31 s later still nothing
        crowd.advance(CONFIG.open_s + 1)
        assert sum(a["admitted"] for a in crowd.run("check", host, server.port)) == 0
        assert server.take_count() == 0
    finally:
        server.close()
