"""`cxhealth diagnose` through a real squid: every proxy cause, interception, the environment, authentication.

Given the session's squid in front of the TLS lab, when a user diagnoses a lab
endpoint through it (``--proxy`` or ``HTTPS_PROXY``), then the verdict names
what the proxy did, with the proxy's own words as evidence.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from cxhealth.cli.main import main
from cxhealth.lab.squid import PROXY_USER

PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def diagnose(scenario, *extra: str, ca: str | None = None) -> tuple[int, dict]:
    code, out, err = run_cli("diagnose", scenario.target, "--ca-bundle", ca or scenario.ca_bundle, "--json", *extra)
    assert err == "", err
    return code, json.loads(out)


def test_a_healthy_endpoint_through_the_tunnel_is_healthy_and_names_the_proxy(tls_lab, squid):
    s = tls_lab.scenarios["healthy"]
    before = s.connections.value
    code, doc = diagnose(s, "--proxy", squid.url("plain"))
    assert (code, doc["cause"], doc["ok"]) == (0, "ok", True)
    assert doc["target"]["proxy"] == squid.url("plain") and doc["target"]["address"] is None
    assert doc["target"]["sni"] == s.host and doc["protocol"] == "TLSv1.3"
    assert doc["evidence"]["proxy"]["status_line"].startswith("HTTP/1.1 200")
    assert s.connections.value == before + 1          # the lab server saw the tunnelled connection
    assert squid.wait_for_log("TCP_TUNNEL/200", f"CONNECT {s.host}:{s.port}")


def test_the_environment_proxy_is_honoured_and_no_proxy_exempts(tls_lab, squid, monkeypatch):
    s = tls_lab.scenarios["healthy"]
    monkeypatch.setenv("HTTPS_PROXY", squid.url("plain"))
    code, doc = diagnose(s)
    assert (code, doc["cause"], doc["target"]["proxy"]) == (0, "ok", squid.url("plain"))
    assert doc["evidence"]["proxy"]["source"] == "$HTTPS_PROXY"
    # NO_PROXY exempts the lab's domain: direct, where the lab names do not resolve without --resolve
    monkeypatch.setenv("NO_PROXY", "example.org, .cxlab.test")
    code, doc = diagnose(s)
    assert (doc["cause"], doc["target"]["proxy"]) == ("dns_failure", None)
    code, doc = diagnose(s, "--resolve", f"{s.host}:{s.port}:127.0.0.1")
    assert (code, doc["cause"], doc["target"]["proxy"]) == (0, "ok", None)
    # --no-proxy ignores the environment altogether
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HTTPS_PROXY", squid.url("auth"))
    code, doc = diagnose(s, "--no-proxy", "--resolve", f"{s.host}:{s.port}:127.0.0.1")
    assert (code, doc["cause"], doc["target"]["proxy"]) == (0, "ok", None)


def test_407_without_credentials_names_the_offered_schemes(tls_lab, squid):
    code, doc = diagnose(tls_lab.scenarios["healthy"], "--proxy", squid.url("auth"))
    assert (code, doc["cause"]) == (1, "proxy_auth_required")
    proxy = doc["evidence"]["proxy"]
    assert proxy["status"] == 407 and proxy["auth_schemes"] == ["Basic"] and proxy["credentials_sent"] is False
    assert "Basic" in doc["summary"] and "407" in doc["summary"]
    assert "--proxy-password-env" in doc["remediation"][0]
    assert doc["evidence"]["handshakes"] == 0


def test_basic_auth_with_the_password_by_name_opens_the_tunnel_and_a_wrong_one_is_407(tls_lab, squid, monkeypatch):
    s = tls_lab.scenarios["healthy"]
    monkeypatch.setenv("CXLAB_PROXY_PW", squid.password)
    code, doc = diagnose(s, "--proxy", squid.url("auth", PROXY_USER), "--proxy-password-env", "CXLAB_PROXY_PW")
    assert (code, doc["cause"]) == (0, "ok")
    assert doc["target"]["proxy"] == squid.url("auth", PROXY_USER)
    assert squid.wait_for_log(PROXY_USER, "TCP_TUNNEL/200")
    monkeypatch.setenv("CXLAB_PROXY_PW", "not-the-password")
    code, doc = diagnose(s, "--proxy", squid.url("auth", PROXY_USER), "--proxy-password-env", "CXLAB_PROXY_PW")
    assert (code, doc["cause"]) == (1, "proxy_auth_required")
    assert doc["evidence"]["proxy"]["credentials_sent"] is True
    assert "CXLAB_PROXY_PW" in doc["remediation"][0]
    # an environment proxy takes the same named password
    monkeypatch.setenv("CXLAB_PROXY_PW", squid.password)
    monkeypatch.setenv("HTTPS_PROXY", squid.url("auth", PROXY_USER))
    code, doc = diagnose(s, "--proxy-password-env", "CXLAB_PROXY_PW")
    assert (code, doc["cause"]) == (0, "ok")


def test_a_dstdomain_deny_is_proxy_refused_with_the_proxys_words(tls_lab, squid):
    code, doc = diagnose(tls_lab.scenarios["not_tls"], "--proxy", squid.url("plain"))
    assert (code, doc["cause"]) == (1, "proxy_refused")
    proxy = doc["evidence"]["proxy"]
    assert proxy["status"] == 403 and proxy["x_squid_error"].startswith("ERR_ACCESS_DENIED")
    assert proxy["body_first_line"] == "ERROR: The requested URL could not be retrieved"
    assert "403" in doc["summary"] and "network team" in doc["remediation"][0]
    assert any("NO_PROXY" in step for step in doc["remediation"])


def test_connect_to_a_closed_upstream_port_is_squids_503_upstream_failure(tls_lab, squid):
    s = tls_lab.scenarios["tcp_refused"]
    code, doc = diagnose(s, "--proxy", squid.url("plain"))
    assert (code, doc["cause"]) == (1, "proxy_upstream_failure")
    proxy = doc["evidence"]["proxy"]
    assert proxy["status"] == 503 and proxy["x_squid_error"] == "ERR_CONNECT_FAIL 111"
    assert "connection refused" in doc["summary"] and f"{s.host}:{s.port}" in doc["summary"]
    assert any("Ticket for the network team" in step for step in doc["remediation"])


def test_a_name_squid_cannot_resolve_is_upstream_failure_not_an_egress_rule(tls_lab, squid):
    """squid answers a CONNECT to a name it cannot resolve with its own error (500 ERR_CANNOT_FORWARD or
    503 ERR_DNS_FAIL): the proxy could not reach the target, not an access rule."""
    s = tls_lab.scenarios["healthy"]
    code, out, err = run_cli("diagnose", f"https://nosuch-name.cxlab.test:{s.port}", "--ca-bundle", s.ca_bundle,
                             "--json", "--proxy", squid.url("plain"), "--timeout", "10")
    doc = json.loads(out)
    assert (code, doc["cause"]) == (1, "proxy_upstream_failure"), doc["summary"]
    proxy = doc["evidence"]["proxy"]
    assert proxy["status"] >= 500
    assert proxy["x_squid_error"].split(" ")[0] in ("ERR_CANNOT_FORWARD", "ERR_DNS_FAIL")
    assert "could not reach nosuch-name.cxlab.test" in doc["summary"] and "egress rule" not in doc["summary"]
    assert not any("allow CONNECT" in step for step in doc["remediation"])


def test_a_silent_host_behind_the_tunnel_is_a_handshake_timeout_that_names_the_tunnel(tls_lab, squid):
    """Through a proxy the client has no address of the host: the summary names the tunnel (it said
    'TCP to None:PORT'), the advice the proxy's side."""
    s = tls_lab.scenarios["handshake_timeout"]
    code, doc = diagnose(s, "--proxy", squid.url("plain"), "--timeout", "2")
    assert (code, doc["cause"]) == (1, "handshake_timeout")
    assert "None" not in doc["summary"] and squid.url("plain") in doc["summary"]
    assert f"{s.host}:{s.port}" in doc["summary"] and "200" in doc["summary"]
    assert "proxy" in doc["remediation"][0] and "None" not in " ".join(doc["remediation"])


