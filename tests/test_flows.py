"""The flows end to end under one Prefect harness, against the lab.

Given targets at the fake platform and the TLS lab, when the integration-health
flow runs, then its final state, artifacts and events are what ops and
Automations rely on; the gate stops a WFM sync before any write; and a canary
secret appears nowhere Prefect keeps data.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

CANARY = "canary-secret-7f3a9c-do-not-leak"


@pytest.fixture(scope="module")
def platform():
    from cxhealth.lab.fake_platform import FakeCredentials, FakePlatform

    creds = FakeCredentials(genesys_client_secret=CANARY)
    with FakePlatform(credentials=creds) as fake:
        yield fake


@pytest.fixture()
def targets_file(tmp_path, platform, tls_lab, monkeypatch):
    from cxhealth.lab.fake_platform import GENESYS_TLS13

    for name, value in platform.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PARTNER_PROXY_SECRET", "partner-secret-not-real")
    text = platform.targets_toml(platforms=("genesys",))
    expired = tls_lab.scenarios["cert_expired"]
    text += "\n".join([
        "", "[[target]]", 'name = "tls12-trap"', 'platform = "genesys"',
        f'client_id = "{platform.credentials.genesys_client_id}"',
        f'client_secret_env = "{next(k for k, v in platform.env().items() if v == CANARY)}"',
        f'token_url = "{platform.url("login.genesys.cxlab.test", "/oauth/token")}"',
        f'api_base = "{platform.url("api.genesys.cxlab.test")}"',
        f'endpoints = ["{platform.url(GENESYS_TLS13, "/api/v2/flows?pageSize=1")}"]',
        'tls_max = "1.2"',
        "", "[[target]]", 'name = "expired-partner"', 'platform = "generic"', 'client_id = "p"',
        'client_secret_env = "PARTNER_PROXY_SECRET"',
        f'token_url = "https://{expired.host}:{expired.port}/oauth/token"',
        f'api_base = "https://{expired.host}:{expired.port}"', 'endpoints = ["/v1/health"]',
        f'resolve = ["{expired.host}:{expired.port}:127.0.0.1"]', f'ca_bundle = "{tls_lab.client_store}"',
        "", "[breaker]", f'store = "sqlite:///{tmp_path}/cxhealth.sqlite3"', ""])
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


async def _run(names, path):
    from cxhealth.flows.integration_health import integration_health

    state = await integration_health(targets=names, targets_file=str(path), alerts=False, return_state=True)
    report = state.result(raise_on_failure=False)
    if asyncio.iscoroutine(report):
        report = await report
    return state, report


def test_healthy_run_completes_with_a_report_artifact(prefect_harness, targets_file):
    from prefect.client.orchestration import get_client

    state, report = asyncio.run(_run(["lab-genesys"], targets_file))
    assert state.is_completed()
    assert report["healthy"] is True
    t = report["targets"][0]
    assert t["handshake"]["cause"] == "ok" and t["oauth"]["ok"] and all(e["ok"] for e in t["endpoints"])
    assert all(e["protocol"] for e in t["endpoints"]), "every connection's TLS version is recorded"

    async def artifacts():
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["cxhealth-report", "cxhealth-target-lab-genesys"])))

    found = asyncio.run(artifacts())
    assert {a.key for a in found} == {"cxhealth-report", "cxhealth-target-lab-genesys"}


def test_unhealthy_run_fails_naming_target_stage_and_cause(prefect_harness, targets_file):
    state, report = asyncio.run(_run(["lab-genesys", "tls12-trap", "expired-partner"], targets_file))
    assert state.is_failed()
    assert state.name == "Unhealthy"
    assert "tls12-trap: endpoints failed (protocol_version_mismatch)" in state.message
    assert "expired-partner: handshake failed (cert_expired)" in state.message
    assert state.message.index("tls12-trap") < state.message.index("Fix:"), "target and cause come first"
    by_name = {t["name"]: t for t in report["targets"]}
    assert by_name["lab-genesys"]["healthy"] is True
    trap = by_name["tls12-trap"]
    assert trap["oauth"]["ok"] and trap["oauth"]["protocol"] == "TLSv1.2"
    assert trap["endpoints"][0]["cause"] == "protocol_version_mismatch"


def test_events_name_the_target_and_the_breaker_transition(prefect_harness, targets_file):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    asyncio.run(_run(["expired-partner"], targets_file))  # failure 1
    asyncio.run(_run(["expired-partner"], targets_file))  # failure 2: opens
    state, report = asyncio.run(_run(["expired-partner"], targets_file))  # rejected
    assert report["targets"][0]["stage"] == "breaker_open"

    rows = _poll_events(("cxhealth.breaker.opened", "cxhealth.target.unhealthy"))
    assert ("cxhealth.target.unhealthy", "cxhealth.target.expired-partner") in rows
    assert any(name == "cxhealth.breaker.opened" and rid.startswith("cxhealth.breaker.") for name, rid in rows)


def _database_file() -> Path:
    """Where the harness's server keeps its SQLite database (not under PREFECT_HOME)."""
    from prefect.settings import get_current_settings

    url = str(get_current_settings().server.database.connection_url.get_secret_value()
              if hasattr(get_current_settings().server.database.connection_url, "get_secret_value")
              else get_current_settings().server.database.connection_url)
    return Path(url.split(":///", 1)[1])


