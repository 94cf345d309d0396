"""Run from the team project's folder with the wheel's venv: cxhealth and the team's modules side by side.

Exit 0 when every check holds; otherwise one line on stderr naming what failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fail(message: str) -> None:
    print(f"team-project check FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    import cxhealth
    from cxhealth import IntegrationUnhealthy, diagnose, health_gate, integration_health  # noqa: F401 - the public API
    from cxhealth.blocks import CxTarget  # noqa: F401

    import blocks
    import flows.report
    import tasks

    if "site-packages" not in (cxhealth.__file__ or ""):
        fail(f"cxhealth was imported from {cxhealth.__file__}, not from the installed wheel")
    if Path(tasks.__file__).resolve().parent != HERE or tasks.TEAM_MARKER != "team-tasks":
        fail(f"the team's tasks.py lost to another module: {tasks.__file__}")
    if not hasattr(flows.report, "summarize") or not hasattr(blocks, "TeamWarehouse"):
        fail("the team's flows/report.py or blocks/ lost to cxhealth's")

    from cxhealth.lab.fake_platform import GENESYS_TLS13, FakePlatform

    from flows.sync import team_wfm_sync

    with FakePlatform() as fake, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(fake.env())
        path = Path(tmp) / "targets.toml"
        text = fake.targets_toml(platforms=("genesys",))
        # the guide's trap: a client capped at TLS 1.2 against the TLS 1.3-only API cluster
        trap = fake.target_values("genesys", name="genesys-tls12-client", tls_max="1.2",
                                  endpoints=[fake.url(GENESYS_TLS13, "/api/v2/flows?pageSize=1")])
        text += "\n[[target]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in trap.items()) + "\n"
        text += f'\n[breaker]\nstore = {json.dumps("sqlite:///" + str(Path(tmp) / "breaker.sqlite3"))}\n'
        path.write_text(text, encoding="utf-8")

        healthy = asyncio.run(team_wfm_sync(targets=["lab-genesys"], targets_file=str(path)))
        if healthy != "synced 2 rows":
            fail(f"the gated sync against a healthy integration returned {healthy!r}")
        held = asyncio.run(team_wfm_sync(targets=["genesys-tls12-client"], targets_file=str(path)))
        if not held.startswith("held: genesys-tls12-client"):
            fail(f"the gated sync against an unhealthy integration returned {held!r}")

        host = fake.resolve[0].rsplit(":", 1)[0]  # host:port of the login host
        name, port = host.split(":")
        proc = subprocess.run(["cxhealth", "diagnose", f"{name}:{port}", "--resolve", fake.resolve[0],
                               "--ca-bundle", str(fake.ca_bundle), "--json"],
                              cwd=HERE, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or not json.loads(proc.stdout)["ok"]:
            fail(f"cxhealth diagnose from the team project exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    print(f"team-project check passed: healthy sync {healthy!r}; {held!r}; cxhealth diagnose ok from {HERE.name}/")


if __name__ == "__main__":
    main()