def test_a_proxy_that_refuses_or_does_not_speak_http_is_unreachable(tls_lab, squid):
    s = tls_lab.scenarios["healthy"]
    closed = tls_lab.scenarios["tcp_refused"]
    code, doc = diagnose(s, "--proxy", f"http://127.0.0.1:{closed.port}")
    assert (code, doc["cause"]) == (1, "proxy_unreachable")
    assert f"https://{s.host}:{s.port}/" in doc["remediation"][0]          # the curl hint keeps the port
    assert doc["evidence"]["proxy"]["step"] == "tcp" and "refused" in doc["summary"]
    code, doc = diagnose(s, "--proxy", f"http://127.0.0.1:{s.port}")   # a TLS server is no HTTP proxy
    assert (code, doc["cause"]) == (1, "proxy_unreachable")
    code, doc = diagnose(s, "--proxy", "http://proxy.nxdomain.invalid:3128")
    assert (code, doc["cause"]) == (1, "proxy_unreachable") and "does not resolve" in doc["summary"]


def test_a_silent_proxy_is_unreachable_within_the_timeout(tls_lab):
    s = tls_lab.scenarios["healthy"]
    silent = tls_lab.scenarios["handshake_timeout"]          # accepts TCP, never answers
    code, doc = diagnose(s, "--proxy", f"http://127.0.0.1:{silent.port}", "--timeout", "0.5")
    assert (code, doc["cause"]) == (1, "proxy_unreachable")
    assert "did not answer CONNECT" in doc["summary"]


