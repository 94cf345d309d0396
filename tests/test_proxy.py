"""The proxy as a value: curl's environment rules, URL checks, the CONNECT exchange (pure, no network)."""

from __future__ import annotations

import asyncio
import base64

import pytest

from cxhealth.tasks.tls.connection import exchange_connect
from cxhealth.tasks.tls.model import Endpoint
from cxhealth.tasks.tls.proxy import (DIRECT, NotHTTPAnswer, ProxyConfigError, ProxySettings, body_first_line,
                                      choose_proxy, connect_request, no_proxy_matches, parse_proxy_url, route,
                                      settings_from_options)

# --- NO_PROXY: curl's semantics ------------------------------------------------------------------


# Each row as curl 7.88.1 (Debian's) decided it: `env -i HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=... curl -v
# https://HOST:4443/` tries the proxy's port 9 or goes direct (for the names: "Could not resolve host").
@pytest.mark.parametrize("host, port, no_proxy, expected", [
    ("example.com", 443, "example.com", True),              # exact
    ("api.example.com", 443, "example.com", True),          # suffix at a label boundary
    ("notexample.com", 443, "example.com", False),          # never a bare string suffix
    ("api.example.com", 443, ".example.com", True),         # leading dot
    ("example.com", 443, ".example.com", True),             # curl strips the dot: the domain itself too
    ("api.example.com", 443, "*.example.com", False),       # curl: only a lone * is a wildcard
    ("api.example.com", 443, "*example.com", False),
    ("API.Example.COM.", 443, "example.com.", True),        # case and trailing dots ignored
    ("good.example.test", 443, "Good.Example.Test", True),
    ("anything.test", 443, "*", True),                      # everything
    ("anything.test", 443, " *", False),                    # ... only as the whole value
    ("anything.test", 443, "* ", False),
    ("anything.test", 443, "other.test,*", False),
    ("anything.test", 443, "other.test *", False),
    ("a.test", 443, "b.test, a.test", True),                # comma and blanks
    ("a.test", 443, "b.test a.test", True),                 # blanks alone separate too (curl 7.86+)
    ("a.test", 443, "\ta.test", True),
    ("a.test", 443, "b.test;a.test", False),                # no other separator
    ("a.test", 443, "", False),
    ("a.test", 443, " , ,", False),
    ("a.test", 443, ".", False),
    ("api.example.com", 443, "example.com:443", False),     # curl never matches an entry with a port
    ("api.example.com", 8443, "example.com:443", False),
    ("127.0.0.1", 4443, "127.0.0.1:4443", False),
    ("10.1.2.3", 443, "10.0.0.0/8", True),                  # CIDR for IP hosts
    ("127.0.0.1", 443, "127.0.0.1/32", True),
    ("10.1.2.3", 443, "10.1.2.3", True),
    ("11.1.2.3", 443, "10.0.0.0/8", False),
    ("127.0.0.1", 443, "localhost", False),                 # no name lookup
    ("::1", 443, "::1", True),
    ("[::1]", 443, "::1", True),
    ("[::1]", 443, "[::1]", False),                         # curl: a bracketed entry never matches
    ("[::1]", 443, "[::1]:443", False),
    ("10.1.2.3", 443, "example.com", False),
    ("example.com", 443, "10.0.0.0/8", False),
])
def test_no_proxy_follows_curl(host, port, no_proxy, expected):
    assert no_proxy_matches(host, port, no_proxy) is expected


def test_the_environment_picks_the_https_proxy_in_curls_order():
    env = {"ALL_PROXY": "http://all:1", "HTTPS_PROXY": "http://upper:2", "https_proxy": "http://lower:3"}
    assert choose_proxy("a.test", 443, ProxySettings(), env).host == "lower"
    del env["https_proxy"]
    assert choose_proxy("a.test", 443, ProxySettings(), env).host == "upper"
    del env["HTTPS_PROXY"]
    assert choose_proxy("a.test", 443, ProxySettings(), env).host == "all"
    # http_proxy is for http:// URLs: an https target never uses it
    assert choose_proxy("a.test", 443, ProxySettings(), {"http_proxy": "http://p:1"}) is None


