"""The TLS lab: every scenario fails a naive verifying client the way it should.

A "naive client" is what most integrations run: ``ssl.create_default_context``
with the scenario's trust store, honouring only the scenario's own client flags
(SNI off, TLS 1.2 cap, client certificate). Healthy and warning scenarios must
complete a verified handshake and an HTTP exchange; failure scenarios must fail
with the exception and OpenSSL reason / verify code the cause is known by
(platform-facts.md, "OpenSSL evidence").
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import ssl
import threading
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from cxhealth.lab import pki
from cxhealth.lab.cli import main as lab_main
from cxhealth.lab.tls_lab import PUBLIC_ISSUER, Scenario, TLSLab
from cxhealth.tasks.tls.model import Cause

CONTRACT_WARNINGS = {"cert_expiring_soon", "proxy_interception", "tls12_only_policy", "weak_signature"}
TIMEOUT_S = 0.3  # every lab peer is on loopback: anything slower is a timeout


@pytest.fixture(autouse=True)
def _no_ssl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the scenario's store counts: strip what OpenSSL/Python read from the env."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def lab() -> TLSLab:
    with TLSLab() as running:
        yield running


def naive_context(s: Scenario, *, cafile: str | None = None, with_client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile or s.ca_bundle)
    if s.tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if not s.send_sni:
        ctx.check_hostname = False  # Python refuses hostname checks without SNI; the chain is still verified
    if s.client_cert and with_client_cert:
        ctx.load_cert_chain(s.client_cert, s.client_key)
    return ctx


def naive_get(s: Scenario, ctx: ssl.SSLContext | None = None, *, sni: str | None = "") -> tuple[str, bytes, list[bytes]]:
    """Connect, handshake, ``GET /``; return (version, response, DER chain as sent)."""
    ctx = ctx or naive_context(s)
    server_hostname = (s.host if s.send_sni else None) if sni == "" else sni
    with socket.create_connection((s.address or s.host, s.port), timeout=TIMEOUT_S) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            chain = _unverified_chain(tls)
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {s.host}\r\n\r\n".encode())
            response = b""
            while chunk := tls.recv(4096):
                response += chunk
            return str(tls.version()), response, chain


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    # Public in 3.13 (DER bytes); on 3.10-3.12 only the private _sslobj has it,
    # returning certificate objects (platform-facts.md).
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return list(public())
    return [ssl.PEM_cert_to_DER_cert(c.public_bytes()) for c in tls._sslobj.get_unverified_chain()]  # type: ignore[union-attr]


def chain_of(s: Scenario) -> list[x509.Certificate]:
    """What the server sends, as the lab wrote it (leaf first)."""
    assert s.chain_pem
    return x509.load_pem_x509_certificates(Path(s.chain_pem).read_bytes())


# ---------------------------------------------------------------------------
# Coverage of the contract


def test_every_contract_cause_and_warning_has_a_scenario(lab: TLSLab) -> None:
    causes = {s.cause for s in lab.scenarios.values()}
    warnings = {w for s in lab.scenarios.values() for w in s.warnings}
    # The proxy-level causes need a proxy in the path: tests/test_proxy_squid.py covers each against squid.
    proxy_level = {"proxy_unreachable", "proxy_auth_required", "proxy_refused", "proxy_upstream_failure"}
    assert causes == {c.value for c in Cause} - proxy_level
    assert warnings >= CONTRACT_WARNINGS
    for s in lab.scenarios.values():
        # A TLS 1.2 cap is a warning about the client's policy, whatever the verdict.
        assert ("tls12_only_policy" in s.warnings) == (s.tls_max == "1.2"), s.name
        if s.name.startswith("warn_"):
            assert s.cause == "ok" and s.warnings, s.name


def test_diagnose_args_carry_resolve_stores_and_the_scenarios_own_flags(lab: TLSLab) -> None:
    healthy = lab.scenarios["healthy"]
    assert healthy.target == f"https://healthy.cxlab.test:{healthy.port}"
    assert healthy.diagnose_args == (
        "--resolve", f"healthy.cxlab.test:{healthy.port}:127.0.0.1",
        "--ca-bundle", str(lab.client_store), "--reference-ca-bundle", str(lab.reference_store),
    )
    assert "--resolve" not in lab.scenarios["dns_failure"].diagnose_args
    assert lab.scenarios["dns_failure"].host.endswith(".invalid")
    assert "--no-sni" in lab.scenarios["sni_required"].diagnose_args
    for name in ("protocol_version_mismatch", "warn_tls12_only_policy"):
        args = lab.scenarios[name].diagnose_args
        assert args[args.index("--tls-max") + 1] == "1.2"
    pin_args = lab.scenarios["pin_mismatch"].diagnose_args
    assert pin_args[pin_args.index("--pin") + 1].startswith("sha256/")
    issuer_args = lab.scenarios["proxy_interception_expect_issuer"].diagnose_args
    assert issuer_args[issuer_args.index("--expect-issuer") + 1] == PUBLIC_ISSUER
    assert "--client-cert" in lab.scenarios["mtls_ok"].diagnose_args
    assert "--client-cert" not in lab.scenarios["client_cert_required"].diagnose_args


# ---------------------------------------------------------------------------
# Healthy handshakes, with or without warnings

HEALTHY = ["healthy", "mtls_ok", "proxy_interception_expect_issuer", "pin_mismatch", "warn_cert_expiring_soon",
           "warn_proxy_interception", "warn_tls12_only_policy", "warn_weak_signature"]


@pytest.mark.parametrize("name", HEALTHY)
def test_naive_client_completes_a_verified_handshake_and_gets_200(lab: TLSLab, name: str) -> None:
    version, response, chain = naive_get(lab.scenarios[name])

    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in response
    assert chain, "the server sent a chain"
    assert version == ("TLSv1.2" if lab.scenarios[name].tls_max == "1.2" else "TLSv1.3")


def test_healthy_speaks_tls12_too(lab: TLSLab) -> None:
    ctx = naive_context(lab.scenarios["healthy"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert naive_get(lab.scenarios["healthy"], ctx)[0] == "TLSv1.2"


def test_weak_signature_puts_a_sha1_signature_on_the_wire_and_still_verifies(lab: TLSLab) -> None:
    _, response, chain = naive_get(lab.scenarios["warn_weak_signature"])

    hashes_sent = [x509.load_der_x509_certificate(der).signature_hash_algorithm.name for der in chain]
    assert "sha1" in hashes_sent
    assert response.startswith(b"HTTP/1.1 200")


def test_sha1_resigning_makes_a_signature_that_really_verifies(lab: TLSLab) -> None:
    # OpenSSL never checks a trust anchor's self-signature, so the lab tests
    # would pass with a broken one: check it here, by hand.
    root = lab.cas.legacy_sha1_root.cert
    assert root.signature_hash_algorithm.name == "sha1"
    root.public_key().verify(root.signature, root.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())
    ec_root = pki.CA.create_root("EC SHA-1", hash_name="sha1").cert
    ec_root.public_key().verify(ec_root.signature, ec_root.tbs_certificate_bytes, ec.ECDSA(hashes.SHA1()))


def test_only_the_expiring_soon_scenario_has_a_cert_within_14_days(lab: TLSLab) -> None:
    soon = datetime.now(timezone.utc) + timedelta(days=14)
    for s in lab.scenarios.values():
        if s.chain_pem and s.cause == "ok":
            expiring = [c for c in chain_of(s) if c.not_valid_after_utc < soon]
            assert bool(expiring) == ("cert_expiring_soon" in s.warnings), s.name


def test_pin_mismatch_pins_a_key_that_is_nowhere_in_the_chain(lab: TLSLab) -> None:
    s = lab.scenarios["pin_mismatch"]
    sent = {pki.spki_pin(c) for c in chain_of(s)} | {pki.spki_pin(lab.cas.public.cert)}
    assert s.pins and not set(s.pins) & sent
    der = chain_of(s)[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pki.spki_pin(chain_of(s)[0]) == "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_expect_issuer_scenario_chain_lacks_the_expected_issuer_that_healthy_has(lab: TLSLab) -> None:
    def issuers(name: str) -> str:
        return " ".join(c.issuer.rfc4514_string() for c in chain_of(lab.scenarios[name]))

    assert PUBLIC_ISSUER in issuers("healthy")
    assert PUBLIC_ISSUER not in issuers("proxy_interception_expect_issuer")
    assert "Zscaler" in issuers("warn_proxy_interception")


# ---------------------------------------------------------------------------
# Failures: each fails the way its cause is known by

def _verify_failure(code: int):
    return (ssl.SSLCertVerificationError, lambda e: e.verify_code == code)


def _reason(exc_type: type[BaseException], reason: str):
    return (exc_type, lambda e: e.reason == reason)


FAILURES = {
    "dns_failure": (socket.gaierror, lambda e: True),
    "tcp_refused": (ConnectionRefusedError, lambda e: True),
    "tcp_timeout": (TimeoutError, lambda e: True),
    "handshake_timeout": (TimeoutError, lambda e: "handshake" in str(e)),
    "connection_reset": (ConnectionResetError, lambda e: True),
    "not_tls": _reason(ssl.SSLError, "WRONG_VERSION_NUMBER"),
    "protocol_version_mismatch": _reason(ssl.SSLError, "TLSV1_ALERT_PROTOCOL_VERSION"),
    "cipher_mismatch": _reason(ssl.SSLError, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
    "sni_required": _reason(ssl.SSLError, "TLSV1_UNRECOGNIZED_NAME"),
    # TLS 1.3: the client's handshake completes; the alert arrives on the first read.
    "client_cert_required": _reason(ssl.SSLError, "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
    "client_cert_required_tls12": _reason(ssl.SSLError, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
    "cert_expired": _verify_failure(10),
    "cert_not_yet_valid": _verify_failure(9),
    "hostname_mismatch": _verify_failure(62),
    "self_signed": _verify_failure(18),
    "incomplete_chain": _verify_failure(20),
    "stale_trust_store": _verify_failure(20),
    # The private CA's server sends its root too: OpenSSL then says 19, not 20.
    "untrusted_root": _verify_failure(19),
    "proxy_interception": _verify_failure(20),
    "weak_crypto": _verify_failure(66),
    "invalid_chain": _verify_failure(26),
}


def test_every_failing_scenario_has_an_expected_failure(lab: TLSLab) -> None:
    failing = {name for name, s in lab.scenarios.items() if s.cause != "ok"} - set(HEALTHY)
    assert failing == set(FAILURES)


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_naive_client_fails_the_way_the_scenario_intends(lab: TLSLab, name: str) -> None:
    s = lab.scenarios[name]
    exc_type, matches = FAILURES[name]

    with pytest.raises(exc_type) as caught:
        naive_get(s)

    assert matches(caught.value), repr(caught.value)


def test_tcp_timeout_server_never_accepts(lab: TLSLab) -> None:
    s = lab.scenarios["tcp_timeout"]
    with pytest.raises(TimeoutError):
        socket.create_connection((s.address, s.port), timeout=0.1).close()
    assert s.connections.value == 0


def test_handshake_timeout_and_reset_servers_do_accept_tcp(lab: TLSLab) -> None:
    for name in ("handshake_timeout", "connection_reset", "not_tls"):
        s = lab.scenarios[name]
        s.connections.reset()
        with pytest.raises(OSError):
            naive_get(s)
        assert s.connections.value == 1, name


def test_sni_required_rejects_a_wrong_name_and_accepts_the_right_one(lab: TLSLab) -> None:
    s = lab.scenarios["sni_required"]
    ctx = naive_context(s)

    with pytest.raises(ssl.SSLError) as wrong:
        naive_get(s, ctx, sni="wrong.cxlab.test")
    right = ssl.create_default_context(cafile=s.ca_bundle)

    assert wrong.value.reason == "TLSV1_UNRECOGNIZED_NAME"
    assert naive_get(s, right, sni=s.host)[1].startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("name", ["client_cert_required", "client_cert_required_tls12"])
def test_client_cert_scenarios_accept_the_labs_client_certificate(lab: TLSLab, name: str) -> None:
    s = lab.scenarios[name]
    ctx = naive_context(s)
    ctx.load_cert_chain(lab.client_cert, lab.client_key)

    version, response, _ = naive_get(s, ctx)

    assert response.startswith(b"HTTP/1.1 200")
    assert version == ("TLSv1.3" if name == "client_cert_required" else "TLSv1.2")


def test_cipher_mismatch_is_only_a_cipher_problem(lab: TLSLab) -> None:
    s = lab.scenarios["cipher_mismatch"]
    ctx = naive_context(s)
    ctx.set_ciphers("AES128-GCM-SHA256")  # the one suite the server offers

    version, response, _ = naive_get(s, ctx)

    assert (version, response[:15]) == ("TLSv1.2", b"HTTP/1.1 200 OK")


def test_protocol_version_mismatch_is_only_a_version_problem(lab: TLSLab) -> None:
    s = lab.scenarios["protocol_version_mismatch"]
    assert naive_get(s, ssl.create_default_context(cafile=s.ca_bundle))[0] == "TLSv1.3"


def test_incomplete_chain_completes_via_the_aia_url(lab: TLSLab) -> None:
    s = lab.scenarios["incomplete_chain"]
    assert s.aia_url and s.aia_fetches is not None
    assert len(chain_of(s)) == 1
    aia = chain_of(s)[0].extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == s.aia_url
    before = s.aia_fetches.value

    with urllib.request.urlopen(s.aia_url, timeout=1) as reply:
        intermediate = x509.load_der_x509_certificate(reply.read())
        content_type = reply.headers["Content-Type"]
    ctx = naive_context(s)
    ctx.load_verify_locations(cadata=intermediate.public_bytes(serialization.Encoding.PEM).decode())

    assert s.aia_fetches.value == before + 1
    assert content_type == "application/pkix-cert"
    assert intermediate.subject == lab.cas.public_issuing.cert.subject
    assert naive_get(s, ctx)[1].startswith(b"HTTP/1.1 200")


def test_stale_trust_store_verifies_against_the_reference_store(lab: TLSLab) -> None:
    s = lab.scenarios["stale_trust_store"]
    ctx = naive_context(s, cafile=s.reference_ca_bundle)
    assert naive_get(s, ctx)[1].startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("name", ["untrusted_root", "proxy_interception"])
def test_untrusted_chains_fail_against_the_reference_store_too(lab: TLSLab, name: str) -> None:
    s = lab.scenarios[name]
    with pytest.raises(ssl.SSLCertVerificationError):
        naive_get(s, naive_context(s, cafile=s.reference_ca_bundle))


def test_interception_issuer_is_a_product_name_and_the_private_ca_is_not(lab: TLSLab) -> None:
    intercepted = chain_of(lab.scenarios["proxy_interception"])
    private = chain_of(lab.scenarios["untrusted_root"])

    assert "Zscaler Intermediate Root CA" in intercepted[0].issuer.rfc4514_string()
    assert "Zscaler" not in " ".join(c.subject.rfc4514_string() for c in private)
    assert len(private) == 3 and private[-1].subject == private[-1].issuer  # root sent too


def test_self_signed_leaf_is_not_a_ca(lab: TLSLab) -> None:
    (leaf,) = chain_of(lab.scenarios["self_signed"])
    assert leaf.subject == leaf.issuer
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


# ---------------------------------------------------------------------------
# Counters, fleet, lifecycle, CLI


def test_connection_counter_counts_accepted_connections_and_resets(lab: TLSLab) -> None:
    s = lab.scenarios["healthy"]
    s.connections.reset()

    naive_get(s)
    naive_get(s)

    assert s.connections.value == 2
    assert s.connections.reset() == 2
    assert s.connections.value == 0


def test_lab_stops_everything_on_exit() -> None:
    threads_before = set(threading.enumerate())
    with TLSLab(scenarios=False) as small:
        fleet = small.healthy_fleet(200)
        directory = small.directory
        probe = fleet[-1]
        assert len({s.port for s in fleet}) == 200
        assert naive_get(probe)[1].startswith(b"HTTP/1.1 200")
        assert probe.connections.value == 1
        assert small.scenarios == {}

    assert set(threading.enumerate()) <= threads_before
    assert not directory.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", probe.port), timeout=TIMEOUT_S)


def test_cli_prints_a_command_per_scenario_and_exits_with_for() -> None:
    out = io.StringIO()

    status = lab_main(["--for", "0"], stdout=out)

    text = out.getvalue()
    assert status == 0
    commands = [line.split("$ ", 1)[1] for line in text.splitlines() if "$ cxhealth diagnose " in line]
    assert len(commands) == len(FAILURES) + len(HEALTHY)
    assert any("https://healthy.cxlab.test:" in c and "--resolve healthy.cxlab.test:" in c for c in commands)
    assert text.rstrip().endswith("stopped")
