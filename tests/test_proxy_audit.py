"""`cxhealth proxy-audit` against a real squid: per-host verdicts and the bypass list.

Given a stand-in for the platforms' edge (one loopback TLS server whose
certificate covers login/api.mypurecloud.com and the NICE hosts) and squid in
front of it that splices login.mypurecloud.com, re-signs every other name on
its bump ports, and denies api-na1.niceincontact.com, when a user audits the
region through squid, then each host is tunnelled, intercepted (by which
product) or refused, and the bypass list covers exactly the intercepted ones.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from cxhealth.cli.main import main
from cxhealth.cli.proxy_audit import parse_connect_to
from cxhealth.cli.errors import UsageError
from cxhealth.tasks.tls.bypass import bypass_list
from tests.conftest import need_squid

HOSTS = ["login.mypurecloud.com", "api.mypurecloud.com", "cxone.niceincontact.com", "api-na1.niceincontact.com"]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def edge():
    from cxhealth.lab.platform_edge import PlatformEdge

    with PlatformEdge(HOSTS) as server:
        yield server


@pytest.fixture(scope="module")
def audit_squid(edge):
    need_squid()
    from cxhealth.lab.squid import SquidLab

    with SquidLab(hosts=edge.hosts_file(), splice=["login.mypurecloud.com", "cxone.niceincontact.com"],
                  deny=[edge.dial_name("api-na1.niceincontact.com")], upstream_ca_bundle=edge.ca_bundle) as squid:
        yield squid


def audit(edge, *argv: str) -> tuple[int, dict, str]:
    code, out, err = run_cli("proxy-audit", *argv, "--ca-bundle", edge.ca_bundle, *edge.connect_to(), "--json",
                             "--reference-ca-bundle", edge.ca_bundle)   # the lab edge's root stands for the public roots
    return code, (json.loads(out) if out else {}), err


def test_an_open_tunnel_passes_every_host_and_exits_0(edge, audit_squid):
    code, report, err = audit(edge, "--platform", "genesys", "--region", "us_east_1", "--proxy", audit_squid.url("plain"))
    assert code == 0, err
    assert report["ok"] is True and report["proxy"] == audit_squid.url("plain") and report["bypass"] == []
    assert [(h["host"], h["verdict"]) for h in report["hosts"]] == [
        ("login.mypurecloud.com", "tunnelled"), ("api.mypurecloud.com", "tunnelled")]
    assert audit_squid.wait_for_log("TCP_TUNNEL/200", f"CONNECT {edge.dial_name('api.mypurecloud.com')}:{edge.port}")


def test_the_inspecting_proxy_is_named_and_the_bypass_list_covers_the_intercepted_host(edge, audit_squid):
    code, report, err = audit(edge, "--platform", "genesys", "--region", "us_east_1", "--proxy", audit_squid.url("bump"))
    assert code == 1, err
    verdicts = {h["host"]: h for h in report["hosts"]}
    assert verdicts["login.mypurecloud.com"]["verdict"] == "tunnelled"       # spliced
    api = verdicts["api.mypurecloud.com"]
    assert (api["verdict"], api["product"], api["cause"]) == ("intercepted", "Zscaler", "proxy_interception")
    assert "Zscaler Root CA" in api["inspection_ca"]
    [group] = report["bypass"]
    assert group["product"] == "Zscaler" and group["patterns"] == [".mypurecloud.com"]   # Zscaler's own form
    assert "Do Not Inspect" in group["where"]
    assert group["entries"][0]["covers"] == ["api.mypurecloud.com"]


def test_a_neutral_inspection_ca_is_intercepted_by_an_unrecognised_ca_with_a_generic_bypass(edge, audit_squid):
    code, report, _ = audit(edge, "--platform", "genesys", "--region", "us_east_1",
                            "--proxy", audit_squid.url("bump_neutral"))
    assert code == 1
    api = {h["host"]: h for h in report["hosts"]}["api.mypurecloud.com"]
    assert api["verdict"] == "intercepted" and api["product"] is None and "Northwind" in api["inspection_ca"]
    assert report["bypass"][0]["patterns"] == ["*.mypurecloud.com"]


def test_a_trusted_inspection_ca_is_still_reported_as_intercepted(edge, audit_squid, tmp_path):
    bundle = tmp_path / "edge+zscaler.pem"
    bundle.write_bytes(open(edge.ca_bundle, "rb").read() + audit_squid.zscaler_ca_pem.read_bytes())
    code, out, err = run_cli("proxy-audit", "--platform", "genesys", "--region", "us_east_1", "--proxy",
                             audit_squid.url("bump"), "--ca-bundle", str(bundle), *edge.connect_to(), "--json",
                             "--reference-ca-bundle", edge.ca_bundle)
    report = json.loads(out)
    api = {h["host"]: h for h in report["hosts"]}["api.mypurecloud.com"]
    assert code == 1 and api["verdict"] == "intercepted" and api["trusted_by_client"] is True
    assert api["product"] == "Zscaler"


def test_a_trusted_neutral_inspection_ca_is_intercepted_not_tunnelled(edge, audit_squid, tmp_path):
    """The usual corporate set-up: the inspection CA (a neutral name no product table knows) is in the
    client's bundle. The chain verifies, but reaches no public root: intercepted, exit 1, bypass listed."""
    bundle = tmp_path / "edge+neutral.pem"
    bundle.write_bytes(open(edge.ca_bundle, "rb").read() + audit_squid.neutral_ca_pem.read_bytes())
    argv = ["proxy-audit", "--platform", "genesys", "--region", "us_east_1", "--proxy", audit_squid.url("bump_neutral"),
            "--ca-bundle", str(bundle), "--reference-ca-bundle", edge.ca_bundle, *edge.connect_to()]
    code, out, err = run_cli(*argv, "--json")
    assert err == ""
    report = json.loads(out)
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["login.mypurecloud.com"]["verdict"] == "tunnelled"            # spliced: the edge's own chain
    api = hosts["api.mypurecloud.com"]
    assert code == 1 and report["ok"] is False
    assert (api["verdict"], api["product"], api["trusted_by_client"]) == ("intercepted", None, True)
    assert "Northwind" in api["inspection_ca"] and "reference store" in api["summary"]
    assert api["diagnosis"]["evidence"]["reference_store"]["complete"] is False
    assert report["bypass"][0]["patterns"] == ["*.mypurecloud.com"]
    assert report["bypass"][0]["entries"][0]["covers"] == ["api.mypurecloud.com"]
    code, text, _ = run_cli(*argv)
    assert code == 1 and "INTERCEPTED" in text and "unrecognised inspection CA" in text
    assert "the client trusts that CA" in text and "1 of 2 hosts tunnelled untouched" in text