def test_no_proxy_exempts_from_the_environment_and_from_an_explicit_proxy_but_not_with_no_proxy_flag():
    env = {"HTTPS_PROXY": "http://envproxy:3128", "NO_PROXY": ".corp.test"}
    explicit = parse_proxy_url("http://cli:8080")
    assert choose_proxy("api.corp.test", 443, ProxySettings(), env) is None
    assert choose_proxy("api.other.test", 443, ProxySettings(), env).host == "envproxy"
    assert choose_proxy("api.corp.test", 443, ProxySettings(explicit=explicit), env) is None  # as curl -x
    assert choose_proxy("api.other.test", 443, ProxySettings(explicit=explicit), env).host == "cli"
    # --no-proxy: the environment is ignored entirely (its proxy and its NO_PROXY)
    assert choose_proxy("api.other.test", 443, DIRECT, env) is None
    assert choose_proxy("api.corp.test", 443, ProxySettings(explicit=explicit, ignore_environment=True), env).host == "cli"


def test_no_proxy_then_NO_PROXY_as_curl_reads_them():
    """curl 7.88.1 with HTTPS_PROXY set: no_proxy=other.test NO_PROXY=good.example.test -> proxy (the lowercase one
    wins); no_proxy= (empty) NO_PROXY=good.example.test -> direct (an empty value is unset to curl_getenv);
    no_proxy=' ' NO_PROXY=good.example.test -> proxy (a blank is a value, matching nothing)."""
    base = {"HTTPS_PROXY": "http://envproxy:3128", "NO_PROXY": "good.example.test"}
    pick = lambda extra: choose_proxy("good.example.test", 443, ProxySettings(), {**base, **extra})  # noqa: E731
    assert pick({}) is None
    assert pick({"no_proxy": "other.test"}).host == "envproxy"
    assert pick({"no_proxy": ""}) is None
    assert pick({"no_proxy": " "}).host == "envproxy"


def test_proxy_urls_default_like_curl_and_show_no_password():
    p = parse_proxy_url("proxy.corp.test:3128")
    assert (p.host, p.port, p.url) == ("proxy.corp.test", 3128, "http://proxy.corp.test:3128")
    assert parse_proxy_url("http://proxy.corp.test").port == 1080  # curl's default proxy port
    p = parse_proxy_url("http://CORP%5Cjane@proxy:3128", password_env="PW")
    assert p.username == "CORP\\jane" and p.password_env == "PW"
    env_url = parse_proxy_url("http://jane:s3cr%40t@proxy:3128", source="$HTTPS_PROXY", allow_password=True)
    assert env_url.url == "http://jane@proxy:3128" and "s3cr" not in repr(env_url)


@pytest.mark.parametrize("url, words", [
    ("https://proxy:3128", "https:// proxies"),
    ("socks5://proxy:1080", "SOCKS"),
    ("socks4://proxy:1080", "SOCKS"),
    ("http://wpad.corp.test/proxy.pac", "PAC file"),
    ("file:///etc/proxy.pac", "PAC file"),
    ("http://proxy:99999", "port"),
    ("http://proxy:abc", "port"),
    ("http://", "not a proxy URL"),
    ("http://proxy:3128/some/path", "not a proxy URL"),
])
def test_unsupported_or_malformed_proxy_urls_are_one_line_errors(url, words):
    with pytest.raises(ProxyConfigError) as err:
        parse_proxy_url(url)
    text = str(err.value)
    assert words in text and "\n" not in text
    if "PAC" not in words and "SOCKS" not in words and "https" not in words:
        assert "http://[user@]host:port" in text or "1-65535" in text


def test_a_password_in_the_proxy_url_is_refused_without_repeating_it():
    with pytest.raises(ProxyConfigError) as err:
        parse_proxy_url("http://jane:hunter2-secret@proxy:3128")
    assert "hunter2" not in str(err.value) and "--proxy-password-env" in str(err.value)
    with pytest.raises(ProxyConfigError) as err:
        parse_proxy_url("socks5://jane:hunter2-secret@proxy:1080")
    assert "hunter2" not in str(err.value)


def test_password_variable_checks():
    with pytest.raises(ProxyConfigError, match="PW_UNSET is not set"):
        settings_from_options("http://jane@proxy:3128", "PW_UNSET", False, {})
    with pytest.raises(ProxyConfigError, match="is empty"):
        settings_from_options("http://jane@proxy:3128", "PW", False, {"PW": ""})
    with pytest.raises(ProxyConfigError, match="needs a user name"):
        settings_from_options("http://proxy:3128", "PW", False, {"PW": "x"})
    with pytest.raises(ProxyConfigError, match="no proxy is in use"):
        settings_from_options(None, "PW", False, {"PW": "x"})
    with pytest.raises(ProxyConfigError, match="SOCKS"):  # an unusable environment proxy is found up front
        settings_from_options(None, None, False, {"ALL_PROXY": "socks5://p:1080"})
    assert settings_from_options(None, None, True, {"ALL_PROXY": "socks5://p:1080"}).ignore_environment


