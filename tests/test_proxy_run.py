"""`cxhealth run` through a real squid: the token request and the endpoints use the same tunnel.

Given the fake platform behind squid (squid resolves the platform's names from
its own hosts file; the client has no route but the proxy), when a user runs
the checks with ``proxy = ...`` (or ``HTTPS_PROXY``), then every connection goes
through the tunnel; through an intercepting squid the handshake stage stops
the run and not one token request reaches the platform; the proxy password and
the client secret appear in no output and no file.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from cxhealth.cli.main import main
from cxhealth.lab.squid import PROXY_USER
from tests.conftest import need_squid

CANARY = "canary-proxy-run-secret-5d1e"
PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def platform():
    from cxhealth.lab.fake_platform import FakeCredentials, FakePlatform

    with FakePlatform(credentials=FakeCredentials(genesys_client_secret=CANARY)) as fake:
        yield fake


@pytest.fixture(scope="module")
def platform_squid(platform):
    need_squid()
    from cxhealth.lab.fake_platform import ALL_HOSTS, GENESYS_API, GENESYS_TLS13
    from cxhealth.lab.squid import SquidLab

    with SquidLab(hosts={h: "127.0.0.1" for h in ALL_HOSTS}, splice=[GENESYS_API], deny=[GENESYS_TLS13],
                  upstream_ca_bundle=platform.ca_bundle) as squid:
        yield squid


@pytest.fixture()
def env(platform, platform_squid, monkeypatch):
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in platform.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CXLAB_PROXY_PASSWORD", platform_squid.password)
    platform.reset()


def write(tmp_path: Path, platform, *, proxy: str | None, resolve: bool = False, extra: str = "") -> str:
    """A targets file for the lab's Genesys, reachable only through the proxy (no resolve entries)."""
    text = platform.targets_toml(platforms=("genesys",))
    if not resolve:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("resolve ="))
    if proxy:
        text = text.replace("[defaults]", f"[defaults]\nproxy = \"{proxy}\"{extra}", 1)
    text += f'\n[breaker]\nstore = "sqlite:///{tmp_path}/breaker.sqlite3"\n'
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return str(path)


