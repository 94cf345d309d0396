"""`cxhealth run` in-process over many lab targets spread over a few hosts (issue 16).

What it shows: whether every target comes out healthy (no handshake_timeout from a
burst the lab drops), how long the run takes, and the most connections in flight per
host. Usage::

    .venv/bin/python bench/bench_run_scale.py --targets 1000 --hosts 10

Prints one JSON line: targets, hosts, seconds, targets/s, healthy, causes, exit code.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_targets(path: Path, fake, n: int, hosts: int, state: Path) -> None:
    from cxhealth.lab.fake_platform import partner_api_host

    c = fake.credentials
    lines = ["[defaults]", f"ca_bundle = {json.dumps(str(fake.ca_bundle))}",
             f"resolve = {json.dumps(fake.resolve)}", "timeout = 5", ""]
    for i in range(n):
        host = partner_api_host(i % hosts + 1)
        lines += ["[[target]]", f'name = "fleet-{i:05d}"', 'platform = "generic"',
                  f"client_id = {json.dumps(c.partner_client_id)}", 'client_secret_env = "LAB_PARTNER_SECRET"',
                  f"token_url = {json.dumps(fake.url(host, '/oauth/token'))}",
                  f"api_base = {json.dumps(fake.url(host))}", 'endpoints = ["/v1/health"]', ""]
    lines += ["[breaker]", f"store = {json.dumps('sqlite:///' + str(state / 'breaker.sqlite3'))}", "",
              "[history]", f"store = {json.dumps('sqlite:///' + str(state / 'history.sqlite3'))}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=10)
    args = parser.parse_args()
    from cxhealth.lab.fake_platform import ENV_NAMES, FakePlatform

    with FakePlatform(partner_hosts=args.hosts) as fake, tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        path = state / "targets.toml"
        write_targets(path, fake, args.targets, args.hosts, state)
        env = {**os.environ, ENV_NAMES["generic"]: fake.credentials.partner_client_secret,
               "LAB_PARTNER_SECRET": fake.credentials.partner_client_secret}
        cli = [sys.executable, "-m", "cxhealth", "run", "--targets", str(path), "--json", "--no-alerts"]
        start = time.perf_counter()
        proc = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=1800)
        seconds = time.perf_counter() - start
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            print(json.dumps({"error": proc.stderr.strip()[-500:], "exit": proc.returncode}))
            return 1
        causes = collections.Counter(
            (t.get("handshake") or {}).get("cause") if t.get("stage") == "handshake" else (t.get("stage") or "ok")
            for t in report["targets"])
        healthy = sum(1 for t in report["targets"] if t["healthy"])
        errors = collections.Counter(
            str((t.get("oauth") or {}).get("error") or (t.get("handshake") or {}).get("cause") or t.get("summary"))[:120]
            for t in report["targets"] if not t["healthy"])
        print(json.dumps({"targets": args.targets, "hosts": args.hosts, "seconds": round(seconds, 2),
                          "targets_per_s": round(args.targets / seconds, 1), "healthy": healthy,
                          "causes": dict(causes), "errors": dict(errors.most_common(5)), "exit": proc.returncode,
                          "handshake_failures_at_lab": len(fake.handshake_failures)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
