"""``cxhealth demo``: the whole product on the embedded defaults, for a new user.

Starts the lab (TLS failure scenarios, a fake Genesys/NICE platform, a fake
Slack), runs the integration-health flow three times on Prefect's embedded
SQLite, gates a WFM sync on it, and shows what each user of the tool sees.
All state lives under one directory (default ``./.cxhealth-demo``); nothing
keeps running afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from cxhealth.lab.full import LAB_SECRETS as DEMO_SECRETS  # lab-only credentials, set in this process's env
from cxhealth.lab.full import write_lab_targets as write_targets


def _say(text: str = "") -> None:
    print(text, flush=True)


def _heading(text: str) -> None:
    _say()
    _say(f"== {text} " + "=" * max(0, 74 - len(text)))


def _show_run(label: str, report: dict[str, Any], connections_before: int, lab_host: Any) -> None:
    from cxhealth.flows.report import render_table

    _heading(label)
    _say(render_table(report))
    for t in report["targets"]:
        for tr in t.get("transitions") or []:
            _say(f"  breaker {tr['host']}: {tr['kind'].upper()} (reopens {tr.get('reopen_at')})")
        if t.get("stage") == "breaker_open":
            _say(f"  {t['name']}: failed fast — {t['summary']}")
    _say(f"  connections that reached the intercepted host in this run: {int(lab_host.connections) - connections_before}")


def run_demo(args: Any) -> int:
    state = Path(args.dir or ".cxhealth-demo").resolve()
    if state.exists() and not args.keep:
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(state / "prefect")
    os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "CRITICAL")  # no server shutdown noise
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # slow or busy machines
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.pop("PREFECT_API_URL", None)  # the embedded server on SQLite, whatever the shell has

    from cxhealth.lab.fake_platform import FakePlatform
    from cxhealth.lab.fake_slack import FakeSlack
    from cxhealth.lab.tls_lab import TLSLab

    _say(f"cxhealth demo — state directory: {state}")
    _say("starting the lab: TLS failure scenarios, a fake Genesys/NICE platform, a fake Slack ...")
    with TLSLab() as lab, FakePlatform(workdir=state / "platform") as fake, \
            FakeSlack(token=DEMO_SECRETS["DEMO_SLACK_BOT_TOKEN"], channels={"C0CXINTEG": "cx-integrations"}) as slack:
        os.environ.update(fake.env())
        os.environ.update(DEMO_SECRETS)
        targets = state / "targets.toml"
        write_targets(targets, state, lab, fake, slack)
        with targets.open("a", encoding="utf-8") as fh:  # the history stays in the state directory too
            fh.write(f'\n[history]\nstore = "sqlite:///{state / "history.sqlite3"}"\n')
        _say(f"targets: {targets}")
        _say("  genesys-prod          a healthy Genesys-style target (client credentials)")
        _say("  nice-prod             a healthy NICE-style target (discovery + password grant)")
        _say("  genesys-tls12-client  the guide's trap: a client capped at TLS 1.2, a TLS 1.3-only API cluster")
        _say("  partner-behind-proxy  a target whose traffic a TLS-inspecting proxy (Zscaler) re-signs")

        from cxhealth.flows.integration_health import run_flow_sync

        _quiet_prefect_console()

        host = lab.scenarios["proxy_interception"]
        _say("starting Prefect's embedded server on SQLite (the first run migrates it: ~10-20 s) ...")
        reports = []
        for i, label in enumerate(("run 1: first check (the proxy's handshake fails: failure 1 of 2)",
                                   "run 2: second check (failure 2 of 2 within 60 s: the breaker OPENS)",
                                   "run 3: third check (the breaker is open: it fails fast, no connection)"), 1):
            before = int(host.connections)
            start = time.perf_counter()
            report = run_flow_sync(str(targets), None)
            reports.append(report)
            _show_run(f"{label} — {time.perf_counter() - start:.1f} s", report, before, host)

        trap = next(t for t in reports[0]["targets"] if t["name"] == "genesys-tls12-client")
        _heading("the TLS 1.2-only trap, per connection")
        _say(f"  token request:  {trap['oauth']['protocol']} {trap['oauth']['cipher']} -> HTTP {trap['oauth']['status']}")
        for e in trap["endpoints"]:
            _say(f"  {e['path']}: cause {e['cause']}")
            for step in (e.get("remediation") or [])[:1]:
                _say(f"    fix: {step}")
        proxy = next(t for t in reports[0]["targets"] if t["name"] == "partner-behind-proxy")
        _heading("the intercepted target's diagnosis")
        _say(f"  {proxy['handshake']['summary']}")
        for step in proxy["handshake"]["remediation"][:2]:
            _say(f"    fix: {step}")

        _proxy_step(lab)
        _history_step(state)

        _heading("the gate in front of a WFM sync")
        from cxhealth.flows.wfm_sync import gated_wfm_sync

        db = state / "wfm.sqlite3"
        for names in (["genesys-prod"], ["partner-behind-proxy"]):
            sync_state = asyncio.run(gated_wfm_sync(targets=names, targets_file=str(targets), db_path=str(db),
                                                    return_state=True))
            if sync_state.is_completed():
                count = sync_state.result()
                if asyncio.iscoroutine(count):
                    count = asyncio.run(count)
                _say(f"  gated-wfm-sync {names}: gate passed, {count} schedule rows written to {db}")
            else:
                _say(f"  gated-wfm-sync {names}: {sync_state.name} — {sync_state.message}")
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT count(*) FROM schedules").fetchone()[0] if _has_table(conn) else 0
        _say(f"  rows in {db.name}: {rows} (only the healthy target's sync wrote)")

        _heading("what the alert channel received (fake Slack)")
        for message in slack.top_level():
            _say(f"  [{message.get('channel')}] {(message.get('text') or '')[:150]}")
            for reply in slack.replies(message.get("ts")):
                _say(f"      thread: {(reply.get('text') or '')[:140]}")
        _say(f"  {len(slack.top_level())} top-level message(s), {len(slack.api_calls())} Slack API call(s) in all")
        payload = next((r.params() for r in slack.api_calls("chat.postMessage")), None)
        if payload is not None:
            path = state / "slack-payload-example.json"
            path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
            _say(f"  the first payload (Block Kit) is in {path}")

    _heading("where it all lives")
    _say(f"  flow runs, artifacts and events: Prefect's SQLite under {state / 'prefect'}")
    _say(f"    browse them: PREFECT_HOME={state / 'prefect'} .venv/bin/prefect server start   (then http://127.0.0.1:4200)")
    _say(f"  breaker and alert state: {state / 'cxhealth.sqlite3'}")
    _say("  try one scenario yourself: .venv/bin/cxhealth lab   (prints a cxhealth diagnose command per scenario)")
    _say("demo finished; the lab is stopped and nothing is left running.")
    sys.stdout.flush()
    return 0


def _proxy_step(lab: Any) -> None:
    """Three lab endpoints through a real squid (when installed): tunnelled, 407, re-signed."""
    from cxhealth.lab.squid import SquidLab, squid_binary

    _heading("through the corporate egress proxy (a real squid on loopback)")
    if squid_binary() is None:
        _say("  skipped: squid with ssl_bump (Debian's squid-openssl) is not installed")
        return
    from cxhealth.tasks.tls import DiagnoseOptions, Endpoint, TLSPolicy, diagnose_many
    from cxhealth.tasks.tls.proxy import ProxySettings, parse_proxy_url, route

    healthy, other = lab.scenarios["healthy"], lab.scenarios["warn_tls12_only_policy"]
    with SquidLab(hosts={healthy.host: "127.0.0.1", other.host: "127.0.0.1"}, splice=[healthy.host],
                  upstream_ca_bundle=str(lab.client_store)) as squid:
        cases = [("open tunnel", squid.url("plain"), healthy), ("auth required", squid.url("auth"), healthy),
                 ("TLS inspection", squid.url("bump"), other)]
        endpoints = [route(Endpoint(s.host, s.port), ProxySettings(explicit=parse_proxy_url(url)), None, {})
                     for _, url, s in cases]
        results = asyncio.run(diagnose_many(endpoints, TLSPolicy(ca_bundle=str(lab.client_store)),
                                            DiagnoseOptions()))
        for (label, url, _), d in zip(cases, results):
            _say(f"  {label:15} via {url}: {d.cause.value} — {d.summary[:160]}")
    _say("  the same through your proxy: cxhealth diagnose HOST --proxy http://[user@]host:port "
         "[--proxy-password-env VAR]; cxhealth proxy-audit --platform genesys --region REGION")


def _history_step(state: Path) -> None:
    """What the checks remember (contract §4): a drift named when it happens, an intermittent failure named."""
    from cxhealth.lab.changing import ChangingTLSServer
    from cxhealth.tasks.health import check_targets
    from cxhealth.tasks.history import record_reports
    from cxhealth.tasks.runtime import breaker_for
    from cxhealth.tasks.targets import load_targets

    _heading("what the checks remember: drift and intermittent failures")
    with ChangingTLSServer() as gateway, ChangingTLSServer(addresses=("127.0.0.2", "127.0.0.3")) as pool:
        pool.set_versions("1.2", "1.2", address="127.0.0.2")
        pool.set_versions("1.3", "1.3", address="127.0.0.3")
        path = state / "history-targets.toml"
        # the CA bundles are copied next to the file, so `cxhealth history --targets` works after the demo
        for name, server in (("gateway", gateway), ("pool", pool)):
            shutil.copyfile(server.ca_bundle, state / f"history-{name}-ca.pem")
        tables = [gateway.target_values("gateway", ca_bundle=str(state / "history-gateway-ca.pem")),
                  pool.target_values("pool-tls12-client", tls_max="1.2", ca_bundle=str(state / "history-pool-ca.pem"))]
        lines = [f'[breaker]\nthreshold = 100\nstore = "sqlite:///{state / "history-breaker.sqlite3"}"\n',
                 f'[history]\nstore = "sqlite:///{state / "history.sqlite3"}"\n']
        for t in tables:
            lines += ["[[target]]", *(f"{k} = {json.dumps(v)}" for k, v in t.items()), ""]
        path.write_text("\n".join(lines), encoding="utf-8")
        config = load_targets(path)
        env = {**gateway.env(), **pool.env()}

        def check(label: str) -> None:
            async def go() -> list:
                breaker = breaker_for(config)
                try:
                    return await check_targets(list(config.targets), breaker, env)
                finally:
                    breaker.close()

            docs = [r.to_dict() for r in asyncio.run(go())]
            record_reports(config.history, docs)
            _say(f"  {label}")
            for d in docs:
                verdict = "healthy" if d["healthy"] else f"UNHEALTHY, {d.get('persistence')}: {d['summary'][:240]}"
                _say(f"    {d['name']}: {verdict}")
                for e in d.get("drift") or []:
                    _say(f"      drift {e['code']} on {e['host']}" + (f" ({e['address']})" if e.get("address") else "")
                         + f": {e['from']} -> {e['to']}")

        check("check 1 (a gateway on TLS 1.3; a pool whose two addresses differ):")
        check("check 2 (nothing changed: nothing new is said):")
        gateway.set_versions("1.2", "1.2")
        check("check 3 (the gateway's pool went TLS 1.2-only):")
    _say(f"  read it back: .venv/bin/cxhealth history --targets {path} --since 1d")
    _say(f"  for Prometheus: .venv/bin/cxhealth metrics --targets {path} --listen 127.0.0.1:9466")


def _quiet_prefect_console() -> None:
    """The demo prints its own report; Prefect's console lines (and the expected
    gate failure's traceback) would bury it. Logs still go to the Prefect API."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler
    from prefect.logging.loggers import get_logger

    get_logger()  # make sure Prefect's logging is configured before we adjust it
    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL)


def _has_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schedules'").fetchone() is not None
