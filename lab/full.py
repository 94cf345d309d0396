"""``cxhealth lab --full``: the whole lab, kept up, for a person to deploy against.

Starts the TLS failure scenarios, the fake Genesys/NICE platform and the fake
Slack, writes into one directory

* ``targets.toml`` — four targets (a healthy Genesys, a healthy NICE, the guide's
  TLS 1.2 trap, a partner behind a TLS-inspecting proxy), the fake Slack and a
  breaker store in that directory;
* ``lab.env`` — the lab's (fake) secrets as ``NAME=value`` lines, for the shell
  that runs ``cxhealth run`` or the Prefect worker (``set -a; . lab.env; set +a``);

and runs until Ctrl-C / SIGTERM (or ``--for SECONDS``). The secrets are lab-only
values; they are written to ``lab.env`` (mode 0600) and never printed.

``cxhealth demo`` uses :func:`write_lab_targets` for the same four targets.
No Prefect import on this path.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
from pathlib import Path
from typing import Any, TextIO

LAB_SECRETS = {  # lab-only credentials for the partner target and the fake Slack
    "DEMO_PARTNER_SECRET": "demo-partner-secret-not-real",
    "DEMO_SLACK_BOT_TOKEN": "xoxb-demo-not-a-real-token",
}
SLACK_CHANNEL = ("C0CXINTEG", "cx-integrations")

TARGET_NOTES = {
    "genesys-prod": "a healthy Genesys-style target (client credentials)",
    "nice-prod": "a healthy NICE-style target (discovery + password grant)",
    "genesys-tls12-client": "the guide's trap: a client capped at TLS 1.2, a TLS 1.3-only API cluster",
    "partner-behind-proxy": "a target whose traffic a TLS-inspecting proxy (Zscaler) re-signs",
}


def _toml(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers and lists are valid TOML


def write_lab_targets(path: Path, state: Path, lab: Any, fake: Any, slack: Any) -> Path:
    """The four lab targets, the fake Slack and a breaker store under *state*, as a targets.toml."""
    from cxhealth.lab.fake_platform import GENESYS_TLS13

    lines = ["# Written by cxhealth's lab: every host below is a local lab server.", ""]

    def target(values: dict[str, Any]) -> None:
        lines.append("[[target]]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
        lines.append("")

    genesys = fake.target_values("genesys", name="genesys-prod")
    nice = fake.target_values("nice", name="nice-prod")
    trap = fake.target_values("genesys", name="genesys-tls12-client", tls_max="1.2",
                              endpoints=[fake.url(GENESYS_TLS13, "/api/v2/flows?pageSize=1")])
    intercepted = lab.scenarios["proxy_interception"]
    partner = {"name": "partner-behind-proxy", "platform": "generic", "client_id": "demo-partner",
               "client_secret_env": "DEMO_PARTNER_SECRET",
               "token_url": f"https://{intercepted.host}:{intercepted.port}/oauth/token",
               "api_base": f"https://{intercepted.host}:{intercepted.port}", "endpoints": ["/v1/health"],
               "resolve": [f"{intercepted.host}:{intercepted.port}:127.0.0.1"],
               "ca_bundle": str(lab.client_store), "timeout": 3.0}
    for values in (genesys, nice, trap, partner):
        target(values)
    lines += ["[slack]", 'bot_token_env = "DEMO_SLACK_BOT_TOKEN"', f'channel = "{SLACK_CHANNEL[0]}"',
              f"api_base = {_toml(slack.api_base)}", "",
              "[breaker]", "threshold = 2", "window_s = 60", "open_s = 30", "max_open_s = 300",
              f"store = {_toml('sqlite:///' + str(state / 'cxhealth.sqlite3'))}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def lab_env(fake: Any) -> dict[str, str]:
    """Every secret the lab's targets and Slack name, by variable name."""
    return {**fake.env(), **LAB_SECRETS}


def write_env(path: Path, env: dict[str, str]) -> Path:
    """``NAME=value`` lines (shell-quoted), readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# cxhealth lab secrets (lab-only values): set -a; . THIS_FILE; set +a\n")
        for name, value in sorted(env.items()):
            f.write(f"{name}={shlex.quote(value)}\n")
    return path


def run_full(directory: str | None, duration: float | None, stop: threading.Event, out: TextIO) -> int:
    """Start everything, write the files, print how to use them, wait for *stop* (or *duration*)."""
    from cxhealth.lab.fake_platform import FakePlatform
    from cxhealth.lab.fake_slack import FakeSlack
    from cxhealth.lab.tls_lab import TLSLab

    state = Path(directory or ".cxhealth-lab").resolve()
    state.mkdir(parents=True, exist_ok=True)
    with TLSLab() as lab, FakePlatform(workdir=state / "platform") as fake, \
            FakeSlack(token=LAB_SECRETS["DEMO_SLACK_BOT_TOKEN"], channels=dict([SLACK_CHANNEL])) as slack:
        targets = write_lab_targets(state / "targets.toml", state, lab, fake, slack)
        env_file = write_env(state / "lab.env", lab_env(fake))
        q = shlex.quote
        print(f"cxhealth lab --full: {len(lab.scenarios)} TLS scenarios, a fake Genesys/NICE platform and a fake "
              f"Slack ({slack.api_base}) on 127.0.0.1", file=out)
        print(f"  targets: {targets}", file=out)
        for name, note in TARGET_NOTES.items():
            print(f"    {name:<22} {note}", file=out)
        print(f"  secrets: {env_file} (lab-only values; load it in every shell that runs checks or a worker)", file=out)
        print("", file=out)
        print("  in another shell:", file=out)
        print(f"    set -a; . {q(str(env_file))}; set +a", file=out)
        print(f"    cxhealth run --targets {q(str(targets))}", file=out)
        print("  against a Prefect server (deployments/README.md), from the repository root:", file=out)
        print(f"    prefect deployment run integration-health/every-5-minutes --param targets_file={q(str(targets))}",
              file=out)
        print("    (start the worker in a shell that loaded the secrets file)", file=out)
        until = f"for {duration:g} s" if duration is not None else "until Ctrl-C"
        print(f"cxhealth lab --full: running {until}", file=out, flush=True)
        stop.wait(duration)
    print("cxhealth lab --full: stopped", file=out, flush=True)
    return 0
