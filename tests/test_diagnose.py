"""`cxhealth diagnose` against the lab: every cause and warning, with evidence.

Given a lab scenario, when cxhealth diagnoses it with the arguments a user
would pass, then the cause, the evidence and the remediation are the ones the
scenario simulates. (tests/test_lab_scenarios.py proves the naive client fails.)
"""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout

import pytest

from cxhealth.cli.main import main

CONTRACT_KEYS = {"target", "ok", "cause", "summary", "remediation", "protocol", "cipher", "handshake_ms",
                 "chain", "warnings", "evidence"}
CHAIN_KEYS = {"subject", "issuer", "not_before", "not_after", "san", "sha256", "is_ca"}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def diagnose_json(scenario, *extra: str) -> tuple[int, dict]:
    code, out, err = run_cli("diagnose", scenario.target, *scenario.diagnose_args, "--json", *extra)
    assert err == "", err
    return code, json.loads(out)


@pytest.fixture(scope="module")
def results(tls_lab):
    """Every scenario diagnosed once, in one concurrent CLI call per scenario."""
    out = {}
    for name, scenario in tls_lab.scenarios.items():
        extra = ("--timeout", "1") if name in ("tcp_timeout", "handshake_timeout") else ()
        start = time.perf_counter()
        code, doc = diagnose_json(scenario, *extra)
        out[name] = (code, doc, time.perf_counter() - start)
    return out


def test_each_scenario_is_diagnosed_with_its_cause_and_warnings(tls_lab, results):
    wrong = {}
    for name, scenario in tls_lab.scenarios.items():
        code, doc, _ = results[name]
        got_warnings = {w["code"] for w in doc["warnings"]}
        if doc["cause"] != scenario.cause or not set(scenario.warnings) <= got_warnings:
            wrong[name] = (doc["cause"], sorted(got_warnings), doc["summary"])
        assert code == (0 if scenario.cause == "ok" else 1), name
        assert doc["ok"] is (scenario.cause == "ok")
    assert wrong == {}


def test_json_has_the_contract_keys(results):
    for name, (_, doc, _) in results.items():
        assert CONTRACT_KEYS <= doc.keys(), name
        assert {"host", "port", "sni", "address"} <= doc["target"].keys()
        for cert in doc["chain"]:
            assert CHAIN_KEYS <= cert.keys(), name
        for w in doc["warnings"]:
            assert set(w) == {"code", "message"}
        assert isinstance(doc["remediation"], list)
        if doc["cause"] != "ok":
            assert doc["remediation"], f"{name}: a failure must say what to do"
            assert doc["summary"]


def test_failing_diagnoses_stay_within_five_handshakes_and_three_timeouts(tls_lab, results):
    for name, (_, doc, elapsed) in results.items():
        assert doc["evidence"]["handshakes"] <= 5, name
    # The two scenarios that wait for a timeout: bounded by 3 x --timeout (1 s) plus process noise.
    for name in ("tcp_timeout", "handshake_timeout"):
        assert results[name][2] < 3 * 1 + 1.5, name


def test_healthy_endpoint_reports_protocol_cipher_chain_and_timings(tls_lab, results):
    _, doc, _ = results["healthy"]
    assert doc["protocol"] == "TLSv1.3"
    assert doc["cipher"].startswith("TLS_")
    assert doc["handshake_ms"] > 0
    assert doc["target"]["address"] == "127.0.0.1"
    assert doc["target"]["sni"] == tls_lab.scenarios["healthy"].host
    leaf, issuer = doc["chain"][0], doc["chain"][1]
    assert f"DNS:{tls_lab.scenarios['healthy'].host}" in leaf["san"]
    assert leaf["is_ca"] is False and issuer["is_ca"] is True
    assert leaf["issuer"] == issuer["subject"]
    assert len(leaf["sha256"]) == 64
    probe = doc["evidence"]["probes"][0]
    assert probe["connect_ms"] >= 0 and probe["handshake_ms"] > 0
    assert doc["warnings"] == []