def test_connect_request_sends_basic_auth_with_the_password_read_by_name():
    proxy = parse_proxy_url("http://jane@proxy:3128", password_env="PW")
    raw = connect_request("api.example.com", 443, proxy, {"PW": "pa:ss"}).decode()
    assert raw.startswith("CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n")
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'jane:pa:ss').decode()}\r\n" in raw
    assert "Proxy-Authorization" not in connect_request("h", 443, parse_proxy_url("http://proxy:1"), {}).decode()
    assert connect_request("::1", 443, parse_proxy_url("http://proxy:1"), {}).startswith(b"CONNECT [::1]:443 ")


def test_route_sends_the_target_name_to_the_proxy_and_pins_only_the_proxy_address():
    settings = ProxySettings(explicit=parse_proxy_url("http://proxy.corp.test:3128"))
    ep = Endpoint("api.example.com", 443, address="192.0.2.7")
    routed = route(ep, settings, {("api.example.com", 443): "192.0.2.7", ("proxy.corp.test", 3128): "10.0.0.9"}, {})
    assert routed.address is None and routed.proxy.address == "10.0.0.9"     # as curl: CONNECT by name
    assert routed.to_dict()["proxy"] == "http://proxy.corp.test:3128"
    assert route(ep, DIRECT, {}, {"HTTPS_PROXY": "http://p:1"}) is ep


def _exchange(answer: bytes, **kw):
    sent: list[bytes] = []
    chunks = [answer[i:i + 7] for i in range(0, len(answer), 7)]

    async def send(data: bytes) -> None:
        sent.append(data)

    async def recv(n: int) -> bytes:
        return chunks.pop(0) if chunks else b""

    result = asyncio.run(exchange_connect(send, recv, "api.example.com", 443, parse_proxy_url("http://p:1"), {}))
    return result, sent


