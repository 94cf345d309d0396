"""`cxhealth run` per contract §2: the report, exit codes, alerts, bad input.

Given a targets.toml at the fake platform and the TLS lab, when a user runs
`cxhealth run`, then the JSON report has the contract's keys, the exit status
says healthy/unhealthy/bad input, `--no-alerts` sends and queues nothing, and
the breaker's fail-fast shows as stage `breaker_open` with no connection.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from cxhealth.cli.main import main
from tests.conftest import need_service

CANARY = "canary-run-secret-41c9"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def platform():
    from cxhealth.lab.fake_platform import FakeCredentials, FakePlatform

    with FakePlatform(credentials=FakeCredentials(partner_client_secret=CANARY)) as fake:
        yield fake


@pytest.fixture(scope="module")
def slack():
    from cxhealth.lab.fake_slack import FakeSlack

    with FakeSlack(token="xoxb-run-test", channels={"C0RUN": "run"}) as fake:
        yield fake


@pytest.fixture()
def env(platform, monkeypatch):
    for name, value in platform.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUN_SLACK_TOKEN", "xoxb-run-test")
    monkeypatch.setenv("EXPIRED_PARTNER_SECRET", "not-a-real-secret")


def write(tmp_path, platform, tls_lab, slack=None, extra_targets: str = "") -> str:
    text = platform.targets_toml()
    expired = tls_lab.scenarios["cert_expired"]
    text += extra_targets or ""
    text += "\n".join([
        "", "[[target]]", 'name = "expired-partner"', 'platform = "generic"', 'client_id = "p"',
        'client_secret_env = "EXPIRED_PARTNER_SECRET"',
        f'token_url = "https://{expired.host}:{expired.port}/oauth/token"',
        f'api_base = "https://{expired.host}:{expired.port}"', 'endpoints = ["/v1/health"]',
        f'resolve = ["{expired.host}:{expired.port}:127.0.0.1"]', f'ca_bundle = "{tls_lab.client_store}"', ""])
    if slack is not None:
        text += f'\n[slack]\nbot_token_env = "RUN_SLACK_TOKEN"\nchannel = "C0RUN"\napi_base = "{slack.api_base}"\n'
    text += f'\n[breaker]\nstore = "sqlite:///{tmp_path}/cxhealth.sqlite3"\n'
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return str(path)


def test_healthy_targets_exit_0_with_the_contract_report(tmp_path, platform, tls_lab, env):
    path = write(tmp_path, platform, tls_lab)
    code, out, err = run_cli("run", "--targets", path, "--json", "--only", "lab-genesys", "--only", "lab-nice",
                             "--only", "lab-partner")
    assert code == 0, err
    report = json.loads(out)
    assert report["healthy"] is True
    assert [t["name"] for t in report["targets"]] == ["lab-genesys", "lab-nice", "lab-partner"]
    for t in report["targets"]:
        assert {"name", "healthy", "stage", "handshake", "oauth", "endpoints", "breaker"} <= t.keys()
        assert t["stage"] is None and t["breaker"]["state"] == "closed"
        assert t["handshake"]["cause"] == "ok" and t["handshake"]["ok"] is True
        assert {"ok", "status", "ms", "error"} <= t["oauth"].keys() and t["oauth"]["ok"] is True
        for e in t["endpoints"]:
            assert {"path", "ok", "status", "ms", "protocol", "cause"} <= e.keys()
            assert e["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert CANARY not in out + err


def test_an_unhealthy_target_exits_1_and_names_stage_and_cause(tmp_path, platform, tls_lab, env):
    path = write(tmp_path, platform, tls_lab)
    code, out, _ = run_cli("run", "--targets", path, "--only", "lab-genesys", "--only", "expired-partner")
    assert code == 1
    assert "expired-partner" in out and "handshake" in out and "cert_expired" in out and "UNHEALTHY" in out


def test_two_handshake_failures_open_the_breaker_and_the_third_check_makes_no_connection(tmp_path, platform,
                                                                                           tls_lab, env):
    path = write(tmp_path, platform, tls_lab)
    host = tls_lab.scenarios["cert_expired"]
    stages = []
    for _ in range(2):
        code, out, _ = run_cli("run", "--targets", path, "--json", "--only", "expired-partner")
        stages.append(json.loads(out)["targets"][0]["stage"])
    before = int(host.connections)
    code, out, _ = run_cli("run", "--targets", path, "--json", "--only", "expired-partner")
    third = json.loads(out)["targets"][0]
    assert stages == ["handshake", "handshake"]
    assert third["stage"] == "breaker_open" and third["breaker"]["state"] == "open"
    assert third["breaker"]["reopen_at"] and third["cause"] == "cert_expired"
    assert int(host.connections) == before, "an open breaker opens no socket"
    assert code == 1


def test_alerts_reach_slack_and_no_alerts_sends_and_queues_nothing(tmp_path, platform, tls_lab, env, slack):
    path = write(tmp_path, platform, tls_lab, slack=slack)
    before = len(slack.requests)
    code, out, _ = run_cli("run", "--targets", path, "--json", "--no-alerts", "--only", "expired-partner")
    assert code == 1 and "alerts" not in json.loads(out)
    assert len(slack.requests) == before
    code, out, _ = run_cli("run", "--targets", path, "--json", "--only", "expired-partner")
    alerts = json.loads(out)["alerts"]
    assert alerts["sent"] and alerts["queued"] == 0
    roots = [m for m in slack.top_level() if "expired-partner" in (m.get("text") or "")]
    assert len(roots) == 1
    assert all(CANARY not in r.text and CANARY not in json.dumps(r.headers) for r in slack.requests)


GOOD_TARGET = ('[[target]]\nname = "x"\nplatform = "generic"\ntoken_url = "https://127.0.0.1:9/t"\n'
               'api_base = "https://127.0.0.1:9"\nclient_id = "c"\nclient_secret_env = "HOME"\ntimeout = 1\n')


@pytest.mark.parametrize("content, needle", [
    (None, "cannot read"),
    ("[[target]\nname=", "not valid TOML"),
    ('[[target]]\nname = "x"\nplatform = "genesys"\nregion = "us_east_1"\nclient_id = "c"\n'
     'client_secret_env = "CXHEALTH_TEST_UNSET_VARIABLE"\n', "CXHEALTH_TEST_UNSET_VARIABLE"),
    ('[[target]]\nname = "x"\nplatform = "genesys"\nregion = "mars_1"\nclient_id = "c"\n'
     'client_secret_env = "HOME"\n', "mars_1"),
    ('[[target]]\nname = "x"\nplatform = "genesys"\nregion = "us_east_1"\nclient_id = "c"\n'
     'client_secret = "s3cr3t-inline-value"\n', "client_secret_env"),
    # A store URL typo must not fall back silently to an unshared in-process breaker.
    (GOOD_TARGET + '[breaker]\nstore = "redis://127.0.0.1:notaport/15"\n', "port must be a number"),
    (GOOD_TARGET + '[breaker]\nstore = "redis://127.0.0.1:6379/abc"\n', "database must be a number"),
    (GOOD_TARGET + '[breaker]\nstore = "mysql://u:s3cr3t-inline-value@db/x"\n', "mysql://u:***@db/x"),
    (GOOD_TARGET + '[breaker]\nstore = "redis://:s3cr3t-inline-value@127.0.0.1:x/0"\n', "port must be a number"),
    (GOOD_TARGET + '[breaker]\nstore = "sqlite:////proc/cxhealth-no-such-dir/b.sqlite3"\n', "cannot be opened"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, content, needle):
    monkeypatch.delenv("CXHEALTH_TEST_UNSET_VARIABLE", raising=False)
    path = tmp_path / "targets.toml"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli("run", "--targets", str(path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in err
    assert "s3cr3t-inline-value" not in err


def test_an_operator_kill_switch_rejects_every_check_until_cleared(tmp_path, platform, tls_lab, env):
    path = write(tmp_path, platform, tls_lab)
    from cxhealth.tasks.targets import load_targets

    host = load_targets(path).target("lab-genesys").endpoints_to_diagnose()[0].host
    code, out, _ = run_cli("breaker", "open", host, "--targets", path, "--reason", "vendor incident INC-1")
    assert code == 0 and "forced_open" in out
    before = platform.count(host=host)
    code, out, _ = run_cli("run", "--targets", path, "--json", "--only", "lab-genesys")
    target = json.loads(out)["targets"][0]
    assert code == 1 and target["stage"] == "breaker_open" and "INC-1" in target["summary"]
    assert platform.count(host=host) == before, "a forced-open breaker opens no connection"
    code, out, _ = run_cli("breaker", "status", "--targets", path, "--json")
    assert any(d["host"] == host and d["override"] == "forced_open" for d in json.loads(out))
    assert run_cli("breaker", "clear", host, "--targets", path)[0] == 0
    code, out, _ = run_cli("run", "--targets", path, "--json", "--only", "lab-genesys")
    assert code == 0 and json.loads(out)["healthy"] is True


def test_breaker_overrides_need_one_host_and_a_reason(tmp_path, platform, tls_lab, env):
    path = write(tmp_path, platform, tls_lab)
    code, _, err = run_cli("breaker", "open", "--targets", path, "--reason", "x")
    assert code == 2 and "exactly one HOST" in err
    code, _, err = run_cli("breaker", "open", "api.example.test", "--targets", path)
    assert code == 2 and "--reason" in err


def test_a_discovered_api_host_is_admitted_by_the_breaker_before_its_first_request(tmp_path, platform, tls_lab,
                                                                                      env):
    from cxhealth.lab.fake_platform import NICE_API

    path = write(tmp_path, platform, tls_lab)
    assert run_cli("breaker", "open", NICE_API, "--targets", path, "--reason", "maintenance")[0] == 0
    before = platform.count(host=NICE_API)
    code, out, _ = run_cli("run", "--targets", path, "--json", "--only", "lab-nice")
    target = json.loads(out)["targets"][0]
    assert code == 1 and target["stage"] == "breaker_open"
    skipped = [e for e in target["endpoints"] if e["host"] == NICE_API]
    assert skipped and all(e["error"] == "breaker_open" and e["attempts"] == 0 for e in skipped)
    assert platform.count(host=NICE_API) == before, "no request reached the discovered host"


def test_a_redis_store_that_refuses_the_configuration_is_bad_input_not_a_fallback(tmp_path):
    need_service("Redis", "127.0.0.1", 6379)
    path = tmp_path / "targets.toml"
    path.write_text(GOOD_TARGET + '[breaker]\nstore = "redis://127.0.0.1:6379/999"\n')
    code, out, err = run_cli("run", "--targets", str(path), "--no-alerts")
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and "DB index is out of range" in err


def test_an_empty_secret_variable_is_named_as_empty_not_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("CXHEALTH_TEST_EMPTY_SECRET", "")
    path = tmp_path / "targets.toml"
    path.write_text(GOOD_TARGET.replace('client_secret_env = "HOME"', 'client_secret_env = "CXHEALTH_TEST_EMPTY_SECRET"'))
    code, out, err = run_cli("run", "--targets", str(path), "--no-alerts")
    assert (code, out) == (2, "")
    assert "CXHEALTH_TEST_EMPTY_SECRET is empty" in err and len(err.strip().splitlines()) == 1


def test_clear_says_a_tripped_breaker_stays_open_and_reset_closes_it(tmp_path, platform, tls_lab, env):
    path = write(tmp_path, platform, tls_lab)
    host = tls_lab.scenarios["cert_expired"]
    for _ in range(2):
        run_cli("run", "--targets", path, "--json", "--only", "expired-partner")
    name = json.loads(run_cli("breaker", "status", "--targets", path, "--json")[1])
    opened = [d for d in name if d["state"] == "open"]
    assert len(opened) == 1
    where = opened[0]["host"]
    # clear: there is no override to remove, and it says so instead of printing the same state silently
    code, out, _ = run_cli("breaker", "clear", where, "--targets", path)
    assert code == 0 and "no override to clear" in out and "breaker reset" in out
    before = int(host.connections)
    assert json.loads(run_cli("run", "--targets", path, "--json", "--only", "expired-partner")[1]
                      )["targets"][0]["stage"] == "breaker_open"
    assert int(host.connections) == before
    # reset: closed for everyone sharing the store; the next check reaches the host again
    code, out, _ = run_cli("breaker", "reset", where, "--targets", path, "--json")
    assert code == 0 and json.loads(out)[0]["state"] == "closed"
    third = json.loads(run_cli("run", "--targets", path, "--json", "--only", "expired-partner")[1])["targets"][0]
    assert third["stage"] == "handshake" and int(host.connections) > before
