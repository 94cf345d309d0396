"""Foreign-looking chains and servers, on two TLS stacks (issue 11).

Given each case of lab/foreign.py served by Python's ssl AND by nginx, when
cxhealth diagnoses it as a user would (its trust store, its client certificate),
then the cause, ``evidence.also``, the warnings and the evidence are the
contract's on both stacks, and no remediation step contradicts the evidence.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import ssl
from contextlib import redirect_stderr, redirect_stdout

import pytest

from cxhealth.cli.main import main
from cxhealth.lab.foreign import Case, ForeignLab
from cxhealth.lab.nginx import NginxError, NginxStack, nginx_path
from cxhealth.tasks.tls import DiagnoseOptions, Endpoint, TLSPolicy, diagnose_many
from cxhealth.tasks.tls.model import MAX_JSON_LINE, MAX_TEXT

from .conftest import services_required

STACKS = ("python", "nginx")

# Building ~45 chains (RSA keys, a 10,000-SAN leaf) and starting nginx takes ~15 s on a loaded machine.
pytestmark = pytest.mark.slow


def _diagnose_all(lab: ForeignLab, ports: dict[str, int]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    served = [c for c in lab.cases if c.name in ports]
    for reference, no_aia in dict.fromkeys((c.reference_ca_bundle, c.no_aia) for c in served):  # one run per options
        cases = [c for c in served if (c.reference_ca_bundle, c.no_aia) == (reference, no_aia)]
        endpoints = [Endpoint(host=c.host, port=ports[c.name], address="127.0.0.1") for c in cases]
        policies = [TLSPolicy(ca_bundle=c.ca_bundle, client_cert=c.client_cert, client_key=c.client_key, timeout=5)
                    for c in cases]
        options = DiagnoseOptions(reference_ca_bundle=reference, aia=not no_aia)
        found = asyncio.run(diagnose_many(endpoints, TLSPolicy(), options, policies=policies, concurrency=16))
        out.update({c.name: d.to_dict() for c, d in zip(cases, found)})
    return out


@pytest.fixture(scope="module")
def foreign():
    with ForeignLab() as lab:
        yield lab


@pytest.fixture(scope="module")
def results(foreign):
    out: dict[str, dict[str, dict]] = {"python": _diagnose_all(foreign, foreign.serve_python())}
    if nginx_path() is None:
        out["nginx"] = {}
        yield out
        return
    with NginxStack(foreign.cases) as nginx:
        out["nginx"] = _diagnose_all(foreign, nginx.ports)
        out["nginx_ports"] = nginx.ports  # type: ignore[assignment]
        yield out


CASE_NAMES = [
    "healthy",
    "name_constraints_permitted",
    "name_constraints_excluded",
    "path_length",
    "ca_as_server",
    "client_only_leaf",
    "unknown_critical_extension",
    "empty_eku",
    "rsa1024_leaf",
    "rsa1024_intermediate",
    "md5_leaf",
    "sha1_intermediate",
    "dhe1024",
    "oversized",
    "malformed_aia_leaf_only",
    "malformed_aia_healthy",
    "empty_name_constraints",
    "undecodable_issuer_key",
    "long_chain",
    "long_chain_private",
    "huge_subject",
    "aia_split_der",
    "aia_pem",
    "aia_p7c",
    "aia_then_unknown_root",
    "store_intermediate_unknown_root",
    "aia_two_hops",
    "aia_two_found_then_404",
    "omitted_intermediate_in_client_store",
    "aia_wrong_certificate",
    "leaf_only_no_aia",
    "leaf_only_aia_404",
    "bad_root_superfish",
    "bad_root_edellroot",
    "bad_root_dsdtestprovider",
    "bad_root_mitmproxy",
    "bad_root_fiddler",
    "bad_root_charles",
    "bad_root_burp",
    "bad_root_trusted",
    "compromised_root_trusted",
    "client_cert_optional",
    "client_cert_post_handshake",
    "client_cert_post_handshake_tls12",
    "client_cert_wrong_ca",
    "client_cert_accepted",
    "no_san",
    "expired_leaf_and_intermediate",
    "expired_root_in_client_store",
    "other_host_and_expired",
    "private_root_and_expired",
    "rsa1024_leaf_private_root",
    "rsa1024_leaf_only",
    "expired_root_renewed",
    "expired_leaf_and_renewed_root",
    "name_not_served",
    "tls13_ccm_only",
    "weak_and_expired",
]  # kept in step with lab/foreign.py's build_cases (tested below)


def _need_nginx(results) -> None:
    if not results["nginx"]:
        message = "nginx is not installed (/usr/sbin/nginx; Debian package nginx)"
        if services_required():
            pytest.fail(message + " and CXHEALTH_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)


def _contradictions(case: Case, doc: dict) -> list[str]:
    """Remediation that contradicts the evidence (contract §1)."""
    steps = doc["remediation"]
    ev = doc["evidence"]
    out = []
    adds_root = [s for s in steps if "add its root" in s or "add that root" in s or "add it to --ca-bundle" in s]
    if doc["cause"] in ("weak_crypto", "invalid_chain", "cert_expired", "hostname_mismatch") and adds_root:
        out.append(f"asks to add a root to a chain that links to a trusted one: {adds_root}")
    if ev.get("remove_root") and (adds_root or not any("remove" in s.lower() or "never trust" in s.lower()
                                                       for s in steps)):
        out.append(f"a known-bad root must be removed, never added: {steps}")
    if any("Allow TLS 1.3" in s for s in steps):
        out.append("advises allowing TLS 1.3, which the default policy allows")
    if doc["cause"] == "weak_crypto" and any("@SECLEVEL" in s and "Do not" not in s for s in steps):
        out.append("advises lowering the security level")
    if doc["cause"] == "cert_expired":
        unrenewed = [e for e in ev.get("expired", []) if e["whose"] == "client_store"
                     and not e.get("successor_in_reference_store")]
        if unrenewed and any("holds its renewed copy" in s for s in steps):
            out.append(f"says a renewed root exists that no store holds: {steps}")
    if doc["cause"] == "sni_required" and doc["target"]["sni"] == doc["target"]["host"] and \
            any(s.startswith("Send SNI") for s in steps):
        out.append(f"asks to send the SNI that was sent: {steps}")
    if doc["cause"] == "cipher_mismatch" and not ev.get("server_cipher") and \
            any("does not offer" in s or "share no suite" in s for s in steps):
        out.append(f"claims what the server offers although no variant was accepted: {steps}")
    for text in [doc["summary"], *steps, *(w["message"] for w in doc["warnings"])]:
        if len(text) > MAX_TEXT:
            out.append(f"a text of {len(text)} characters")
    return out


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_case_gets_the_contracts_cause_also_and_warnings(foreign, results, stack, name):
    if stack == "nginx":
        _need_nginx(results)
    case = foreign.case(name)
    if stack not in case.stacks:
        pytest.skip(f"{name} is not served by {stack}")
    doc = results[stack][name]
    got_also = doc["evidence"].get("also", [])
    got_warnings = {w["code"] for w in doc["warnings"]}
    assert (doc["cause"], sorted(got_also)) == (case.cause, sorted(case.also)), doc["summary"]
    assert set(case.warnings) <= got_warnings, doc["warnings"]
    assert doc["ok"] is (case.cause == "ok")
    if case.cause != "ok":
        assert doc["remediation"] and doc["summary"]
    assert _contradictions(case, doc) == []
    _check_expected_evidence(case, doc)


def _check_expected_evidence(case: Case, doc: dict) -> None:
    ev = doc["evidence"]
    for key, want in case.evidence.items():
        if key == "aia_fetched":
            assert any(r.get("ok") for r in ev.get("aia", [])), ev.get("aia")
        elif key == "expired_count":
            assert len(ev["expired"]) == want, ev["expired"]
        elif key == "whose":
            assert {e["whose"] for e in ev["expired"]} == want, ev["expired"]
        elif key == "successor":
            assert [e.get("successor_in_reference_store") for e in ev["expired"]] == [want], ev["expired"]
        else:
            assert ev.get(key) == want, (key, ev.get(key))
    if case.cause in ("weak_crypto", "invalid_chain"):
        assert ev.get("rule"), "evidence.rule names the rule"
        assert "certificate" in ev, "evidence.certificate names the certificate (or null for a parameter)"


def test_every_case_name_is_tested(foreign):
    assert [c.name for c in foreign.cases] == CASE_NAMES


def test_both_stacks_agree_on_every_case(foreign, results):
    _need_nginx(results)
    differ = {n: (results["python"][n]["cause"], results["nginx"][n]["cause"])
              for n in results["python"] if n in results["nginx"]
              and results["python"][n]["cause"] != results["nginx"][n]["cause"]}
    assert differ == {}


def test_the_rule_and_the_certificate_are_named(results):
    doc = results["python"]["name_constraints_excluded"]
    assert "name constraints" in doc["evidence"]["rule"] and "name-constraints-excluded" in doc["evidence"]["certificate"]
    assert "verify code 48" in doc["summary"]
    ca = results["python"]["ca_as_server"]
    assert "CA certificate" in ca["summary"] and "leaf first" in ca["remediation"][0]
    dhe = results["python"]["dhe1024"]
    assert "Diffie-Hellman" in dhe["evidence"]["rule"] and dhe["evidence"]["parameter"]
    assert not any("cipher string" in s for s in dhe["remediation"]), "a DH group is not a cipher mismatch"
    big = results["python"]["oversized"]
    assert "100 KiB" in big["evidence"]["rule"]


def test_a_leaf_alone_is_an_incomplete_chain_and_the_server_must_send_its_intermediate(results):
    for name in ("leaf_only_no_aia", "leaf_only_aia_404", "aia_split_der"):
        doc = results["python"][name]
        assert "must send its intermediate" in doc["remediation"][0], (name, doc["remediation"])


def test_the_aia_answer_is_read_whole_however_it_is_split_and_in_every_format(foreign, results):
    for name in ("aia_split_der", "aia_pem", "aia_p7c"):
        record = results["python"][name]["evidence"]["aia"][0]
        assert record["ok"] is True and record["bytes"] > 300, record


def test_every_expired_certificate_is_named_with_whose_it_is(results):
    both = results["python"]["expired_leaf_and_intermediate"]
    assert len(both["evidence"]["expired"]) == 2
    assert "the server operator must renew" in " ".join(both["remediation"])
    store = results["python"]["expired_root_in_client_store"]
    assert store["evidence"]["expired"][0]["whose"] == "client_store"
    # no store holds a re-issue of that root: the server must re-chain, a store update cannot help
    assert store["evidence"]["expired"][0]["successor_in_reference_store"] is False
    assert "the server operator must move to a chain under a current root" in store["remediation"][0]
    # renewed in the reference store: the chain validates there, not against the client's store (group 4
    # before group 6), and the fix is the store's
    renewed = results["python"]["expired_root_renewed"]
    assert renewed["cause"] == "stale_trust_store" and renewed["evidence"]["also"] == ["cert_expired"]
    assert "Foreign Old Root" in renewed["summary"] and "out of date" in renewed["remediation"][0]


def test_every_missing_intermediate_is_named_and_a_wrong_aia_answer_is_said(results):
    hops = results["python"]["aia_two_hops"]
    assert "Foreign AIA Hop 2 CA,O=Foreign Trust, then CN=Foreign AIA Hop 1 CA" in hops["remediation"][0]
    assert len(hops["evidence"]["aia_urls"]) == 2 and "intermediates fetched via AIA" in hops["summary"]
    three = results["python"]["aia_two_found_then_404"]
    assert "Foreign AIA Low CA,O=Foreign Trust, then CN=Foreign AIA Middle CA" in three["remediation"][0]
    assert any("Foreign AIA Top CA" in s and "the server must send it too" in s for s in three["remediation"])
    store = results["python"]["store_intermediate_unknown_root"]
    assert "AIA supplied" not in store["summary"] and "client CA bundle holds" in store["summary"]
    assert "disabled (--no-aia)" in store["summary"]
    wrong = results["python"]["aia_wrong_certificate"]
    assert "no certificate that signs it" in wrong["summary"]
    assert not any("could not be fetched" in s or "download it" in s for s in wrong["remediation"])
    assert any("the CA's AIA URL is wrong" in s for s in wrong["remediation"])


def test_a_known_bad_root_the_client_trusts_is_a_warning_that_says_remove_it(results):
    doc = results["python"]["bad_root_trusted"]
    warning = next(w for w in doc["warnings"] if w["code"] == "proxy_interception")
    assert "remove it" in warning["message"] and "mitmproxy" in warning["message"]


def test_a_client_certificate_demanded_after_the_handshake_is_seen_from_one_harmless_request(results):
    for stack in ("python", "nginx"):
        if not results[stack]:
            continue
        doc = results[stack]["client_cert_post_handshake"]
        first = doc["evidence"]["probes"][0]
        assert first["ok"] is True and first["certificate_requested"] is True
        assert first["first_request"]["request"] == "GET /"
        assert first["first_request"]["status"].startswith("HTTP/1.1 400"), first["first_request"]
        assert "No required SSL certificate" in doc["summary"]
    optional = results["python"]["client_cert_optional"]["evidence"]["probes"][0]
    assert optional["first_request"]["status"].startswith("HTTP/1.1 200")
    healthy = results["python"]["healthy"]["evidence"]["probes"][0]
    assert "first_request" not in healthy, "nothing is sent to a server that asked for no certificate"


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", ["huge_subject", "long_chain_private", "oversized", "empty_eku",
                                  "malformed_aia_leaf_only"])
def test_output_stays_bounded_and_nothing_crashes(foreign, results, name):
    case = foreign.case(name)
    port = foreign.serve_python()[name]
    code, out, err = _cli("diagnose", f"https://{case.host}:{port}", "--resolve", f"{case.host}:{port}:127.0.0.1",
                          "--ca-bundle", case.ca_bundle, "--reference-ca-bundle", case.reference_ca_bundle, "--json")
    assert (code, err) == (1, "")
    line = out.splitlines()[0]
    assert len(line.encode()) <= MAX_JSON_LINE
    doc = json.loads(line)
    assert doc["cause"] == case.cause
    assert len(doc["summary"]) <= MAX_TEXT and all(len(s) <= MAX_TEXT for s in doc["remediation"])


def test_a_long_chain_is_followed_to_its_root_not_reported_missing_halfway(results):
    doc = results["python"]["long_chain_private"]
    client = doc["evidence"]["client_store"]
    assert len(client["path"]) == 16 and "missing_issuer" not in client


def test_one_bad_target_never_costs_another_its_line(foreign, tmp_path):
    ports = foreign.serve_python()
    names = ["empty_eku", "healthy", "malformed_aia_leaf_only", "huge_subject"]
    file = tmp_path / "targets.txt"
    file.write_text("".join(f"https://{foreign.case(n).host}:{ports[n]}\n" for n in names))
    resolve = [a for n in names for a in ("--resolve", f"{foreign.case(n).host}:{ports[n]}:127.0.0.1")]
    code, out, err = _cli("diagnose", "--from", str(file), *resolve, "--ca-bundle", foreign.case("healthy").ca_bundle,
                          "--json")
    assert err == ""
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["cause"] for d in docs] == [foreign.case(n).cause for n in names]


@pytest.mark.parametrize("name", [n for n in CASE_NAMES])
def test_a_naive_client_fails_exactly_where_the_case_says(foreign, results, name):
    """trustme-style: each failing case fails a plain verified client (and each healthy one does not)."""
    case = foreign.case(name)
    if "python" in case.stacks:
        port = foreign.serve_python()[name]
    else:
        _need_nginx(results)
        port = results["nginx_ports"][name]
    ctx = ssl.create_default_context(cafile=case.ca_bundle)
    if case.client_cert:
        ctx.load_cert_chain(case.client_cert, case.client_key)
    failed = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=case.host) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {case.host}\r\nConnection: close\r\n\r\n".encode())
                answer = tls.recv(4096)
                failed = not answer.startswith(b"HTTP/1.1 200")
    except (ssl.SSLError, OSError):
        failed = True
    # a trusted root whose private key is public: the danger is exactly that a naive client accepts it
    naive_accepts = name == "compromised_root_trusted"
    assert failed is (case.cause != "ok" and not naive_accepts)


def test_nginx_stack_reports_a_broken_config_in_one_line(tmp_path):
    if nginx_path() is None:
        pytest.skip("nginx is not installed")
    from dataclasses import replace

    from cxhealth.lab.foreign import ServerSpec

    bad = Case(name="broken", cause="ok", description="", host="broken.test",
               server=ServerSpec(chain=tmp_path / "missing.pem", key=tmp_path / "missing.key"),
               ca_bundle="", reference_ca_bundle="")
    with pytest.raises(NginxError) as caught:
        with NginxStack([replace(bad)]):
            pass
    assert "missing.pem" in str(caught.value)


def test_no_code_or_reason_a_foreign_case_provokes_is_unmapped(results):
    from cxhealth.tasks.tls import openssl_table as table

    for stack in STACKS:
        for name, doc in results[stack].items() if isinstance(results[stack], dict) else ():
            if not isinstance(doc, dict) or "evidence" not in doc:
                continue
            assert "unmapped" not in doc["evidence"], (stack, name, doc["evidence"]["unmapped"])
            code = doc["evidence"].get("verify_code")
            assert code is None or code in table.VERIFY_CODES, (stack, name, code)