def test_the_proxys_answer_is_read_as_evidence():
    ok, sent = _exchange(b"HTTP/1.1 200 Connection established\r\n\r\n")
    assert ok.ok and sent[0].startswith(b"CONNECT api.example.com:443")
    body = b"<html><head><title>ERROR: Cache Access Denied</title></head><body>x</body></html>"
    answer, _ = _exchange(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\n"
                          b"Proxy-Authenticate: NTLM\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.status == 407 and answer.auth_schemes == ["Negotiate", "NTLM", "Basic"]
    assert answer.body_first_line == "ERROR: Cache Access Denied"
    with pytest.raises(NotHTTPAnswer):
        _exchange(b"\x15\x03\x03\x00\x02\x02\x46")  # a TLS alert: not an HTTP proxy
    with pytest.raises(EOFError):
        _exchange(b"")


def test_body_first_line_of_plain_text_and_html():
    assert body_first_line(b"\n\n  Access denied by policy 42\nmore") == "Access denied by policy 42"
    assert body_first_line(b"<html><body><h1>Blocked</h1><p>by rule</p></body></html>") == "Blocked"


def test_targets_proxy_keys_pick_the_proxy_per_target(monkeypatch):
    from cxhealth.tasks.targets import parse_targets

    monkeypatch.setenv("HTTPS_PROXY", "http://envproxy.corp.test:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("CXP_PW_UNSET", raising=False)
    common = {"platform": "generic", "client_id": "c", "client_secret_env": "S",
              "token_url": "https://auth.example.com/oauth/token", "api_base": "https://api.example.com"}
    config = parse_targets({
        "defaults": {"proxy": "http://svc@proxy.corp.test:8080", "proxy_password_env": "CXP_PW_UNSET"},
        "target": [{"name": "via-defaults", **common}, {"name": "direct", "no_proxy": True, **common},
                   {"name": "from-env", "proxy_password_env": None, **common}],
    })
    via, direct, _ = config.targets
    ep = via.endpoint_for("auth.example.com")
    assert ep.proxy.url == "http://svc@proxy.corp.test:8080" and ep.proxy.password_env == "CXP_PW_UNSET"
    assert direct.endpoint_for("auth.example.com").proxy is None      # no_proxy = true: direct, env ignored
    direct.check_proxy()                                               # its [defaults] password var is moot
    with pytest.raises(Exception, match="CXP_PW_UNSET is not set"):
        via.check_proxy()


@pytest.mark.parametrize("status, squid_error, kind", [
    (500, "ERR_CANNOT_FORWARD 0", "proxy_upstream_failure"),   # squid could not forward: no DNS answer / no route
    (503, "ERR_DNS_FAIL 0", "proxy_upstream_failure"),
    (503, "ERR_CONNECT_FAIL 111", "proxy_upstream_failure"),
    (504, "ERR_READ_TIMEOUT 0", "proxy_upstream_failure"),
    (502, "ERR_GATEWAY_FAILURE 0", "proxy_upstream_failure"),
    (503, "ERR_SECURE_CONNECT_FAIL 0", "proxy_upstream_failure"),
    (403, "ERR_ACCESS_DENIED 0", "proxy_refused"),
    (400, "ERR_INVALID_URL 0", "proxy_refused"),
    (500, "ERR_ACCESS_DENIED 0", "proxy_refused"),             # a known refusal marker decides over the status
    (407, "ERR_CACHE_ACCESS_DENIED 0", "proxy_auth_required"),
    (403, "ERR_CACHE_ACCESS_DENIED 0", "proxy_auth_required"),
    (500, None, "proxy_upstream_failure"),                     # a 5xx without a refusal marker
    (500, "ERR_SOMETHING_NEW 0", "proxy_upstream_failure"),
    (502, None, "proxy_upstream_failure"),
    (403, None, "proxy_refused"),
    (405, None, "proxy_refused"),
    (301, None, "proxy_refused"),
    (407, None, "proxy_auth_required"),
])
def test_the_proxys_answer_maps_to_a_cause_by_squids_error_name_then_status(status, squid_error, kind):
    from cxhealth.tasks.tls.proxy import ProxyAnswer, kind_of_answer

    headers = (("X-Squid-Error", squid_error),) if squid_error else ()
    assert kind_of_answer(ProxyAnswer(status, f"HTTP/1.1 {status} X", headers)) == kind


def test_an_upstream_failure_summary_names_squids_reason_and_no_egress_rule():
    from cxhealth.tasks.tls.model import Cause
    from cxhealth.tasks.tls.proxy_causes import proxy_remediation, proxy_verdict

    ev = {"url": "http://127.0.0.1:3128", "source": "--proxy", "status_line": "HTTP/1.1 500 Internal Server Error",
          "x_squid_error": "ERR_CANNOT_FORWARD 0", "body_first_line": "ERROR: The requested URL could not be retrieved"}
    cause, summary, details = proxy_verdict("proxy_upstream_failure", None, ev, "nosuch.example.test", 443)
    assert cause is Cause.PROXY_UPSTREAM_FAILURE
    assert "could not reach nosuch.example.test:443" in summary and "ERR_CANNOT_FORWARD" in summary
    steps = proxy_remediation(cause, details, "nosuch.example.test")
    assert not any("allow CONNECT" in s for s in steps) and "--resolve" in steps[0]


def test_a_password_from_the_environment_url_is_named_with_one_dollar():
    p = parse_proxy_url("http://svc:pw-1@proxy.corp.test:3128", source="$HTTPS_PROXY", allow_password=True)
    assert p.describe()["password_from"] == "$HTTPS_PROXY"
    from cxhealth.tasks.tls.model import Cause
    from cxhealth.tasks.tls.proxy_causes import proxy_remediation, proxy_verdict

    ev = {**p.describe(), "status_line": "HTTP/1.1 407 Proxy Authentication Required", "auth_schemes": ["Basic"],
          "credentials_sent": True}
    cause, _, details = proxy_verdict("proxy_auth_required", None, ev, "api.example.com", 443)
    steps = " ".join(proxy_remediation(cause, details, "api.example.com"))
    assert "$HTTPS_PROXY" in steps and "$$" not in steps


def test_a_password_in_a_targets_proxy_url_names_the_targets_key_first():
    with pytest.raises(ProxyConfigError) as err:
        parse_proxy_url("http://u:pw-2@p:3128", source="target 'x': proxy")
    assert str(err.value).index("proxy_password_env =") < str(err.value).index("--proxy-password-env")
    with pytest.raises(ProxyConfigError) as err:
        parse_proxy_url("http://u:pw-2@p:3128", source="--proxy")
    assert str(err.value).index("--proxy-password-env") < str(err.value).index("proxy_password_env =")