def test_without_a_reference_store_a_private_edge_chain_is_not_public(edge, audit_squid):
    """With certifi as the reference (the default), the lab edge's private root is not a public chain:
    even the plain tunnel's hosts count as intercepted (a real platform host chains to a public root)."""
    code, out, err = run_cli("proxy-audit", "--platform", "genesys", "--region", "us_east_1", "--proxy",
                             audit_squid.url("plain"), "--ca-bundle", edge.ca_bundle, *edge.connect_to(), "--json")
    report = json.loads(out)
    assert code == 1 and [h["verdict"] for h in report["hosts"]] == ["intercepted", "intercepted"]
    assert all(h["trusted_by_client"] for h in report["hosts"])


def test_a_refused_host_is_refused_and_the_text_report_says_so(edge, audit_squid):
    code, report, _ = audit(edge, "--platform", "nice", "--region", "na1", "--proxy", audit_squid.url("plain"))
    assert code == 1
    assert [(h["host"], h["verdict"]) for h in report["hosts"]] == [
        ("cxone.niceincontact.com", "tunnelled"), ("api-na1.niceincontact.com", "refused")]
    assert report["hosts"][1]["status_line"] == "HTTP/1.1 403 Forbidden" and report["bypass"] == []
    code, out, err = run_cli("proxy-audit", "--platform", "nice", "--region", "na1", "--proxy", audit_squid.url("plain"),
                             "--ca-bundle", edge.ca_bundle, "--reference-ca-bundle", edge.ca_bundle, *edge.connect_to())
    assert code == 1 and "REFUSED" in out and "TUNNELLED" in out and "1 of 2 hosts tunnelled" in out


def test_the_environment_proxy_is_the_one_audited(edge, audit_squid, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", audit_squid.url("bump"))
    code, out, _ = run_cli("proxy-audit", "--platform", "genesys", "--region", "us_east_1",
                           "--ca-bundle", edge.ca_bundle, "--reference-ca-bundle", edge.ca_bundle, *edge.connect_to())
    assert code == 1 and "(from $HTTPS_PROXY)" in out and "INTERCEPTED" in out and ".mypurecloud.com" in out


@pytest.mark.parametrize("argv, words", [
    (("--platform", "genesys", "--region", "mars_north_1"), "unknown genesys region"),
    (("--platform", "nice", "--region", "moon"), "unknown nice region"),
    (("--platform", "generic", "--region", "x"), "invalid choice"),
    (("--platform", "genesys", "--region", "us_east_1", "--proxy", "socks5://p:1080"), "SOCKS"),
    (("--platform", "genesys", "--region", "us_east_1", "--proxy", "http://u:pw-31337@p:3128"), "holds a password"),
    (("--platform", "genesys", "--region", "us_east_1", "--connect-to", "nonsense"), "HOST1:PORT1:HOST2:PORT2"),
])
def test_bad_input_is_one_line_exit_2(argv, words):
    code, out, err = run_cli("proxy-audit", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err and "pw-31337" not in err


def test_connect_to_syntax_follows_curl():
    assert parse_connect_to(["api.x.com:443:10.0.0.1:8443", "::[::1]:9000"]) == [
        ("api.x.com", 443, "10.0.0.1", 8443), ("", None, "::1", 9000)]
    with pytest.raises(UsageError):
        parse_connect_to(["a:443:b:99999"])


def test_bypass_list_groups_hosts_under_the_allow_list_domains():
    entries = bypass_list(["api.mypurecloud.com", "login.mypurecloud.com", "api.usw2.pure.cloud", "other.example"],
                          "genesys", "Palo Alto Networks")
    assert [(e.pattern, e.covers) for e in entries] == [
        ("*.mypurecloud.com", ("api.mypurecloud.com", "login.mypurecloud.com")),
        ("*.pure.cloud", ("api.usw2.pure.cloud",)), ("other.example", ("other.example",))]