def _poll_events(names: tuple[str, ...], wait_s: float = 20.0) -> set[tuple[str, str]]:
    """Events are persisted asynchronously by the server: poll its database, bounded."""
    import time

    deadline = time.monotonic() + wait_s
    found: set[tuple[str, str]] = set()
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{_database_file()}?mode=ro", uri=True, timeout=5) as db:
                found = {(e, r) for e, r in db.execute("select event, resource_id from events where event like 'cxhealth.%'")}
        except sqlite3.OperationalError:
            found = set()
        if all(any(e == n for e, _ in found) for n in names):
            return found
        time.sleep(0.2)
    return found


def test_gate_holds_the_wfm_sync_in_a_named_state_before_any_write(prefect_harness, targets_file, tmp_path, platform):
    from cxhealth.flows.wfm_sync import gated_wfm_sync

    db = tmp_path / "wfm.sqlite3"
    before = platform.count(path=platform.schedules_path())
    state = asyncio.run(gated_wfm_sync(targets=["tls12-trap"], targets_file=str(targets_file), db_path=str(db),
                                       return_state=True))
    assert state.is_cancelled() and state.name == "Held"
    assert "tls12-trap: endpoints failed (protocol_version_mismatch)" in state.message
    assert "Fix:" in state.message and "Traceback" not in state.message
    assert not db.exists(), "the sync never started"
    assert platform.count(path=platform.schedules_path()) == before

    written = asyncio.run(gated_wfm_sync(targets=["lab-genesys"], targets_file=str(targets_file), db_path=str(db)))
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from schedules").fetchone()[0] == written == len(platform.schedule_rows)


def test_a_sync_that_breaks_midway_writes_nothing(prefect_harness, targets_file, tmp_path, platform):
    from cxhealth.flows.wfm_sync import SyncFetchError, gated_wfm_sync

    db = tmp_path / "wfm-broken.sqlite3"
    platform.break_schedules(after_pages=1)
    try:
        with pytest.raises(SyncFetchError):
            asyncio.run(gated_wfm_sync(targets=["lab-genesys"], targets_file=str(targets_file), db_path=str(db)))
    finally:
        platform.mend_schedules()
    assert not db.exists() or sqlite3.connect(db).execute(
        "select count(*) from sqlite_master where name='schedules'").fetchone()[0] == 0


def test_canary_secret_appears_nowhere_prefect_keeps_data(prefect_harness, targets_file, caplog):
    """After full runs (healthy, unhealthy, gate), grep every file under PREFECT_HOME."""
    caplog.set_level("DEBUG")
    asyncio.run(_run(["lab-genesys", "tls12-trap"], targets_file))
    _poll_events(("cxhealth.target.healthy",))  # let the server persist this run's events
    db = _database_file()
    files = [p for p in Path(prefect_harness).rglob("*") if p.is_file()]
    files += [p for p in db.parent.glob(db.name + "*") if p.is_file()]
    assert db in files and db.stat().st_size > 0
    assert any(b"tls12-trap" in p.read_bytes() for p in files), "positive control: the grep sees run data"
    leaks = [str(p) for p in files if CANARY.encode() in p.read_bytes()]
    assert leaks == []
    assert CANARY not in caplog.text
    assert CANARY not in json.dumps(asyncio.run(_run(["lab-genesys"], targets_file))[1], default=str)


def _poll(fetch, done, wait_s: float = 30.0):
    """Task-run states and events reach the server asynchronously: poll, bounded."""
    import time

    deadline = time.monotonic() + wait_s
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = fetch()
    return value