def test_a_healthy_endpoint_costs_exactly_one_connection(tls_lab, tmp_path):
    """Issue 11: a healthy diagnosis is one TCP connection and one TLS handshake, counted by the
    lab's servers (no second probe, AIA fetch, address enumeration or request connection); the
    healthy scenarios with warnings too (an optional client certificate's one request goes over
    the verified connection)."""
    fleet = tls_lab.healthy_fleet(20)
    file = tmp_path / "fleet.txt"
    file.write_text("".join(s.target + "\n" for s in fleet))
    resolve = [a for s in fleet for a in ("--resolve", f"{s.host}:{s.port}:127.0.0.1")]
    before = [s.connections.value for s in fleet]
    aia_before = tls_lab.aia_fetches.value
    code, out, err = run_cli("diagnose", "--from", str(file), *resolve, "--ca-bundle", str(tls_lab.client_store),
                             "--json", "--concurrency", "20")
    assert (code, err) == (0, "")
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["cause"] for d in docs] == ["ok"] * 20
    assert [len(d["evidence"]["probes"]) for d in docs] == [1] * 20
    assert [s.connections.value - b for s, b in zip(fleet, before)] == [1] * 20
    extra = {}
    for name, scenario in tls_lab.scenarios.items():
        if scenario.cause != "ok":
            continue
        start = scenario.connections.value
        code, doc = diagnose_json(scenario)
        assert code == 0 and doc["ok"], name
        if scenario.connections.value - start != 1 or len(doc["evidence"]["probes"]) != 1:
            extra[name] = (scenario.connections.value - start, [p["probe"] for p in doc["evidence"]["probes"]])
    assert extra == {}
    assert tls_lab.aia_fetches.value == aia_before


def test_expired_leaf_names_the_certificate_and_verify_code(results):
    _, doc, _ = results["cert_expired"]
    assert doc["evidence"]["verify_code"] == 10
    leaf_name = doc["chain"][0]["san"][0].split(":", 1)[1]
    assert "expired" in doc["summary"] and leaf_name in doc["summary"]
    assert doc["chain"], "the chain is captured by the explain-only probe"


def test_incomplete_chain_is_completed_through_aia_once(tls_lab):
    scenario = tls_lab.scenarios["incomplete_chain"]
    before = int(scenario.aia_fetches)
    _, doc = diagnose_json(scenario)
    assert doc["cause"] == "incomplete_chain"
    assert int(scenario.aia_fetches) - before == 1
    assert doc["evidence"]["aia"][0]["ok"] is True
    assert len(doc["chain"]) == 1, "the server sent only its leaf"
    assert any("intermediate" in step for step in doc["remediation"])


def test_no_aia_fetches_nothing_and_still_names_the_missing_intermediate(tls_lab):
    scenario = tls_lab.scenarios["incomplete_chain"]
    before = int(scenario.aia_fetches)
    _, doc = diagnose_json(scenario, "--no-aia")
    assert int(scenario.aia_fetches) == before
    assert doc["cause"] == "incomplete_chain"
    assert doc["evidence"]["aia"] == "disabled (--no-aia)"


def test_a_healthy_chain_is_said_to_validate_to_its_root_not_its_issuer(results):
    _, doc, _ = results["healthy"]
    assert "validates to the root CX Lab Public Root R1" in doc["summary"], doc["summary"]


def test_an_ip_target_sends_no_sni_and_says_so(tls_lab):
    """Python sends no SNI to an IP address (RFC 6066 forbids it): the report must not claim one."""
    healthy, needs_sni = tls_lab.scenarios["healthy"], tls_lab.scenarios["sni_required"]
    store = ("--ca-bundle", healthy.ca_bundle, "--reference-ca-bundle", healthy.reference_ca_bundle, "--json")
    code, out, _ = run_cli("diagnose", f"127.0.0.1:{healthy.port}", *store)
    doc = json.loads(out)
    assert (code, doc["cause"], doc["target"]["sni"]) == (1, "hostname_mismatch", None)
    code, out, _ = run_cli("diagnose", f"127.0.0.1:{needs_sni.port}", *store)
    doc = json.loads(out)
    assert (doc["cause"], doc["target"]["sni"]) == ("sni_required", None), doc["summary"]
    assert "without SNI" in doc["summary"] and "IP address" in doc["summary"]
    assert "127.0.0.1" not in doc["remediation"][0], "never advise sending an IP address as SNI"