def _no_secret_anywhere(tmp_path: Path, *texts: str, secrets: tuple[str, ...]) -> None:
    blobs = list(texts) + [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    for secret in secrets:
        assert not any(secret in blob for blob in blobs), f"a secret leaked ({secret[:4]}...)"


def test_run_through_the_tunnel_is_healthy_and_every_host_goes_through_squid(tmp_path, platform, platform_squid, env):
    from cxhealth.lab.fake_platform import GENESYS_API, GENESYS_LOGIN

    path = write(tmp_path, platform, proxy=platform_squid.url("plain"))
    code, out, err = run_cli("run", "--targets", path, "--json", "--no-alerts")
    assert code == 0, err
    target = json.loads(out)["targets"][0]
    assert target["healthy"] and target["handshake"]["target"]["proxy"] == platform_squid.url("plain")
    assert target["oauth"]["ok"] and all(e["ok"] for e in target["endpoints"])
    assert target["breaker"]["state"] == "closed"
    assert len(platform.token_requests) == 1
    for host in (GENESYS_LOGIN, GENESYS_API):
        assert platform_squid.wait_for_log("TCP_TUNNEL/200", f"CONNECT {host}:"), host
    _no_secret_anywhere(tmp_path, out, err, secrets=(CANARY,))


def test_history_records_the_proxy_for_every_connection_made_through_it(tmp_path, platform, platform_squid, env):
    """Contract §4: each observation records its proxy, the endpoint hosts' successful connections too
    (they were NULL: only the token host's diagnosis carried it)."""
    import sqlite3

    from cxhealth.lab.fake_platform import GENESYS_API, GENESYS_LOGIN

    path = write(tmp_path, platform, proxy=platform_squid.url("plain"))
    db = tmp_path / "history.sqlite3"
    Path(path).write_text(Path(path).read_text() + f'\n[history]\nstore = "sqlite:///{db}"\n')
    code, out, err = run_cli("run", "--targets", path, "--json", "--no-alerts")
    assert code == 0, err
    target = json.loads(out)["targets"][0]
    assert target["endpoints"] and all(e["proxy"] == platform_squid.url("plain") for e in target["endpoints"])
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT host, stage, proxy FROM observations").fetchall()
    hosts = {(host, stage) for host, stage, _ in rows}
    assert (GENESYS_LOGIN, "handshake") in hosts and (GENESYS_API, "endpoints") in hosts, rows
    assert all(proxy == platform_squid.url("plain") for _, _, proxy in rows), rows


def test_the_environment_proxy_is_used_by_run_and_no_proxy_true_goes_direct(tmp_path, platform, platform_squid, env,
                                                                            monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", platform_squid.url("plain"))
    code, out, err = run_cli("run", "--targets", write(tmp_path, platform, proxy=None), "--json", "--no-alerts")
    assert code == 0, err
    assert json.loads(out)["targets"][0]["handshake"]["target"]["proxy"] == platform_squid.url("plain")
    # no_proxy = true: direct (with the resolve entries, as without a proxy)
    path = write(tmp_path, platform, proxy=None, resolve=True)
    Path(path).write_text(Path(path).read_text().replace("[defaults]", "[defaults]\nno_proxy = true", 1))
    code, out, err = run_cli("run", "--targets", path, "--json", "--no-alerts")
    assert code == 0, err
    assert json.loads(out)["targets"][0]["handshake"]["target"]["proxy"] is None


def test_run_with_proxy_auth_by_name_and_the_password_leaks_nowhere(tmp_path, platform, platform_squid, env):
    url = platform_squid.url("auth", PROXY_USER)
    path = write(tmp_path, platform, proxy=url, extra='\nproxy_password_env = "CXLAB_PROXY_PASSWORD"')
    code, out, err = run_cli("run", "--targets", path, "--json", "--no-alerts")
    assert code == 0, err
    target = json.loads(out)["targets"][0]
    assert target["healthy"] and target["handshake"]["target"]["proxy"] == url
    assert platform_squid.wait_for_log(PROXY_USER, "TCP_TUNNEL/200")
    _no_secret_anywhere(tmp_path, out, err, secrets=(CANARY, platform_squid.password))
    # without the password: the handshake stage names the proxy cause, no token request is made
    platform.reset()
    path = write(tmp_path, platform, proxy=platform_squid.url("auth"))
    code, out, err = run_cli("run", "--targets", path, "--json", "--no-alerts")
    target = json.loads(out)["targets"][0]
    assert (code, target["stage"], target["cause"]) == (1, "handshake", "proxy_auth_required")
    assert platform.token_requests == []


def test_an_intercepting_proxy_stops_the_run_before_any_token_request(tmp_path, platform, platform_squid, env):
    """squid re-signs login.genesys… with its Zscaler-named CA: the handshake stage fails first,
    and zero token requests (so zero credentials) reach the platform."""
    path = write(tmp_path, platform, proxy=platform_squid.url("bump"))
    code, out, err = run_cli("run", "--targets", path, "--json", "--no-alerts")
    assert code == 1, err
    target = json.loads(out)["targets"][0]
    assert (target["stage"], target["cause"]) == ("handshake", "proxy_interception")
    assert "Zscaler" in target["handshake"]["summary"]
    assert target["oauth"] is None and target["endpoints"] == []
    assert platform.token_requests == [] and platform.requests == []
    assert not any("POST" in line for line in platform_squid.access_lines())   # nothing was sent inside a tunnel
    assert target["breaker"]["host"] == target["handshake"]["target"]["host"]  # the key is the target host
    _no_secret_anywhere(tmp_path, out, err, secrets=(CANARY,))


def test_an_api_host_the_proxy_refuses_fails_the_endpoints_stage_with_proxy_refused(tmp_path, platform,
                                                                                    platform_squid, env):
    from cxhealth.lab.fake_platform import GENESYS_TLS13

    path = write(tmp_path, platform, proxy=platform_squid.url("plain"))
    text = Path(path).read_text().replace('api_base = "https://api.genesys',
                                          f'api_base = "https://{GENESYS_TLS13}:{platform.tls13_port}"\n# was "', 1)
    Path(path).write_text(text)
    code, out, err = run_cli("run", "--targets", path, "--json", "--no-alerts")
    target = json.loads(out)["targets"][0]
    assert (code, target["stage"], target["cause"]) == (1, "endpoints", "proxy_refused"), err
    assert target["oauth"]["ok"] is True                          # the token host was tunnelled
    assert all(e["cause"] == "proxy_refused" for e in target["endpoints"])
    assert not any(r.host == GENESYS_TLS13 for r in platform.requests)


def test_a_bad_proxy_setting_in_targets_is_exit_2_in_one_line(tmp_path, platform, env, monkeypatch):
    cases = [
        ("socks5://127.0.0.1:1080", "", "SOCKS"),
        ("http://jane:pw-77aa@127.0.0.1:3128", "", "holds a password"),
        ("http://jane@127.0.0.1:3128", '\nproxy_password_env = "CXLAB_UNSET_PROXY_PW"', "CXLAB_UNSET_PROXY_PW is not set"),
    ]
    monkeypatch.delenv("CXLAB_UNSET_PROXY_PW", raising=False)
    for proxy, extra, words in cases:
        code, out, err = run_cli("run", "--targets", write(tmp_path, platform, proxy=proxy, extra=extra))
        assert code == 2 and out == "" and err.count("\n") == 1, (proxy, err)
        assert words in err and "pw-77aa" not in err
        assert err.count("target 'genesys") <= 1 and "<values>" not in err, err     # the source and target once
    path = write(tmp_path, platform, proxy=None)
    Path(path).write_text(Path(path).read_text().replace("[defaults]", '[defaults]\nproxy_password = "x"', 1))
    code, _, err = run_cli("run", "--targets", path)
    assert code == 2 and "proxy_password_env" in err


@pytest.mark.slow
def test_the_flow_through_squid_stops_at_interception_and_keeps_no_proxy_password(prefect_harness, tmp_path,
                                                                                 platform, platform_squid, env):
    """integration-health as a Prefect flow: through the authenticated tunnel it is healthy; through the
    intercepting port it fails at the handshake with zero token requests; neither the proxy password nor
    the client secret is in any file Prefect keeps (its database included)."""
    import asyncio

    from cxhealth.flows.integration_health import integration_health
    from tests.test_flows import _database_file

    async def flow_report(path: str) -> dict:
        state = await integration_health(targets=None, targets_file=path, alerts=False, return_state=True)
        report = state.result(raise_on_failure=False)
        return await report if asyncio.iscoroutine(report) else report

    url = platform_squid.url("auth", PROXY_USER)
    path = write(tmp_path, platform, proxy=url, extra='\nproxy_password_env = "CXLAB_PROXY_PASSWORD"')
    report = asyncio.run(flow_report(path))
    [target] = report["targets"]
    assert target["healthy"] and target["handshake"]["target"]["proxy"] == url
    assert len(platform.token_requests) == 1
    platform.reset()
    report = asyncio.run(flow_report(write(tmp_path, platform, proxy=platform_squid.url("bump"))))
    [target] = report["targets"]
    assert (target["stage"], target["cause"]) == ("handshake", "proxy_interception")
    assert platform.token_requests == []
    db = _database_file()
    files = [p for p in Path(prefect_harness).rglob("*") if p.is_file()]
    files += [p for p in db.parent.glob(db.name + "*") if p.is_file()]
    assert any(b"lab-genesys" in p.read_bytes() for p in files), "positive control: the grep sees run data"
    for secret in (platform_squid.password, CANARY):
        assert [str(p) for p in files if secret.encode() in p.read_bytes()] == []


def test_a_targets_dead_proxy_never_trips_the_breaker_of_a_host_others_reach_directly(tmp_path, platform, monkeypatch):
    """The breaker is keyed by the target host; a proxy that is down, refuses or wants credentials
    reached nothing of that host's, so the host's breaker is not fed by it (black-box review)."""
    import socket

    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in platform.env().items():
        monkeypatch.setenv(name, value)
    platform.reset()
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    text = platform.targets_toml(platforms=("genesys",))
    block = text[text.index("[[target]]"):]
    proxied = block.replace('name = "lab-genesys"', 'name = "lab-genesys-via-dead-proxy"', 1).replace(
        "[[target]]\n", f'[[target]]\nproxy = "http://127.0.0.1:{dead}"\n', 1)
    path = tmp_path / "targets.toml"
    path.write_text(text + "\n" + proxied + f'\n[breaker]\nstore = "sqlite:///{tmp_path}/breaker.sqlite3"\n')
    for _ in range(3):  # more than the breaker's two failures in its window
        code, out, err = run_cli("run", "--targets", str(path), "--json", "--no-alerts")
        by_name = {t["name"]: t for t in json.loads(out)["targets"]}
        direct, via = by_name["lab-genesys"], by_name["lab-genesys-via-dead-proxy"]
        assert via["cause"] == "proxy_unreachable" and code == 1
        assert direct["healthy"] and direct["breaker"]["state"] == "closed", direct.get("summary")