def test_a_failed_run_tells_which_target_why_where_and_the_fix(prefect_harness, targets_file):
    """Given one healthy and one unhealthy target, the flow run's name, tags, task runs and
    report artifact each say which target broke, its cause, its host and the first fix."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    state, report = asyncio.run(_run(["lab-genesys", "tls12-trap"], targets_file))
    run_id = state.state_details.flow_run_id

    async def read():
        async with get_client() as client:
            run = await client.read_flow_run(run_id)
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            arts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["cxhealth-report"])), limit=50)
            return run, tasks, [a for a in arts if a.flow_run_id == run_id]

    run, tasks, arts = _poll(lambda: asyncio.run(read()),
                             lambda v: len(v[1]) == 2 and all(t.state and t.state.is_final() for t in v[1]))
    assert "tls12-trap (protocol_version_mismatch)" in run.name and "lab-genesys" not in run.name
    assert {"target:lab-genesys", "target:tls12-trap", "unhealthy:tls12-trap", "cause:protocol_version_mismatch"} <= set(run.tags)
    states = {t.name: (t.state.type.value, t.state.name) for t in tasks}
    assert states == {"lab-genesys": ("COMPLETED", "Completed"), "tls12-trap": ("FAILED", "Unhealthy")}
    trap_task = next(t for t in tasks if t.name == "tls12-trap")
    trap = next(t for t in report["targets"] if t["name"] == "tls12-trap")
    assert trap["host"] == trap["endpoints"][0]["host"] != trap["token_host"], "the API host, not the token host"
    assert trap["host"] in trap_task.state.message and "Fix:" in trap_task.state.message
    markdown = arts[0].data
    header = next(line for line in markdown.splitlines() if line.startswith("| target"))
    assert header.count("|") - 1 <= 5, "five short columns fit the UI's width"
    assert "| ✗ tls12-trap |" in markdown and "**protocol_version_mismatch**" in markdown
    assert trap["host"] in markdown and trap["token_host"] in markdown
    assert "**Fix:**" in markdown and "UTC" in markdown and "+00:00" not in markdown


def test_while_the_breaker_is_open_the_report_keeps_the_cause_and_the_fix(prefect_harness, targets_file):
    asyncio.run(_run(["expired-partner"], targets_file))
    asyncio.run(_run(["expired-partner"], targets_file))  # failure 2: opens (or already open from another test)
    state, report = asyncio.run(_run(["expired-partner"], targets_file))
    t = report["targets"][0]
    assert t["stage"] == "breaker_open" and t["cause"] == "cert_expired"
    assert "since" in t["summary"] and "because cert_expired" in t["summary"] and "UTC" in t["summary"]
    from cxhealth.flows.report import report_markdown
    from cxhealth.tasks.remedies import remediation_for

    fixes = remediation_for(t)
    assert "certificate" in fixes[0].lower(), fixes  # the diagnosis' own fix, not "nothing to do"
    md = report_markdown(report)
    assert "is open since" in md and "because cert_expired" in md and fixes[0] in md
    assert "Fix:" in state.message and "probe" in state.message


def test_one_targets_configuration_error_leaves_the_others_checked(prefect_harness, targets_file, monkeypatch):
    monkeypatch.delenv("PARTNER_PROXY_SECRET")
    state, report = asyncio.run(_run(["lab-genesys", "expired-partner"], targets_file))
    by_name = {t["name"]: t for t in report["targets"]}
    assert by_name["lab-genesys"]["healthy"] is True
    bad = by_name["expired-partner"]
    assert bad["healthy"] is False
    # the handshake runs first (no credential needed) and fails on its own evidence, or,
    # while that host's breaker is open, the run is turned away; either way it is reported, not raised
    assert bad["stage"] in ("handshake", "breaker_open")


def test_the_gate_raises_outside_a_flow_and_reports_under_its_own_key(prefect_harness, targets_file):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from cxhealth import IntegrationUnhealthy, health_gate

    with pytest.raises(IntegrationUnhealthy) as info:
        asyncio.run(health_gate(targets=["tls12-trap"], targets_file=str(targets_file), alerts=False))
    assert info.value.failures[0]["cause"] == "protocol_version_mismatch"
    assert info.value.held().name == "Held" and info.value.held().is_cancelled()

    async def keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["cxhealth-gate-report"])))}

    assert keys_found(keys) == {"cxhealth-gate-report"}


def keys_found(fn):
    return asyncio.run(fn())


def test_a_config_error_in_one_target_is_that_targets_failure(tmp_path, platform, monkeypatch):
    """In-process (the CLI's path): a missing secret makes that target unhealthy with the
    error naming the variable; the other target is still checked."""
    from cxhealth.tasks.health import check_targets
    from cxhealth.tasks.runtime import breaker_for
    from cxhealth.tasks.targets import load_targets

    for name, value in platform.env().items():
        monkeypatch.setenv(name, value)
    text = platform.targets_toml(platforms=("genesys",)) + "\n".join([
        "", "[[target]]", 'name = "no-secret"', 'platform = "genesys"', 'client_id = "x"',
        'client_secret_env = "CXHEALTH_TEST_UNSET_SECRET"',
        f'token_url = "{platform.url("login.genesys.cxlab.test", "/oauth/token")}"',
        f'api_base = "{platform.url("api.genesys.cxlab.test")}"',
        "", "[breaker]", f'store = "sqlite:///{tmp_path}/b.sqlite3"', ""])
    monkeypatch.delenv("CXHEALTH_TEST_UNSET_SECRET", raising=False)
    path = tmp_path / "targets.toml"
    path.write_text(text)
    config = load_targets(path)
    breaker = breaker_for(config)
    try:
        reports = asyncio.run(check_targets(list(config.targets), breaker))
    finally:
        breaker.close()
    by_name = {r.name: r.to_dict() for r in reports}
    assert by_name["lab-genesys"]["healthy"] is True
    bad = by_name["no-secret"]
    assert (bad["stage"], bad["cause"]) == ("oauth", "config_error")
    assert "CXHEALTH_TEST_UNSET_SECRET" in bad["summary"]


def test_an_unknown_target_name_is_that_targets_failure_listing_the_known_ones(prefect_harness, targets_file):
    state, report = asyncio.run(_run(["lab-genesys", "lab-genesis"], targets_file))
    by_name = {t["name"]: t for t in report["targets"]}
    assert by_name["lab-genesys"]["healthy"] is True
    typo = by_name["lab-genesis"]
    assert typo["cause"] == "config_error" and str(targets_file) in typo["summary"]
    assert "lab-genesys" in typo["summary"] and "tls12-trap" in typo["summary"], "the known names are listed"
    assert "lab-genesis: not checked (config_error)" in state.message


def test_events_carry_target_host_and_cause_as_labels(prefect_harness, targets_file):
    """The event feed and Automations read the cause without opening the raw JSON."""
    import time

    asyncio.run(_run(["expired-partner"], targets_file))
    asyncio.run(_run(["expired-partner"], targets_file))
    deadline = time.monotonic() + 30
    rows: list = []
    while time.monotonic() < deadline and not rows:
        try:
            with sqlite3.connect(f"file:{_database_file()}?mode=ro", uri=True, timeout=5) as db:
                rows = [(e, json.loads(r), json.loads(rel)) for e, r, rel in db.execute(
                    "select event, resource, related from events where event in "
                    "('cxhealth.target.unhealthy', 'cxhealth.breaker.opened') and resource_id like '%expired%'")]
        except sqlite3.OperationalError:
            rows = []
        time.sleep(0.2)
    unhealthy = next(r for e, r, _ in rows if e == "cxhealth.target.unhealthy")
    assert unhealthy["cxhealth.target"] == "expired-partner" and unhealthy["cxhealth.cause"] == "cert_expired"
    assert unhealthy["cxhealth.host"] and "cert_expired" in unhealthy["prefect.resource.name"]
    opened = [(r, rel) for e, r, rel in rows if e == "cxhealth.breaker.opened"]
    if opened:  # another test of this session may have opened it first
        resource, related = opened[0]
        assert resource["cxhealth.cause"] == "cert_expired" and resource["cxhealth.host"]
        assert {"prefect.resource.id": "cxhealth.target.expired-partner", "prefect.resource.role": "target",
                "prefect.resource.name": "expired-partner"} in related


def test_a_scheduled_sync_of_a_target_whose_breaker_opens_gets_a_note(prefect_harness, targets_file):
    """A run that the paused work queue will hold says which breaker holds it and when it probes."""
    import time
    from datetime import datetime, timedelta, timezone

    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    async def setup():
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("gated-wfm-sync")
            dep_id = await client.create_deployment(flow_id=flow_id, name="held-note-test",
                                                    parameters={"targets": ["expired-partner"]})
            other = await client.create_deployment(flow_id=flow_id, name="held-note-other",
                                                   parameters={"targets": ["lab-genesys"]})
            later = Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(hours=1))
            run = await client.create_flow_run_from_deployment(dep_id, state=later)
            unrelated = await client.create_flow_run_from_deployment(other, state=later)
            return run.id, unrelated.id

    run_id, unrelated_id = asyncio.run(setup())
    asyncio.run(_run(["expired-partner"], targets_file))
    asyncio.run(_run(["expired-partner"], targets_file))  # the breaker opens (a fresh store per test)
    deadline = time.monotonic() + 30
    notes: list = []
    while time.monotonic() < deadline and not notes:
        try:
            with sqlite3.connect(f"file:{_database_file()}?mode=ro", uri=True, timeout=5) as db:
                notes = [(rid, json.loads(p)) for rid, p in db.execute(
                    "select resource_id, payload from events where event = 'cxhealth.sync.held'")]
        except sqlite3.OperationalError:
            notes = []
        time.sleep(0.2)
    mine = [p for rid, p in notes if rid == f"prefect.flow-run.{run_id}"]
    assert mine and "cert_expired" in mine[0]["note"] and "probe" in mine[0]["note"] and "UTC" in mine[0]["note"]
    assert not [p for rid, p in notes if rid == f"prefect.flow-run.{unrelated_id}"]


def _sync_rows(sql: str, wait_s: float = 20.0, until=lambda rows: bool(rows)) -> list[tuple]:
    """Rows of the harness server's database (it persists events and task runs asynchronously): polled, bounded."""
    import time

    deadline, rows = time.monotonic() + wait_s, []
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{_database_file()}?mode=ro", uri=True, timeout=5) as db:
                rows = db.execute(sql).fetchall()
        except sqlite3.OperationalError:
            rows = []
        if until(rows):
            return rows
        time.sleep(0.2)
    return rows


def test_the_gate_checks_in_the_callers_run_and_alerts_once(prefect_harness, targets_file, monkeypatch):
    """Given a team's sync flow that awaits health_gate (Slack configured), when the gate lets
    one sync through and holds two, then no flow run or task run of the gate's own exists (the
    checks ran in the sync's run), each sync's run carries its targets' events, the held ones
    the gate's report artifact, and the incident is one top-level Slack message; the subflow form
    (health_gate_flow) is a child run of its own."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from cxhealth import IntegrationUnhealthy, health_gate, health_gate_flow
    from cxhealth.lab.fake_slack import FakeSlack

    monkeypatch.setenv("GATE_SLACK_TOKEN", "xoxb-gate")
    with FakeSlack(token="xoxb-gate", channels={"C0GATE": "gate"}) as slack:
        with open(targets_file, "a") as fh:
            fh.write(f'\n[slack]\nbot_token_env = "GATE_SLACK_TOKEN"\nchannel = "C0GATE"\napi_base = "{slack.api_base}"\n')

        @flow(name="team-sync-under-test")
        async def team_sync(names: list[str]) -> object:
            try:
                await health_gate(targets=names, targets_file=str(targets_file))
            except IntegrationUnhealthy as exc:
                return exc.held()
            return "synced"

        @flow(name="team-sync-with-gate-subflow")
        async def team_sync_subflow(names: list[str]) -> dict:
            return await health_gate_flow(targets=names, targets_file=str(targets_file), alerts=False)

        ok = asyncio.run(team_sync(["lab-genesys"], return_state=True))
        held = [asyncio.run(team_sync(["tls12-trap"], return_state=True)) for _ in range(2)]
        sub = asyncio.run(team_sync_subflow(["lab-genesys"], return_state=True))
        assert ok.is_completed() and all(s.is_cancelled() and s.name == "Held" for s in held)
        ok_id, held_ids, sub_id = (str(ok.state_details.flow_run_id), [str(s.state_details.flow_run_id) for s in held],
                                   str(sub.state_details.flow_run_id))

        # Then one top-level message for the incident (the second held sync's alert goes to its thread, if any)
        assert len([m for m in slack.top_level() if "tls12-trap" in m["text"]]) == 1

    # the subflow form: its own child run, named health-gate, under a task run of the sync's run
    children = _sync_rows("select f.name, t.flow_run_id from flow_run r join flow f on f.id = r.flow_id "
                          "join task_run t on t.id = r.parent_task_run_id "
                          f"where t.flow_run_id = '{sub_id}'")
    assert children == [("health-gate", sub_id)]
    # the awaitable form: no task run in the syncs' runs (a subflow hangs under one), so no child flow run
    ids = "', '".join([ok_id, *held_ids])
    assert _sync_rows(f"select id from task_run where flow_run_id in ('{ids}')", wait_s=2) == []
    # each sync's run carries its targets' events
    related = _sync_rows("select resource_id, related from events where event like 'cxhealth.target.%'",
                         until=lambda rows: all(any(i in r for _, r in rows) for i in [ok_id, *held_ids]))
    assert any(rid == "cxhealth.target.lab-genesys" and ok_id in rel for rid, rel in related)
    assert all(any(rid == "cxhealth.target.tls12-trap" and i in rel for rid, rel in related) for i in held_ids)

    async def artifact_keys(run_id: str) -> set[str]:
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))}

    assert asyncio.run(artifact_keys(held_ids[0])) == {"cxhealth-gate-report"}
    assert asyncio.run(artifact_keys(ok_id)) == set()  # a healthy gate's report is read by no one


# --- issue 16: per-target artifacts only when news; shards ----------------------------------

def _target_artifacts(run_id=None, key="cxhealth-target-lab-genesys"):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            arts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                               limit=200)
            from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

            rows = await client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=[key])))
            latest = rows[0] if rows else None
            return [a for a in arts if run_id is None or a.flow_run_id == run_id], latest

    return asyncio.run(read())


def test_a_target_artifact_is_written_when_it_is_news_and_the_run_report_always(prefect_harness, targets_file):
    """Healthy again and healthy before: no new version (the run's report has the target);
    its latest version red (unhealthy at its last check): a new, healthy one; an unhealthy
    target: a version every run."""
    from prefect.artifacts import create_markdown_artifact

    state, _ = asyncio.run(_run(["lab-genesys"], targets_file))  # now its latest version is healthy
    assert _target_artifacts()[1].description.startswith("healthy:")
    state, _ = asyncio.run(_run(["lab-genesys"], targets_file))
    run_id = state.state_details.flow_run_id
    assert _target_artifacts(run_id)[0] == [], "no news, no new version"
    report = _target_artifacts(run_id, "cxhealth-report")[0]
    assert len(report) == 1 and "lab-genesys" in report[0].data, "the run's report carries the target"

    async def red():  # as a run that found it unhealthy leaves it
        await create_markdown_artifact(key="cxhealth-target-lab-genesys", markdown="# ✗ lab-genesys",
                                       description="UNHEALTHY: lab-genesys cert_expired")

    asyncio.run(red())
    state, _ = asyncio.run(_run(["lab-genesys"], targets_file))
    mine, latest = _target_artifacts(state.state_details.flow_run_id)
    assert len(mine) == 1 and latest.latest_id == mine[0].id, "recovered: a new version, now the latest"
    assert latest.description == "healthy: lab-genesys" and "✓ lab-genesys" in mine[0].data

    for _ in range(2):
        state, _ = asyncio.run(_run(["tls12-trap"], targets_file))
        mine, latest = _target_artifacts(state.state_details.flow_run_id, "cxhealth-target-tls12-trap")
        assert len(mine) == 1 and latest.description.startswith("UNHEALTHY: tls12-trap")


def test_shards_split_a_run_and_a_bad_shard_fails_in_one_line(prefect_harness, targets_file):
    from cxhealth.flows.integration_health import integration_health
    from cxhealth.tasks.shards import shard_index

    names = ["lab-genesys", "tls12-trap", "lab-genesis"]  # the unknown name is sharded too
    checked = []
    for k in (1, 2):
        state, report = asyncio.run(_shard_run(names, targets_file, f"{k}/2"))
        got = [t["name"] for t in report["targets"]]
        assert sorted(got) == sorted(n for n in names if shard_index(n, 2) == k - 1)
        checked += got
    assert sorted(checked) == sorted(names), "every target in exactly one shard"

    state = asyncio.run(integration_health(targets_file=str(targets_file), alerts=False, shard="3/2",
                                           return_state=True))
    assert state.is_failed() and "shard '3/2'" in state.message and "\n" not in state.message.strip()


async def _shard_run(names, path, shard):
    from cxhealth.flows.integration_health import integration_health

    state = await integration_health(targets=names, targets_file=str(path), alerts=False, shard=shard,
                                     return_state=True)
    report = state.result(raise_on_failure=False)
    if asyncio.iscoroutine(report):
        report = await report
    return state, report
