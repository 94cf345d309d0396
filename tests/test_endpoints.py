"""Endpoint checks against the fake platform: per-connection TLS facts, the guide's
TLS 1.2-only trap diagnosed by the engine, 401/503/504/slow answers, NICE discovery."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import lab_target

from cxhealth.lab.fake_platform import GENESYS_API, GENESYS_LOGIN, GENESYS_TLS13, NICE_API, FakePlatform, Reply
from cxhealth.tasks.checks.endpoints import check_endpoints, run_http_checks
from cxhealth.tasks.checks.http import build_client, client_for, hostname_matches
from cxhealth.tasks.checks.oauth import check_token
from cxhealth.tasks.checks.retry import FakeClock, RetryPolicy


@pytest.fixture(scope="module")
def fake():
    with FakePlatform() as platform:
        yield platform


@pytest.fixture(autouse=True)
def _fresh(fake):
    fake.reset()


def checks(target, env, **kw):
    kw.setdefault("clock", FakeClock())
    return asyncio.run(run_http_checks(target, env=env, **kw))


def test_each_request_reports_status_latency_and_its_connections_tls(fake):
    result = checks(lab_target(fake, "genesys", tls_max="1.2"), fake.env())

    assert result.ok
    assert result.oauth.protocol == "TLSv1.2"
    for endpoint in result.endpoints:
        assert endpoint.status == 200 and endpoint.ms is not None and endpoint.ms >= 0
        assert endpoint.protocol == "TLSv1.2" and endpoint.cipher.startswith("ECDHE-")
        assert endpoint.cause == "ok" and endpoint.attempts == 1
    assert [e.path for e in result.endpoints] == ["/api/v2/organizations/me", "/api/v2/flows?pageSize=1"]
    assert [r.headers["authorization"].split()[0] for r in fake.requests if r.host == GENESYS_API] == ["Bearer"] * 2
    d = result.to_dict()["endpoints"][0]
    assert {"path", "ok", "status", "ms", "protocol", "cipher", "cause", "attempts"} <= set(d)


def test_the_guides_tls12_only_trap_token_ok_downstream_tls13_cluster_diagnosed(fake):
    # Given a client capped at TLS 1.2, and a gateway routing /flows to a TLS 1.3-only cluster
    target = lab_target(fake, "genesys", tls_max="1.2", endpoints=[
        "/api/v2/organizations/me",
        fake.url(GENESYS_TLS13, "/api/v2/flows?pageSize=1"),
        fake.url(GENESYS_TLS13, "/api/v2/tokens/me"),
    ])
    # When the health check runs
    result = checks(target, fake.env())
    # Then the token and the first endpoint succeed on TLS 1.2 ...
    assert result.oauth.ok and result.oauth.protocol == "TLSv1.2"
    orgs, flows, tokens_me = result.endpoints
    assert orgs.ok and orgs.protocol == "TLSv1.2"
    # ... and the cluster fails with the root cause and a fix in the client policy, not "connect error"
    assert not flows.ok and flows.cause == "protocol_version_mismatch" and flows.attempts == 1
    assert any("TLS 1.3" in step and "tls_max" in step for step in flows.remediation)
    assert flows.diagnosis is not None and flows.diagnosis["cause"] == "protocol_version_mismatch"
    # ... the host's other endpoint is not attempted again
    assert tokens_me.skipped and tokens_me.attempts == 0 and tokens_me.cause == "protocol_version_mismatch"
    assert fake.count(server="tls13") == 0
    # And with the maximum at 1.3 the same endpoints pass, over TLS 1.3
    fixed = checks(target.__class__(**{**target.to_dict(), "tls_max": "1.3"}), fake.env())
    assert fixed.ok and fixed.endpoints[1].protocol == "TLSv1.3"
    assert fake.count(server="tls13") == 2


def test_a_401_is_a_clear_result(fake):
    target = lab_target(fake, "genesys")

    async def go():
        async with client_for(target) as client:
            check = await check_token(target, client=client, env=fake.env(), clock=FakeClock())
            fake.revoke_tokens()
            return await check_endpoints(target, check.token, client=client, clock=FakeClock())

    orgs, flows = asyncio.run(go())
    assert (orgs.ok, orgs.status, orgs.error, orgs.cause, orgs.attempts) == (False, 401, "unauthorized", "ok", 1)
    assert "token was refused" in orgs.summary
    assert flows.status == 401 and fake.count(path="/api/v2/flows") == 1


def test_503_burst_on_an_endpoint_is_retried_and_counted(fake):
    fake.fail("/api/v2/organizations/me", 503, times=2)
    clock = FakeClock()
    result = checks(lab_target(fake, "genesys"), fake.env(), clock=clock)
    orgs = result.endpoints[0]
    assert orgs.ok and orgs.attempts == 3 and orgs.waits_s == (0.5, 1.0)
    assert fake.count(path="/api/v2/organizations/me") == 3
    assert clock.sleeps == [0.5, 1.0]


def test_504_storm_stops_at_the_policy_and_every_attempt_reached_the_platform(fake):
    fake.fail("/api/v2/flows", 504, times=10)
    result = checks(lab_target(fake, "genesys"), fake.env(), retry_policy=RetryPolicy(max_attempts=3))
    flows = result.endpoints[1]
    assert (flows.ok, flows.status, flows.error, flows.attempts, flows.stopped) == (False, 504, "http_504", 3,
                                                                                    "max_attempts")
    assert fake.count(path="/api/v2/flows") == 3


def test_429_on_an_endpoint_waits_as_asked(fake):
    fake.rate_limit("/api/v2/flows", retry_after="3")
    result = checks(lab_target(fake, "genesys"), fake.env())
    assert result.endpoints[1].ok and result.endpoints[1].waits_s == (3.0,)


def test_a_slow_endpoint_times_out_on_read_and_is_not_retried(fake):
    fake.set_delay("/api/v2/flows", 1.0)
    target = lab_target(fake, "genesys")

    async def go():
        async with client_for(target, timeout=httpx.Timeout(2.0, read=0.2)) as client:
            return await run_http_checks(target, env=fake.env(), client=client, clock=FakeClock())

    result = asyncio.run(go())
    flows = result.endpoints[1]
    assert (flows.ok, flows.error, flows.attempts, flows.cause) == (False, "read_timeout", 1, None)
    assert fake.count(path="/api/v2/flows") == 1


def test_nice_discovers_its_api_base_then_checks_server_time(fake):
    result = checks(lab_target(fake, "nice"), fake.env())
    discovery, server_time = result.endpoints
    assert discovery.ok and discovery.path == "/.well-known/cxone-configuration"
    assert server_time.ok and server_time.host == NICE_API
    (req,) = [r for r in fake.requests if r.path == "/.well-known/cxone-configuration"]
    assert req.query == {"tenantId": [fake.credentials.nice_tenant_id]}
    assert "authorization" not in req.headers  # discovery is public: no token sent


def test_nice_discovery_failure_skips_the_api_endpoints(fake):
    result = checks(lab_target(fake, "nice", tenant_id="unknown-tenant"), fake.env())
    discovery, server_time = result.endpoints
    assert (discovery.ok, discovery.status) == (False, 404)
    assert server_time.skipped and server_time.error == "discovery_failed"
    assert fake.count(host=NICE_API) == 0


def test_nice_with_api_base_skips_discovery(fake):
    result = checks(lab_target(fake, "nice", api_base=fake.url(NICE_API)), fake.env())
    assert result.ok and [e.host for e in result.endpoints] == [NICE_API]


def test_resolve_dials_the_address_but_keeps_the_host_for_sni_and_host_header(fake):
    target = lab_target(fake, "genesys")

    async def go():
        async with client_for(target) as client:
            response = await client.get(fake.url(GENESYS_API, "/api/v2/organizations/me"))
            return client._transport.backend.dialled, response.status_code  # type: ignore[attr-defined]

    dialled, status = asyncio.run(go())
    assert status == 401  # no token: but the request got there
    assert dialled == [(GENESYS_API, fake.port, "127.0.0.1")]
    (req,) = fake.requests
    assert (req.host, req.sni) == (GENESYS_API, GENESYS_API)


def test_build_client_sets_every_timeout_and_follows_no_redirects(fake):
    client = build_client(lab_target(fake, "genesys").policy())
    try:
        t = client.timeout
        assert None not in (t.connect, t.read, t.write, t.pool)
        assert client.follow_redirects is False and client.trust_env is False
    finally:
        asyncio.run(client.aclose())


def test_schedules_page_and_can_break_midway(fake):
    target = lab_target(fake, "genesys")
    path = fake.schedules_path()

    async def go(pages):
        async with client_for(target) as client:
            check = await check_token(target, client=client, env=fake.env(), clock=FakeClock())
            headers = {"Authorization": check.token.authorization()}
            return [await client.get(fake.url(GENESYS_API, path), params={"pageNumber": p, "pageSize": 2},
                                     headers=headers) for p in pages]

    pages = asyncio.run(go([1, 2, 3]))
    rows = [row for page in pages for row in page.json()["entities"]]
    assert rows == fake.schedule_rows and pages[0].json()["pageCount"] == 3
    fake.break_schedules(after_pages=1, reply=Reply(503))
    assert [p.status_code for p in asyncio.run(go([1, 2]))] == [200, 503]


@pytest.mark.parametrize("sans, host, expected", [
    ([("DNS", "api.example.com")], "api.example.com", True),
    ([("DNS", "API.Example.com")], "api.example.com.", True),
    ([("DNS", "*.example.com")], "api.example.com", True),
    ([("DNS", "*.example.com")], "a.b.example.com", False),
    ([("DNS", "*.example.com")], "example.com", False),
    ([("DNS", "*.com")], "example.com", False),
    ([("DNS", "a*.example.com")], "ab.example.com", False),
    ([("IP Address", "127.0.0.1")], "127.0.0.1", True),
    ([("DNS", "127.0.0.1")], "127.0.0.1", False),
    ([("DNS", GENESYS_LOGIN)], "login.other.test", False),
])
def test_real_host_name_check_for_sni_overrides(sans, host, expected):
    assert hostname_matches({"subjectAltName": tuple(sans)}, host) is expected


def test_a_keepalive_connection_the_server_closed_is_replaced_and_the_get_sent_once_more(fake):
    # Given a server that closes the kept-alive connection as the second GET arrives on it
    # (its idle timeout ran out as the client took the connection from its pool)
    fake.script("/api/v2/flows", Reply(0, close=True))
    result = checks(lab_target(fake, "genesys"), fake.env())
    # Then the GET is sent again on a new connection and the endpoint is healthy
    orgs, flows = result.endpoints
    assert result.ok and flows.ok and flows.status == 200 and flows.attempts == 1
    assert fake.count(path="/api/v2/flows") == 2
    # ... its new connection's handshake is the one recorded (the first GET's connection was reused)
    assert orgs.tls is not None and flows.tls is not None


def test_a_server_that_hangs_up_on_every_get_is_sent_it_at_most_twice_and_fails(fake):
    # The replay is once, and never on a new connection: a new connection's failure is the answer
    fake.script("/api/v2/flows", *[Reply(0, close=True)] * 5)
    result = checks(lab_target(fake, "genesys"), fake.env())
    flows = result.endpoints[1]
    assert not flows.ok and flows.error == "remote_protocol_error"
    assert fake.count(path="/api/v2/flows") == 2


def test_a_hang_up_on_a_new_connection_is_not_sent_again(fake):
    fake.script("/api/v2/organizations/me", Reply(0, close=True))
    result = checks(lab_target(fake, "genesys"), fake.env())
    orgs = result.endpoints[0]
    assert not orgs.ok and orgs.error == "remote_protocol_error"
    assert fake.count(path="/api/v2/organizations/me") == 1
