"""The OAuth token smoke test against the fake platform's real TLS servers.

Request shapes per platform as the fake receives them; error codes surfaced;
token_type/expires_in validated; a canary secret never in results, logs or
exception text; no credential ever sent over an unverified connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import httpx
import pytest

from tests.conftest import lab_target

from cxhealth.lab.fake_platform import (GENESYS_API, GENESYS_LOGIN, GENESYS_TLS13, NICE_ISSUER, PARTNER_AUTH, FakeCredentials,
                               FakePlatform, Reply)
from cxhealth.lab.pki import CA, write_bundle
from cxhealth.tasks.checks.endpoints import run_http_checks
from cxhealth.tasks.checks.oauth import check_token
from cxhealth.tasks.checks.retry import FakeClock
from cxhealth.tasks.targets import TargetConfigError

CANARY = "CANARY-5ecret-9b41d7"
CANARY_KEY = "CANARY-accesskey-77e0c2"


@pytest.fixture(scope="module")
def fake():
    creds = FakeCredentials(genesys_client_secret=CANARY + "-g", nice_client_secret=CANARY + "-n",
                            nice_access_key_secret=CANARY_KEY, partner_client_secret=CANARY + "-p")
    with FakePlatform(creds) as platform:
        yield platform


@pytest.fixture(autouse=True)
def _fresh(fake):
    fake.reset()


def token(target, env, **kw):
    return asyncio.run(check_token(target, env=env, clock=FakeClock(), **kw))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- request shapes -------------------------------------------------------------

def test_genesys_token_request_is_client_credentials_with_basic_auth_on_the_login_host(fake):
    check = token(lab_target(fake, "genesys"), fake.env())

    assert check.result.ok and check.result.status == 200 and check.result.attempts == 1
    assert (check.result.token_type, check.result.expires_in) == ("bearer", 86400)
    (req,) = fake.token_requests
    assert (req.method, req.host, req.path) == ("POST", GENESYS_LOGIN, "/oauth/token")
    assert req.headers["authorization"] == basic(fake.credentials.genesys_client_id, CANARY + "-g")
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.form == {"grant_type": "client_credentials"}  # no secret in the body
    assert req.sni == GENESYS_LOGIN  # resolve changes only the address dialled
    assert check.result.protocol in ("TLSv1.2", "TLSv1.3") and check.result.cipher


def test_nice_token_request_is_the_password_grant_with_the_access_key(fake):
    check = token(lab_target(fake, "nice"), fake.env())

    assert check.result.ok and check.result.grant == "password"
    assert (check.result.token_type, check.result.expires_in) == ("Bearer", 3600)
    assert check.token is not None and check.token.tenant_id == fake.credentials.nice_tenant_id
    (req,) = fake.token_requests
    assert (req.method, req.host, req.path) == ("POST", NICE_ISSUER, "/auth/token")
    assert req.headers["authorization"] == basic(fake.credentials.nice_client_id, CANARY + "-n")
    assert req.form == {"grant_type": "password", "username": fake.credentials.nice_access_key_id,
                        "password": CANARY_KEY}


@pytest.mark.parametrize("grant", ["client_credentials", "password"])
def test_generic_token_request_uses_the_configured_grant(fake, grant):
    extra = {} if grant == "client_credentials" else {
        "grant": "password", "access_key_id": fake.credentials.nice_access_key_id,
        "access_key_secret_env": "LAB_NICE_ACCESS_KEY_SECRET"}
    check = token(lab_target(fake, "generic", **extra), fake.env())

    assert check.result.ok, check.result
    (req,) = fake.token_requests
    assert (req.host, req.path) == (PARTNER_AUTH, "/oauth/token")
    assert req.headers["authorization"] == basic(fake.credentials.partner_client_id, CANARY + "-p")
    assert req.form["grant_type"] == grant


# --- errors ---------------------------------------------------------------------

def test_invalid_client_is_surfaced_and_not_retried(fake):
    env = {**fake.env(), "LAB_GENESYS_CLIENT_SECRET": "wrong-" + CANARY}
    check = token(lab_target(fake, "genesys"), env)

    assert not check.result.ok and check.token is None
    assert (check.result.status, check.result.error) == (401, "invalid_client")
    assert check.result.error_description == "authentication failed"
    assert check.result.attempts == 1 and fake.count(path="/oauth/token") == 1


def test_unsupported_grant_is_surfaced(fake):
    check = token(lab_target(fake, "genesys", token_url=fake.url(NICE_ISSUER, "/auth/token")), fake.env())
    assert (check.result.status, check.result.error) == (401, "invalid_client")  # NICE rejects Genesys' client


def test_a_missing_secret_variable_is_a_config_error_naming_it_and_nothing_is_sent(fake):
    with pytest.raises(TargetConfigError) as info:
        token(lab_target(fake, "nice"), {"LAB_NICE_CLIENT_SECRET": CANARY})
    assert "LAB_NICE_ACCESS_KEY_SECRET" in str(info.value) and CANARY not in str(info.value)
    assert fake.count() == 0


@pytest.mark.parametrize("body, error", [
    ({"access_token": "t", "token_type": "mac", "expires_in": 300}, "invalid_token_type"),
    ({"access_token": "t", "token_type": "bearer", "expires_in": "soon"}, "invalid_expires_in"),
    ({"access_token": "t", "token_type": "bearer", "expires_in": 0}, "invalid_expires_in"),
    ({"token_type": "bearer", "expires_in": 300}, "missing_access_token"),
    ([1, 2], "invalid_token_response"),
])
def test_token_type_and_expires_in_are_validated(fake, body, error):
    check = _token_answer(fake, body)
    assert not check.result.ok and check.result.error == error and check.token is None
    # The credentials were accepted (HTTP 200): the advice must not say to check them
    assert check.result.remediation
    assert not any("client id" in r.lower() or "secret" in r.lower() for r in check.result.remediation)


@pytest.mark.parametrize("body, summary", [
    ({"access_token": "t", "expires_in": 3600}, "no token_type: used as a Bearer token"),  # RFC 6749 requires it
    ({"access_token": "t", "token_type": "Bearer"}, "no expires_in"),                    # RFC 6749: recommended
    ({"access_token": "t", "token_type": "Bearer", "expires_in": "3599"}, "expires in 3599 s"),  # Azure AD v1
])
def test_a_usable_token_whose_answer_bends_rfc_6749_is_obtained_and_the_summary_says_how(fake, body, summary):
    check = _token_answer(fake, body)
    assert check.result.ok and check.token is not None, check.result
    assert summary in check.result.summary


def _token_answer(fake, body, status: int = 200):
    # A pure HTTP-shape test: MockTransport is enough here.
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    target = lab_target(fake, "genesys")

    async def go():
        async with httpx.AsyncClient(transport=transport) as client:
            return await check_token(target, client=client, env=fake.env(), clock=FakeClock())

    return asyncio.run(go())


def test_the_advice_for_a_token_refusal_follows_the_status():
    from cxhealth.tasks.remedies import remediation_for

    def advice(status, remediation=()):
        return " ".join(remediation_for({"stage": "oauth", "oauth": {"status": status,
                                                                       "remediation": list(remediation)}})).lower()

    assert "client id" in advice(401)  # bad credentials: the checklist
    from cxhealth.tasks.checks.oauth import _status_fix

    assert "client id" not in advice(503, _status_fix(503)) and "status page" in advice(503, _status_fix(503))
    assert "client id" not in advice(429, _status_fix(429)) and "less often" in advice(429, _status_fix(429))


# --- the canary -------------------------------------------------------------------

def _everything_said(results, caplog, extra=()) -> str:
    return "\n".join([json.dumps(results, default=str), caplog.text,
                      *(r.getMessage() for r in caplog.records), *map(str, extra)])


def test_a_canary_secret_and_the_token_never_appear_in_results_logs_or_exceptions(fake, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "tasks", "cxhealth"):
        caplog.set_level(logging.DEBUG, logger=name)
    said: list[object] = []
    env = fake.env()

    # success on every platform, token and endpoints
    for platform in ("genesys", "nice", "generic"):
        checks = asyncio.run(run_http_checks(lab_target(fake, platform), env=env, clock=FakeClock()))
        assert checks.ok, checks.to_dict()
        said += [checks.to_dict(), repr(checks)]
    # a wrong secret (itself a canary), a 503 burst, a server that echoes the secret back
    bad = {**env, "LAB_GENESYS_CLIENT_SECRET": CANARY + "-wrong"}
    said.append(asyncio.run(check_token(lab_target(fake, "genesys"), env=bad, clock=FakeClock())).result.to_dict())
    fake.fail("/oauth/token", 503, times=2)
    said.append(asyncio.run(check_token(lab_target(fake, "genesys"), env=env, clock=FakeClock())).result.to_dict())
    fake.script("/auth/token", Reply(400, body={"error": "invalid_request",
                                                "error_description": f"bad password {CANARY_KEY}"}))
    echoed = asyncio.run(check_token(lab_target(fake, "nice"), env=env, clock=FakeClock()))
    assert echoed.result.error == "invalid_request" and "***" in (echoed.result.error_description or "")
    said += [echoed.result.to_dict(), repr(echoed)]
    # a handshake failure on the token host (TLS 1.2-only client, TLS 1.3-only host)
    broken = lab_target(fake, "genesys", tls_max="1.2", token_url=fake.url(GENESYS_TLS13, "/oauth/token"))
    failed = asyncio.run(check_token(broken, env=env, clock=FakeClock()))
    assert failed.result.cause == "protocol_version_mismatch"
    said.append(failed.result.to_dict())
    # exception text
    try:
        asyncio.run(check_token(lab_target(fake, "nice"), env={"LAB_NICE_CLIENT_SECRET": CANARY}, clock=FakeClock()))
    except TargetConfigError as exc:
        said.append(exc)

    issued = {r.headers["authorization"][7:] for r in fake.requests
              if r.headers.get("authorization", "").startswith("Bearer ")}
    assert issued, "the endpoint checks should have used tokens"
    assert any(r.name.startswith("httpcore") for r in caplog.records), "httpcore debug logging was not captured"
    text = _everything_said(said, caplog)
    assert "CANARY" not in text
    for value in issued:
        assert value not in text
    assert "Basic " not in text


# --- never a credential over an unverified connection ---------------------------------------

def test_an_untrusted_certificate_gets_no_credentials(fake, tmp_path):
    other_ca = write_bundle(tmp_path / "other-ca.pem", [CA.create_root("some other root").cert])
    check = token(lab_target(fake, "genesys", ca_bundle=str(other_ca)), fake.env())

    assert not check.result.ok and check.token is None
    # The engine names it (contract §1): the server sends leaf + intermediate and the root is in no
    # store and was not sent, so the chain stops at an issuer nobody has: incomplete_chain.
    assert check.result.cause == "incomplete_chain"
    assert check.result.error == "connect_error" and check.result.attempts == 1
    assert fake.token_requests == [] and fake.count() == 0


def test_a_certificate_for_other_names_gets_no_credentials(fake):
    url = f"https://login.other.test:{fake.port}/oauth/token"
    target = lab_target(fake, "genesys", token_url=url, resolve=[*fake.resolve, f"login.other.test:{fake.port}:127.0.0.1"])
    check = token(target, fake.env())

    assert not check.result.ok and check.result.cause == "hostname_mismatch"
    assert fake.count() == 0


def test_an_sni_override_still_verifies_the_real_host_name(fake):
    # SNI names a host the cert covers, the URL's host is not covered: refused before anything is sent.
    url = f"https://login.other.test:{fake.port}/oauth/token"
    target = lab_target(fake, "genesys", token_url=url, sni=GENESYS_LOGIN,
                         resolve=[*fake.resolve, f"login.other.test:{fake.port}:127.0.0.1"])
    check = token(target, fake.env())

    assert not check.result.ok and check.result.cause == "hostname_mismatch"
    assert "login.other.test" in (check.result.summary or "")
    assert fake.count() == 0


def test_an_sni_override_that_the_certificate_covers_works(fake):
    target = lab_target(fake, "genesys", sni=GENESYS_API)  # cert covers both names
    check = token(target, fake.env())
    assert check.result.ok and fake.count(path="/oauth/token", host=GENESYS_LOGIN) == 1
    (req,) = fake.token_requests
    assert req.sni == GENESYS_API and req.host == GENESYS_LOGIN  # SNI overridden, Host header not
