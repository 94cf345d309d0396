"""Shared fixtures: the TLS lab (one per session) and the services rule.

Like httpx's suite, an autouse fixture strips the environment variables that
would silently change which trust store a test's client uses.
"""

from __future__ import annotations

import os
import socket

import pytest

_TRUST_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _clean_trust_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _TRUST_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _own_fallback_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Each test's breaker fallback (a local SQLite file per store) lives in its own folder,
    never in the machine's shared one."""
    monkeypatch.setenv("CXHEALTH_FALLBACK_DIR", str(tmp_path_factory.mktemp("fallback")))


@pytest.fixture(scope="session")
def tls_lab():
    from cxhealth.lab.tls_lab import TLSLab

    with TLSLab() as lab:
        yield lab


def lab_target(fake, platform: str, **overrides):
    """The production :class:`Target` for one of the fake platform's targets: the lab
    gives plain values (it never imports production's models); the test builds the Target."""
    from cxhealth.tasks.targets import Target

    return Target(**fake.target_values(platform, **overrides))


def services_required() -> bool:
    return os.environ.get("CXHEALTH_REQUIRE_SERVICES") == "1"


def need_service(name: str, host: str, port: int) -> None:
    """Skip with a reason when a local service is absent; fail instead in CI
    (`.ci/run` sets CXHEALTH_REQUIRE_SERVICES=1)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError as exc:
        message = f"{name} not reachable at {host}:{port} ({exc})"
        if services_required():
            pytest.fail(message + " and CXHEALTH_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One Prefect test harness for the whole session (entering it costs ~7 s),
    with an isolated PREFECT_HOME so nothing lands in the real ~/.prefect."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: str(home)}):
        with prefect_test_harness(server_startup_timeout=90):
            yield home


def need_squid() -> None:
    """Skip (or, with CXHEALTH_REQUIRE_SERVICES=1, fail) when squid with ssl_bump is not installed."""
    from cxhealth.lab.squid import squid_binary

    if squid_binary() is None:
        message = "squid with ssl_bump (Debian's squid-openssl) is not installed"
        if services_required():
            pytest.fail(message + " and CXHEALTH_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def squid(tls_lab):
    """One real squid for the session, on loopback, in front of the TLS lab.

    It resolves every lab scenario's name (its own hosts file), denies the
    ``not_tls`` scenario's host (403), tunnels ``healthy`` untouched on its bump
    ports and re-signs every other name there (Zscaler-named and neutral CAs)."""
    need_squid()
    from cxhealth.lab.squid import SquidLab

    hosts = {s.host: s.address for s in tls_lab.scenarios.values() if s.address}
    with SquidLab(hosts=hosts, deny=[tls_lab.scenarios["not_tls"].host],
                  splice=[tls_lab.scenarios["healthy"].host],
                  upstream_ca_bundle=str(tls_lab.client_store)) as lab:
        yield lab