def test_an_sni_override_is_sent_but_the_certificate_is_checked_against_the_host(tls_lab):
    """--sni NAME changes what is sent, not what the certificate must cover: a server that
    ignores SNI is healthy; one that answers an unknown SNI with another certificate is not."""
    healthy, needs_sni = tls_lab.scenarios["healthy"], tls_lab.scenarios["sni_required"]
    code, doc = diagnose_json(healthy, "--sni", "other.example.test")
    assert (code, doc["cause"], doc["target"]["sni"]) == (0, "ok", "other.example.test"), doc["summary"]
    args = [a for a in needs_sni.diagnose_args if a != "--no-sni"]
    code, out, _ = run_cli("diagnose", needs_sni.target, *args, "--sni", "other.example.test", "--json")
    doc = json.loads(out)
    assert doc["cause"] == "sni_required", doc["summary"]
    assert "other.example.test" in doc["summary"] and needs_sni.host in doc["summary"]


def test_code_20_causes_are_told_apart_by_the_stores(results):
    stale = results["stale_trust_store"][1]["evidence"]
    assert stale["verify_code"] == 20
    assert stale["reference_store"]["complete"] is True and stale["client_store"]["complete"] is False
    private = results["untrusted_root"][1]["evidence"]
    assert private["reference_store"]["complete"] is False and private["client_store"]["complete"] is False
    intercepted = results["proxy_interception"][1]
    assert "Zscaler" in intercepted["summary"]
    assert any("inspection" in step for step in intercepted["remediation"])


def test_handshake_failures_are_explained_by_one_change_per_probe(results):
    version = results["protocol_version_mismatch"][1]
    assert version["evidence"]["server_version"] == "TLSv1.3"
    assert any("TLS 1.3" in step for step in version["remediation"])
    cipher = results["cipher_mismatch"][1]
    assert cipher["evidence"]["server_cipher"]
    assert [p["probe"] for p in cipher["evidence"]["probes"] if p["ok"]] == ["any_cipher"]
    sni = results["sni_required"][1]
    assert sni["target"]["sni"] is None
    assert sni["evidence"]["sni_probe"] == "accepted"
    not_tls = results["not_tls"][1]
    assert not_tls["evidence"]["reason"] == "WRONG_VERSION_NUMBER"
    reset = results["connection_reset"][1]
    assert reset["evidence"]["error_kind"] == "reset"


def test_tls13_client_certificate_demand_is_seen_after_the_handshake(results):
    doc = results["client_cert_required"][1]
    assert doc["cause"] == "client_cert_required"
    assert doc["evidence"]["probes"][0]["protocol"] == "TLSv1.3"
    tls12 = results["client_cert_required_tls12"][1]
    assert any(p["probe"] == "dummy_client_cert" for p in tls12["evidence"]["probes"])


def test_many_targets_print_json_lines_in_input_order_and_exit_with_the_worst(tls_lab, tmp_path):
    names = ["healthy", "cert_expired", "warn_tls12_only_policy"]
    lab = tls_lab.scenarios
    file = tmp_path / "targets.txt"
    file.write_text("# comment\n" + "\n".join(lab[n].target for n in names[:2]) + "\n")
    resolve = [a for n in names[:2] for a in ("--resolve", f"{lab[n].host}:{lab[n].port}:127.0.0.1")]
    code, out, _ = run_cli("diagnose", "--from", str(file), *resolve, "--ca-bundle", str(tls_lab.client_store),
                           "--json", "--concurrency", "2")
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["target"]["port"] for d in docs] == [lab[n].port for n in names[:2]]
    assert [d["cause"] for d in docs] == ["ok", "cert_expired"]
    assert code == 1


def test_human_report_says_what_why_and_what_to_do_with_a_chain_tree(tls_lab):
    scenario = tls_lab.scenarios["cert_expired"]
    code, out, _ = run_cli("diagnose", scenario.target, *scenario.diagnose_args)
    assert code == 1
    assert "cert_expired" in out and "What to do:" in out and "Chain as sent" in out and "EXPIRED" in out
    assert "`- " in out  # the issuer is drawn under the leaf