def test_interception_through_the_proxy_is_proxy_interception_by_product(tls_lab, squid):
    s = tls_lab.scenarios["warn_tls12_only_policy"]       # any healthy lab host squid re-signs
    code, doc = diagnose(s, "--proxy", squid.url("bump"), ca=str(tls_lab.client_store))
    assert (code, doc["cause"]) == (1, "proxy_interception")
    assert "Zscaler" in doc["summary"] and doc["chain"][0]["issuer"].find("Zscaler Root CA") >= 0
    assert doc["target"]["proxy"] == squid.url("bump")
    # the spliced name goes through untouched on the same port
    code, doc = diagnose(tls_lab.scenarios["healthy"], "--proxy", squid.url("bump"))
    assert (code, doc["cause"]) == (0, "ok")
    assert "CX Lab Public" in doc["chain"][0]["issuer"]


def test_a_trusted_neutral_inspection_ca_is_caught_by_expect_issuer(tls_lab, squid):
    s = tls_lab.scenarios["pin_mismatch"]                   # a healthy host (pins are not passed here)
    code, doc = diagnose(s, "--proxy", squid.url("bump_neutral"), ca=str(squid.neutral_ca_pem))
    assert (code, doc["cause"]) == (0, "ok")                # the client trusts the neutral CA: verified
    code, doc = diagnose(s, "--proxy", squid.url("bump_neutral"), "--expect-issuer", "CX Lab Public",
                         ca=str(squid.neutral_ca_pem))
    assert (code, doc["cause"]) == (1, "proxy_interception")
    assert "Northwind" in doc["summary"]


