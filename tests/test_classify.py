"""Classification edges of verify code 20/19, as pure functions over real certificates.

The lab scenarios cover each cause once; these pin down how the engine decides
when a server, a store or an AIA URL differs from the lab's shape: which piece is
missing — a root (stale store, private CA) or an intermediate (incomplete chain).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cxhealth.lab import pki
from cxhealth.tasks.tls import Cause
from cxhealth.tasks.tls import chain as ch
from cxhealth.tasks.tls.classify import ChainFacts, classify_verify_failure
from cxhealth.tasks.tls.probe import ProbeResult
from cxhealth.tasks.tls.remediation import Facts, remediation_for

NOW = datetime.now(timezone.utc)


def verify_failure(code: int = 20) -> ProbeResult:
    return ProbeResult(label="verified", ok=False, settings={}, error_kind="verify_error",
                       reason="CERTIFICATE_VERIFY_FAILED", verify_code=code,
                       verify_message="unable to get local issuer certificate")


def store(label: str, *certs) -> ch.TrustStore:
    return ch.TrustStore(label, label, tuple(certs))


def classify(sent, client_store, reference_store, fetched=(), aia=(), code=20, expect=()):
    leaf, rest = sent[0], list(sent[1:])
    facts = ChainFacts(certs=tuple(sent),
                       client=ch.build_path(leaf, rest, client_store, fetched),
                       reference=ch.build_path(leaf, rest, reference_store, fetched),
                       fetched=tuple(fetched), aia=tuple(aia))
    return classify_verify_failure(verify_failure(code), facts, host="api.example.test", now=NOW,
                                   expect_issuers=expect)


@pytest.fixture(scope="module")
def public():
    root = pki.CA.create_root("Example Public Root R1", organization="Example Trust")
    issuing = root.create_intermediate("Example Public Issuing CA 1", organization="Example Trust")
    return root, issuing


def test_a_root_missing_from_the_client_store_is_a_stale_store(public):
    root, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert, issuing.cert], store("client"), store("reference", root.cert))
    assert verdict.cause is Cause.STALE_TRUST_STORE


def test_an_intermediate_only_the_reference_store_holds_is_an_incomplete_chain(public):
    root, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert], store("client", root.cert), store("reference", root.cert, issuing.cert))
    assert verdict.cause is Cause.INCOMPLETE_CHAIN
    assert "Issuing CA 1" in verdict.details["missing_issuer"]


def test_an_intermediate_fetched_through_aia_completes_an_incomplete_chain(public):
    root, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert], store("client", root.cert), store("reference", root.cert),
                       fetched=[issuing.cert], aia=[{"url": "http://aia.example.test/i.cer", "ok": True}])
    assert verdict.cause is Cause.INCOMPLETE_CHAIN
    assert verdict.details["aia_url"] == "http://aia.example.test/i.cer"


def test_a_lone_leaf_whose_aia_cannot_be_fetched_is_still_an_incomplete_chain(public):
    _, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"], aia_ca_issuers_url="http://aia.example.test/i.cer")
    verdict = classify([leaf.cert], store("client"), store("reference"),
                       aia=[{"url": "http://aia.example.test/i.cer", "ok": False}])
    assert verdict.cause is Cause.INCOMPLETE_CHAIN


def test_a_lone_leaf_whose_issuer_is_nowhere_is_an_incomplete_chain():
    """Contract §1: the chain stops at a leaf whose issuer the server did not send; whether
    or not it can be found, that is incomplete_chain, and the server must send it."""
    root = pki.CA.create_root("Test Harness Root")  # trustme-style: the root signs the leaf
    leaf = root.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert], store("client"), store("reference"))
    assert verdict.cause is Cause.INCOMPLETE_CHAIN
    assert verdict.details["issuer_found"] is False
    steps = remediation_for(verdict.cause, Facts(host="api.example.test", details=verdict.details))
    assert "must send its intermediate" in steps[0]


def test_a_private_intermediate_without_its_root_is_incomplete_until_a_root_is_seen():
    """untrusted_root needs a root that was sent or found; with neither, the chain is
    incomplete, and the advice names both ways out (send it, or trust the private root)."""
    root = pki.CA.create_root("Corp Private Root", organization="Example Corp")
    issuing = root.create_intermediate("Corp Private Issuing CA", organization="Example Corp")
    leaf = issuing.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert, issuing.cert], store("client"), store("reference"),
                       aia=[{"url": "http://pki.corp.test/root.cer", "ok": False}])
    assert verdict.cause is Cause.INCOMPLETE_CHAIN
    assert "Corp Private Root" in verdict.summary
    steps = remediation_for(verdict.cause, Facts(host="api.example.test", details=verdict.details))
    assert any("private CA" in s and "add that root" in s for s in steps)


def test_a_private_root_fetched_through_aia_is_an_untrusted_root_and_the_leaf_alone_incomplete():
    root = pki.CA.create_root("Corp Private Root 3", organization="Example Corp")
    leaf = root.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert], store("client"), store("reference"), fetched=[root.cert],
                       aia=[{"url": "http://pki.corp.test/root.cer", "ok": True}])
    assert verdict.cause is Cause.INCOMPLETE_CHAIN
    assert verdict.details["also"] == ["untrusted_root"]


def test_a_private_root_sent_by_the_server_is_an_untrusted_root():
    root = pki.CA.create_root("Corp Private Root 2", organization="Example Corp")
    issuing = root.create_intermediate("Corp Private Issuing CA 2", organization="Example Corp")
    leaf = issuing.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert, issuing.cert, root.cert], store("client"), store("reference"), code=19)
    assert verdict.cause is Cause.UNTRUSTED_ROOT


@pytest.mark.parametrize("ca_name", ["Zscaler Root CA", "Palo Alto Decryption Trusted CA", "FortiGate CA",
                                     "Netskope Certificate Authority", "Blue Coat ProxySG CA",
                                     "Symantec SSL Visibility Appliance", "Cisco Umbrella Primary SubCA",
                                     "Sophos SSL CA", "Check Point Outbound Inspection CA", "Forcepoint Cloud CA"])
def test_inspection_products_are_recognised_by_their_ca_names(ca_name):
    root = pki.CA.create_root(ca_name)
    leaf = root.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert], store("client"), store("reference"))
    assert verdict.cause is Cause.PROXY_INTERCEPTION


def test_an_unexpected_issuer_is_interception_not_a_private_ca():
    root = pki.CA.create_root("Acme Network Gateway CA")
    leaf = root.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert], store("client"), store("reference"), expect=("DigiCert",))
    assert verdict.cause is Cause.PROXY_INTERCEPTION
    assert verdict.details["expected_issuers"] == ["DigiCert"]


# --- what a reviewer's own PKI found (each was misdiagnosed before) -------------------------

def test_a_store_holding_only_the_intermediate_does_not_anchor_the_chain(public):
    """Without PARTIAL_CHAIN (Python < 3.13) OpenSSL needs a root: a bundle with only the
    intermediate leaves the root missing. The server sent its full chain, so it is not an
    incomplete chain."""
    root, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert, issuing.cert], store("client", issuing.cert), store("reference"), code=2)
    assert verdict.cause is Cause.INCOMPLETE_CHAIN
    assert "Example Public Root R1" in verdict.summary
    assert verdict.details["sent_top_is_ca"] is True


def test_an_intermediate_from_the_reference_store_is_not_said_to_come_from_aia(public):
    root, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"], aia_ca_issuers_url="http://aia.example.test/i.cer")
    verdict = classify([leaf.cert], store("client", root.cert), store("reference", root.cert, issuing.cert))
    assert verdict.cause is Cause.INCOMPLETE_CHAIN
    assert "AIA" not in verdict.summary and verdict.details["aia_url"] is None
    assert verdict.details["anchor"] == ch.name_text(root.cert.subject)  # completes to the root, not the intermediate
    steps = remediation_for(verdict.cause, Facts(host="api.example.test", details=verdict.details))
    assert not any("fetched from" in s for s in steps)


def test_a_sha1_signed_leaf_under_a_trusted_root_names_the_weak_signature(public):
    root, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"], hash_name="sha1", key_type="rsa")
    verdict = classify([leaf.cert, issuing.cert], store("client", root.cert), store("reference"), code=68)
    assert verdict.cause is Cause.WEAK_CRYPTO
    assert "SHA1" in verdict.summary and "api.example.test" in verdict.details["certificate"]
    assert verdict.details["rule"] == "signature digest"
    steps = remediation_for(verdict.cause, Facts(host="api.example.test", details=verdict.details))
    assert "reissue" in steps[0] and not any("--ca-bundle" in s for s in steps)


def test_an_unknown_handshake_reason_is_flagged_unmapped_never_a_silent_cipher_mismatch():
    from cxhealth.tasks.tls.classify import classify_handshake_failure

    first = ProbeResult(label="verified", ok=False, settings={"sni": "api.example.test"}, error_kind="tls_error",
                        reason="SOME_FUTURE_OPENSSL_REASON", message="[SSL: SOME_FUTURE_OPENSSL_REASON] ...")
    verdict = classify_handshake_failure(first, [first], host="api.example.test", tls_min="1.2", tls_max="1.3",
                                         client_cert_supplied=False)
    assert verdict.details["unmapped"]["reason"] == "SOME_FUTURE_OPENSSL_REASON"
    assert "does not map" in verdict.summary
    steps = remediation_for(verdict.cause, Facts(host="api.example.test", details=verdict.details))
    assert "SOME_FUTURE_OPENSSL_REASON" in steps[0] and not any("cipher string" in s for s in steps[:1])


def test_an_unknown_verify_code_is_flagged_unmapped(public):
    root, issuing = public
    leaf = issuing.issue_leaf(["api.example.test"])
    verdict = classify([leaf.cert, issuing.cert], store("client", root.cert), store("reference"), code=999)
    assert verdict.details["unmapped"]["verify_code"] == 999


def test_every_fault_found_is_listed_in_also_by_precedence(public):
    """A private root sent by the server (trust), an expired leaf (time), for another host (name)."""
    from datetime import timedelta

    private = pki.CA.create_root("Corp Private Root 4", organization="Example Corp")
    leaf = private.issue_leaf(["other.example.test"], not_before=NOW - timedelta(days=30),
                              not_after=NOW - timedelta(days=1))
    verdict = classify([leaf.cert, private.cert], store("client"), store("reference"), code=19)
    assert verdict.cause is Cause.HOSTNAME_MISMATCH
    assert verdict.details["also"] == ["untrusted_root", "cert_expired"]


@pytest.mark.parametrize("widened, said", [
    (False, "no probe with a wider range was made"),  # the breaker opened first: the probe was skipped
    (True, "no wider range was accepted either"),
])
def test_a_refused_version_range_says_a_wider_range_failed_only_when_that_probe_was_made(widened, said):
    from cxhealth.tasks.tls.classify import classify_handshake_failure

    first = ProbeResult(label="verified", ok=False, settings={"sni": "api.example.test"}, error_kind="tls_error",
                        reason="TLSV1_ALERT_PROTOCOL_VERSION", message="[SSL: TLSV1_ALERT_PROTOCOL_VERSION] ...")
    probes = [first]
    if widened:
        probes.append(ProbeResult(label="any_version", ok=False, settings={}, error_kind="tls_error",
                                  reason="TLSV1_ALERT_PROTOCOL_VERSION", message="..."))
    verdict = classify_handshake_failure(first, probes, host="api.example.test", tls_min="1.2", tls_max="1.2",
                                         client_cert_supplied=False)
    assert verdict.cause is Cause.PROTOCOL_VERSION_MISMATCH
    assert said in verdict.summary


def test_cipher_mismatch_advice_claims_only_what_a_probe_showed():
    from cxhealth.tasks.tls.model import Cause
    from cxhealth.tasks.tls.remediation import Facts, remediation_for

    # no variant accepted: nothing is known of the server's versions or suites
    unknown = " ".join(remediation_for(Cause.CIPHER_MISMATCH, Facts(host="api.example.com")))
    assert "does not offer" not in unknown and "share no suite" not in unknown and "TLS 1.3 suites" in unknown
    # a TLS 1.0-only server met with every cipher allowed: the server must move to TLS 1.2, and no
    # cipher or security-level change on the client is offered as the fix
    old = remediation_for(Cause.CIPHER_MISMATCH, Facts(host="api.example.com", tls_min="1.0", details={
        "server_cipher": "ECDHE-RSA-AES256-SHA", "server_version": "TLSv1"}))
    assert len(old) == 1 and "enable TLS 1.2" in old[0] and "add one suite" not in old[0]
    # a TLS 1.2 server whose suites the client excludes, the client allowing 1.3: the server lacks 1.3 (shown)
    tls12 = remediation_for(Cause.CIPHER_MISMATCH, Facts(host="api.example.com", details={
        "server_cipher": "AES128-SHA", "server_version": "TLSv1.2"}))
    assert any("negotiated TLSv1.2 even with every version allowed" in s for s in tls12)
    assert not any("Allow TLS 1.3" in s for s in tls12)
