"""`cxhealth lab --full`: the whole lab stays up and writes what a person needs to deploy against it.

Given the full lab running, when a person loads the env file it wrote and checks the targets
file it wrote, then the healthy lab targets are healthy, the trap and the intercepted partner are
not (with their causes), and no secret was printed.
"""

from __future__ import annotations

import asyncio
import io
import shlex
import stat
import threading
import time


def _read_env(path):
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def test_full_lab_writes_a_targets_file_and_secrets_that_work(tmp_path):
    from cxhealth.lab.full import LAB_SECRETS, run_full
    from cxhealth.tasks.health import check_targets
    from cxhealth.tasks.runtime import breaker_for
    from cxhealth.tasks.targets import load_targets

    stop, out = threading.Event(), io.StringIO()
    thread = threading.Thread(target=run_full, args=(str(tmp_path), None, stop, out), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while "running" not in out.getvalue():
            assert thread.is_alive() and time.monotonic() < deadline, out.getvalue()
            time.sleep(0.05)
        env_file, targets = tmp_path / "lab.env", tmp_path / "targets.toml"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        env = _read_env(env_file)
        config = load_targets(targets)
        assert {t.name for t in config.targets} == {"genesys-prod", "nice-prod", "genesys-tls12-client",
                                                      "partner-behind-proxy"}
        breaker = breaker_for(config)
        try:
            reports = {r.name: r for r in asyncio.run(check_targets(list(config.targets), breaker, env))}
        finally:
            breaker.close()
        assert reports["genesys-prod"].healthy and reports["nice-prod"].healthy
        assert reports["genesys-tls12-client"].cause == "protocol_version_mismatch"
        assert reports["partner-behind-proxy"].cause == "proxy_interception"
        printed = out.getvalue()
        assert str(env_file) in printed and str(targets) in printed
        assert all(v not in printed for v in list(env.values()) + list(LAB_SECRETS.values()) if len(v) > 6)
    finally:
        stop.set()
        thread.join(30)
    assert "stopped" in out.getvalue()
