"""The breaker's timing under faults: a cold start of 20 processes, early failures, leases.

Issue 14, contract §3: a check let through while the breaker was closed starts no
new connection after the store recorded it open (its diagnosis stops its extra
probes); while no success is recorded, no more checks are in flight than failures
are still allowed, so 20 processes starting at once reach a failing host no more
often than the same 20 checks one after another; a probe's lease covers the
worst case of its check.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from cxhealth.tasks.breaker import BreakerConfig, open_breaker

from .test_breaker_concurrency import CountingFailingServer

N_PROCESSES = 20


def _targets(tmp_path, server, name: str) -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join([
        "[[target]]", 'name = "failing"', 'platform = "generic"', 'client_id = "c"',
        'client_secret_env = "COLD_SECRET"', "timeout = 2",
        f'token_url = "https://failing.cold.test:{server.port}/oauth/token"',
        f'api_base = "https://failing.cold.test:{server.port}"',
        f'resolve = ["failing.cold.test:{server.port}:127.0.0.1"]',
        "", "[breaker]", f'store = "sqlite:///{tmp_path}/{name}.sqlite3"', ""]))
    return str(path)


_DRIVER = textwrap.dedent("""
    import json, os, sys, time
    from cxhealth.cli.main import main          # imported before the start signal
    import cxhealth.tasks.health, cxhealth.tasks.tls.engine  # noqa: F401
    ready, gate, targets = sys.argv[1], sys.argv[2], sys.argv[3]
    open(ready, "w").close()
    while not os.path.exists(gate):
        time.sleep(0.005)
    sys.exit(main(["run", "--targets", targets, "--json", "--no-alerts"]))
""")


@pytest.mark.slow
def test_a_cold_start_of_20_processes_reaches_a_failing_host_no_more_than_sequential_checks(tmp_path,
                                                                                            monkeypatch) -> None:
    server = CountingFailingServer()
    env = {**os.environ, "COLD_SECRET": "cold-secret-canary"}
    try:
        # Sequential: the same 20 checks one after another (one process, one store)
        from cxhealth.cli.run import check_all, load_run_config

        monkeypatch.setenv("COLD_SECRET", "cold-secret-canary")
        config, targets = load_run_config(_targets(tmp_path, server, "sequential"))
        sequential_reports = []
        for _ in range(N_PROCESSES):
            sequential_reports += asyncio.run(check_all(config, targets))
        sequential = len(server.take())
        sequential_checks = sum(1 for r in sequential_reports if r["stage"] == "handshake")
        assert sequential_checks == 2 and sequential > 0

        # Concurrent: 20 processes released at once against a fresh store
        path = _targets(tmp_path, server, "cold")
        gate = tmp_path / "go"
        procs, readies = [], []
        for i in range(N_PROCESSES):
            ready = tmp_path / f"ready-{i}"
            readies.append(ready)
            procs.append(subprocess.Popen([sys.executable, "-c", _DRIVER, str(ready), str(gate), path],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True))
        deadline = time.monotonic() + 240
        while not all(r.exists() for r in readies) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(r.exists() for r in readies), "the processes did not start"
        gate.write_text("go")
        outs = [p.communicate(timeout=240) for p in procs]
        accepted = server.take()
    finally:
        server.close()
    reports = [json.loads(out)["targets"][0] for out, _ in outs]
    assert all(p.returncode == 1 for p in procs), [err[-300:] for _, err in outs]
    reached = [r for r in reports if r["stage"] == "handshake"]
    # Then no more checks reached the host than one after another would (the threshold), ...
    assert len(reached) <= sequential_checks
    assert sum(1 for r in reports if r["stage"] == "breaker_open") == N_PROCESSES - len(reached)
    # ... no more connections either, ...
    assert len(accepted) <= sequential, (len(accepted), sequential)
    # ... and none after the store recorded the breaker open
    opened = [t for r in reached for t in r.get("transitions") or () if t["kind"] == "opened"]
    assert len(opened) == 1
    from datetime import datetime

    opened_at = datetime.fromisoformat(opened[0]["at"]).timestamp()
    assert [t for t in accepted if t > opened_at + 1.0] == []  # "at" is to the second
    assert all("cold-secret-canary" not in out + err for out, err in outs)


def test_an_admitted_diagnosis_stops_its_extra_probes_once_the_breaker_is_open(tmp_path, monkeypatch) -> None:
    from cxhealth.cli.run import check_all, load_run_config

    server = CountingFailingServer()
    try:
        monkeypatch.setenv("COLD_SECRET", "cold-secret-canary")
        config, targets = load_run_config(_targets(tmp_path, server, "early"))
        first = asyncio.run(check_all(config, targets))[0]
        full = len(server.take())  # the first failure: the whole diagnosis (several probes)
        second = asyncio.run(check_all(config, targets))[0]
        stopped = len(server.take())
    finally:
        server.close()
    assert first["stage"] == second["stage"] == "handshake"
    assert full >= 2
    # The second failure is recorded as soon as its first handshake failed: it opened the
    # breaker, so the diagnosis made no further connection
    assert stopped == 1, stopped
    assert [t["kind"] for t in second["transitions"]] == ["opened"]
    assert second["handshake"]["evidence"].get("skipped_probes")


def test_a_probes_lease_covers_the_worst_case_of_its_check(tmp_path) -> None:
    from cxhealth.tasks.health import handshake_lease_s
    from cxhealth.tasks.targets import Target

    target = Target(name="slow", platform="generic", client_id="c", client_secret_env="X",
                    token_url="https://slow.test/oauth/token", api_base="https://slow.test", timeout=25)
    lease = handshake_lease_s(target)
    assert lease >= 4 * 25  # the name lookup + the engine's 3 timeouts
    now = [1_700_000_000.0]
    breaker = open_breaker(f"sqlite:///{tmp_path}/b.sqlite3", BreakerConfig(lease_s=60), clock=lambda: now[0])
    for _ in range(2):
        breaker.record_failure("slow.test", {"cause": "x"}, decision=breaker.admit("slow.test"))
    now[0] += 31
    probe = breaker.admit("slow.test", lease)
    assert probe.is_probe
    now[0] += 61  # the old fixed lease would let a second probe in here
    assert not breaker.admit("slow.test", lease).admitted
    now[0] += lease - 61
    assert breaker.admit("slow.test", lease).is_probe  # the prober died: after its lease, another