@pytest.mark.parametrize("argv, needle", [
    (["https://"], "not https://HOST"),
    (["https://example.com:99999"], "port"),
    (["https://example.com:0"], "out of range"),
    (["ftp://example.com"], "only https://"),
    (["example.com", "--pin", "sha256/not-base64!"], "--pin"),
    (["example.com", "--pin", "md5/AAAA"], "--pin"),
    (["example.com", "--pin", "sha256/AAAA"], "32"),
    (["example.com", "--ca-bundle", "/nonexistent/ca.pem"], "no such file"),
    (["example.com", "--ca-bundle", "/etc/hostname"], "not a PEM"),
    (["example.com", "--reference-ca-bundle", "/"], "directory"),
    (["example.com", "--resolve", "example.com:443"], "HOST:PORT:ADDR"),
    (["example.com", "--resolve", "example.com:443:not-an-ip"], "not an IP"),
    (["example.com", "--tls-min", "1.3", "--tls-max", "1.2"], "above"),
    (["example.com", "--tls-max", "2.0"], "unknown TLS version"),
    (["example.com", "--ciphers", "NOPE-NOTHING"], "cipher"),
    (["example.com", "--timeout", "0"], "--timeout"),
    (["example.com", "--timeout", "abc"], "invalid float"),
    (["--from", "/nonexistent/targets.txt"], "no such file"),
    ([], "no TARGET"),
    (["example.com", "--sni", "a", "--no-sni"], "not allowed"),
])
def test_bad_input_is_one_line_exit_2_no_traceback(argv, needle):
    code, out, err = run_cli("diagnose", *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert needle in err


def test_a_client_key_without_cert_is_refused(tls_lab):
    code, _, err = run_cli("diagnose", "example.com", "--client-key", str(tls_lab.client_key))
    assert code == 2 and "--client-key needs --client-cert" in err


def test_diagnose_stays_light_it_imports_neither_prefect_nor_any_other_heavy_library(tls_lab):
    """Given a healthy endpoint, when `cxhealth diagnose` runs in a fresh interpreter, then none of the
    libraries only the flows, the HTTP checks, the stores or Slack need is in sys.modules afterwards."""
    import json
    import subprocess
    import sys

    heavy = ["prefect", "httpx", "pydantic", "slack_sdk", "redis", "tenacity", "anyio", "sqlalchemy"]
    scenario = tls_lab.scenarios["healthy"]
    code = ("import sys, json, cxhealth.cli.main as c; rc = c.main(['diagnose', %r, *%r, '--json']);"
            "print(json.dumps(sorted(m for m in %r if m in sys.modules))); sys.exit(rc)") % (
        scenario.target, list(scenario.diagnose_args), heavy)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_every_code_and_reason_the_lab_provokes_is_in_the_one_table(results):
    """httpx-style: no OpenSSL evidence the lab can produce is left unmapped (never a silent cipher_mismatch)."""
    from cxhealth.tasks.tls import openssl_table as table

    unmapped = {}
    for name, (_, doc, _) in results.items():
        ev = doc["evidence"]
        for probe in ev["probes"]:
            if probe.get("verify_code") is not None and probe["verify_code"] not in table.VERIFY_CODES:
                unmapped[name] = probe["verify_code"]
            reason = probe.get("reason")
            if reason and probe.get("error_kind") == "tls_error" and reason not in table.HANDSHAKE_REASONS:
                unmapped[name] = reason
        assert "unmapped" not in ev, (name, ev.get("unmapped"))
    assert unmapped == {}


def test_weak_and_rule_breaking_chains_name_the_rule_and_the_certificate(results):
    weak = results["weak_crypto"][1]
    assert weak["evidence"]["verify_code"] == 66 and weak["evidence"]["rule"] == "key size"
    assert "weak-crypto" in weak["evidence"]["certificate"]
    assert not any("--ca-bundle" in step or "add its root" in step for step in weak["remediation"])
    rule = results["invalid_chain"][1]
    assert rule["evidence"]["verify_code"] == 26
    assert "extended key usage" in rule["evidence"]["rule"] and "invalid-chain" in rule["evidence"]["certificate"]
    assert not any("add its root" in step for step in rule["remediation"])


def test_cipher_mismatch_never_advises_allowing_a_version_the_policy_allows(results):
    doc = results["cipher_mismatch"][1]
    assert not any("Allow TLS 1.3" in step for step in doc["remediation"]), doc["remediation"]