@pytest.mark.parametrize("argv, words", [
    (("--proxy", "socks5://127.0.0.1:1080"), "SOCKS proxies are not supported"),
    (("--proxy", "https://127.0.0.1:3128"), "https:// proxies"),
    (("--proxy", "http://wpad.corp.test/wpad.dat"), "PAC file"),
    (("--proxy", "http://127.0.0.1:notaport"), "invalid port"),
    (("--proxy", "http://jane:pw-9f8e7d@127.0.0.1:3128"), "holds a password"),
    (("--proxy", "http://jane@127.0.0.1:3128", "--proxy-password-env", "CXLAB_UNSET_PW"), "CXLAB_UNSET_PW is not set"),
    (("--proxy", "http://jane@127.0.0.1:3128", "--proxy-password-env", "not a name"), "not an environment variable"),
])
def test_bad_proxy_input_is_one_line_and_exit_2(tls_lab, argv, words, monkeypatch):
    monkeypatch.delenv("CXLAB_UNSET_PW", raising=False)
    code, out, err = run_cli("diagnose", tls_lab.scenarios["healthy"].target, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and words in err and "pw-9f8e7d" not in err


def test_a_bad_environment_proxy_is_exit_2_unless_ignored(tls_lab, monkeypatch):
    s = tls_lab.scenarios["healthy"]
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    code, _, err = run_cli("diagnose", s.target)
    assert code == 2 and "$ALL_PROXY" in err and "SOCKS" in err
    code, out, err = run_cli("diagnose", s.target, "--no-proxy", "--resolve", f"{s.host}:{s.port}:127.0.0.1",
                             "--ca-bundle", s.ca_bundle)
    assert code == 0, err


def test_the_proxy_password_appears_in_no_output_json_or_text(tls_lab, squid, monkeypatch):
    """The password in HTTPS_PROXY (curl's convention) and by name: used on the wire, shown nowhere."""
    s = tls_lab.scenarios["healthy"]
    monkeypatch.setenv("HTTPS_PROXY", f"http://{PROXY_USER}:{squid.password}@127.0.0.1:{squid.ports['auth']}")
    code, out, err = run_cli("diagnose", s.target, "--ca-bundle", s.ca_bundle, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["target"]["proxy"] == squid.url("auth", PROXY_USER)
    assert doc["evidence"]["proxy"]["password_from"] == "$HTTPS_PROXY"
    code, text, err2 = run_cli("diagnose", s.target, "--ca-bundle", s.ca_bundle)
    assert code == 0 and f"via proxy {squid.url('auth', PROXY_USER)}" in text
    monkeypatch.setenv("HTTPS_PROXY", squid.url("auth", PROXY_USER))
    monkeypatch.setenv("CXLAB_PROXY_PW", squid.password + "-wrong")
    code, out3, err3 = run_cli("diagnose", s.target, "--ca-bundle", s.ca_bundle, "--json",
                               "--proxy-password-env", "CXLAB_PROXY_PW")
    assert code == 1 and json.loads(out3)["cause"] == "proxy_auth_required"
    monkeypatch.setenv("HTTPS_PROXY", f"http://{PROXY_USER}:{squid.password}@127.0.0.1:notaport")
    code, out4, err4 = run_cli("diagnose", s.target)
    assert code == 2 and "invalid port" in err4
    for blob in (out, err, text, err2, out3, err3, out4, err4):
        assert squid.password not in blob


def test_a_missing_intermediate_is_fetched_through_the_proxy(tls_lab, squid):
    s = tls_lab.scenarios["incomplete_chain"]
    code, doc = diagnose(s, "--proxy", squid.url("plain"), "--reference-ca-bundle", s.reference_ca_bundle)
    assert (code, doc["cause"]) == (1, "incomplete_chain")
    [record] = doc["evidence"]["aia"]
    assert record["ok"] is True and record["proxy"] == squid.url("plain")
    assert squid.wait_for_log("GET " + s.aia_url)


def test_the_text_report_names_the_proxy_and_its_answer(tls_lab, squid):
    s = tls_lab.scenarios["healthy"]
    code, out, err = run_cli("diagnose", s.target, "--ca-bundle", s.ca_bundle, "--proxy", squid.url("auth"))
    assert code == 1 and err == ""
    assert f"FAIL {s.host}:{s.port} via proxy {squid.url('auth')} -- proxy_auth_required" in out
    assert "the proxy answered 'HTTP/1.1 407 Proxy Authentication Required' offering Basic" in out


def test_a_proxy_user_without_a_password_is_told_so(tls_lab, squid):
    code, doc = diagnose(tls_lab.scenarios["healthy"], "--proxy", squid.url("auth", PROXY_USER))
    assert (code, doc["cause"]) == (1, "proxy_auth_required")
    assert doc["evidence"]["proxy"]["credentials_sent"] is False
    assert "without a password" in doc["summary"] and "--proxy-password-env" in doc["remediation"][0]
