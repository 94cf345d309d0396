"""Bad and unusual input to `cxhealth diagnose` (contract §1, "Bounds on input and output").

Given input a user could type — an encrypted client key, IPv6 in --resolve, an over-long
host name, a --from file with several bad lines — the command either runs as curl would
or says, in one line with exit 2, what is wrong; it never prompts and never prints a traceback.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
from cryptography.hazmat.primitives import serialization

from cxhealth.cli.main import main


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def encrypted_key(tls_lab, tmp_path):
    key = serialization.load_pem_private_key(tls_lab.client_key.read_bytes(), password=None)
    path = tmp_path / "client-encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"s3cret-passphrase")))
    return path


def test_an_encrypted_key_without_its_variable_is_one_line_that_says_so(tls_lab, encrypted_key):
    s = tls_lab.scenarios["mtls_ok"]
    args = [a for a in s.diagnose_args]
    args[args.index("--client-key") + 1] = str(encrypted_key)
    code, out, err = run_cli("diagnose", s.target, *args)
    assert (code, out) == (2, "")
    assert "the key is encrypted, pass --client-key-password-env" in err and len(err.strip().splitlines()) == 1


def test_an_encrypted_key_is_read_with_the_passphrase_the_variable_names(tls_lab, encrypted_key, monkeypatch):
    s = tls_lab.scenarios["mtls_ok"]
    args = list(s.diagnose_args)
    args[args.index("--client-key") + 1] = str(encrypted_key)
    monkeypatch.setenv("CXH_TEST_KEY_PASS", "s3cret-passphrase")
    code, out, err = run_cli("diagnose", s.target, *args, "--client-key-password-env", "CXH_TEST_KEY_PASS", "--json")
    assert (code, err) == (0, ""), out
    doc = json.loads(out)
    assert doc["cause"] == "ok"
    assert "s3cret-passphrase" not in out
    monkeypatch.setenv("CXH_TEST_KEY_PASS", "wrong")
    code, out, err = run_cli("diagnose", s.target, *args, "--client-key-password-env", "CXH_TEST_KEY_PASS")
    assert code == 2 and "does not decrypt" in err and "wrong" not in err


def test_an_encrypted_key_never_prompts_even_on_a_terminal(tls_lab, encrypted_key):
    """OpenSSL asks 'Enter PEM pass phrase:' on the tty; under a pseudo-terminal the tool must still
    answer with one line and exit 2, within seconds, never waiting for typing."""
    import pty

    s = tls_lab.scenarios["mtls_ok"]
    args = list(s.diagnose_args)
    args[args.index("--client-key") + 1] = str(encrypted_key)
    controller, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cxhealth", "diagnose", s.target, *args],
                            stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    try:
        assert proc.wait(timeout=60) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
    output = b""
    try:
        while True:
            chunk = os.read(controller, 4096)
            if not chunk:
                break
            output += chunk
    except OSError:
        pass
    os.close(controller)
    assert b"pass phrase" not in output.lower() and b"the key is encrypted" in output


@pytest.mark.parametrize("spec", ["{host}:{port}:[::1],127.0.0.1", "{host}:{port}:127.0.0.1"])
def test_resolve_takes_ipv6_as_curl_does(tls_lab, spec):
    s = tls_lab.scenarios["healthy"]
    code, out, err = run_cli("diagnose", s.target, "--resolve", spec.format(host=s.host, port=s.port),
                             "--ca-bundle", s.ca_bundle, "--json")
    assert err == ""
    doc = json.loads(out)
    assert doc["target"]["address"] in ("::1", "127.0.0.1")


def test_an_ipv6_host_in_resolve_is_accepted(tls_lab):
    code, out, err = run_cli("diagnose", "https://[::1]:9/", "--resolve", "[::1]:9:127.0.0.1", "--json",
                             "--timeout", "1")
    assert err == "" and json.loads(out)["target"]["address"] == "127.0.0.1"


@pytest.mark.parametrize("target, needle", [
    ("a" * 64 + ".example.com", "over DNS's limit of 63"),
    (".".join(["abcdefghi"] * 30) + ".com", "over DNS's limit of 253"),
    ("a..example.com", "empty label"),
])
def test_host_names_over_dns_limits_are_refused(target, needle):
    code, out, err = run_cli("diagnose", target)
    assert (code, out) == (2, "") and needle in err and len(err.strip().splitlines()) == 1


def test_from_names_every_malformed_line(tmp_path):
    file = tmp_path / "targets.txt"
    file.write_text("ok.example.com\nftp://bad.example.com\n# a comment\nhttps://x.example.com:99999\n"
                    + "b" * 70 + ".example.com\n")
    code, out, err = run_cli("diagnose", "--from", str(file))
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert "3 malformed" in err and "line 2" in err and "line 4" in err and "line 5" in err


def test_nothing_but_the_diagnosis_reaches_stderr_for_legacy_chains(tls_lab):
    """A SHA-1 root and negative serials make cryptography warn; the user sees none of it."""
    s = tls_lab.scenarios["warn_weak_signature"]
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "cxhealth", "diagnose", s.target,
                           *s.diagnose_args, "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""


@pytest.mark.parametrize("argv", [
    ["diagnose", "a.test", "--resolve", "a.test:443:127.0.0.1", "--json", "--resolve=b.test:443:[::1]", "b.test"],
    ["diagnose", "--from", "f.txt", "--resolve", "x.test:1:192.0.2.1", "--resolve", "x.test:1:192.0.2.2", "x.test"],
    ["diagnose", "h.test", "--timeout", "-1", "--resolve", "h.test:443:192.0.2.1", "--no-aia"],
    ["diagnose", "--res", "x.test:1:192.0.2.1", "--resolve", "y.test:1:192.0.2.2", "y.test"],   # abbreviation
    ["diagnose", "--resolve", "y.test:1:192.0.2.2", "--", "--resolve"],
    ["diagnose", "a.test", "--resolve", "a.test:443:192.0.2.1", "b.test"],   # two runs of targets: refused
    ["diagnose", "--resolve", "a.test:443:192.0.2.1", "a.test", "b.test", "--resolve=b.test:443:192.0.2.2"],
])
def test_resolve_pairs_taken_out_before_argparse_parse_as_argparse_does(argv):
    """2,000 --resolve pairs made argparse quadratic; taking them out first must not change a thing."""
    from cxhealth.cli.errors import UsageError
    from cxhealth.cli.main import _build_parser, take_resolves

    parser = _build_parser()

    def outcome(args: list[str], taken: list[str] = ()) -> object:
        try:
            parsed = parser.parse_args(args)
        except UsageError as exc:
            return str(exc)
        parsed.resolve = list(taken) + parsed.resolve
        return vars(parsed)

    split = take_resolves(parser, argv)
    if argv[1] == "--from":
        assert split is not None and len(split[1]) == 2  # a fleet's command line is taken apart
    if split is not None:
        assert outcome(*split) == outcome(argv)


@pytest.mark.parametrize("argv, needle", [
    (["diagnose", "--sni", "--resolve", "h.test:443:192.0.2.1", "h.test"], "--sni: expected one argument"),
    (["diagnose", "h.test", "--resolve"], "--resolve: expected one argument"),
    (["diagnose", "h.test", "--resolve", "h.test:443:192.0.2.1", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_bad_command_line_with_resolve_pairs_is_refused_as_before(argv, needle):
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ""
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("argv, needle", [
    (["--timeout", "inf"], "at most 300"),        # would never give up on a silent server
    (["--timeout", "1e9"], "at most 300"),
    (["--timeout", "nan"], "above 0"),
    (["--expect-issuer", ""], "--expect-issuer needs a text"),  # an empty text matches every chain
    (["--expect-issuer", "  "], "--expect-issuer needs a text"),
    (["--resolve", "api.example.com:443:[::1"], "unclosed bracket"),
    (["--resolve", "api.example.com:443:::1]"], "unclosed bracket"),
    (["--sni", "bad name"], "which no DNS name does"),
    (["--ciphers", ""], "--ciphers needs an OpenSSL cipher string"),
])
def test_options_that_would_hang_or_match_everything_are_refused(argv, needle):
    code, out, err = run_cli("diagnose", "https://api.example.com", *argv)
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_largest_timeout_is_still_accepted():
    from cxhealth.cli.diagnose import MAX_TIMEOUT_S, build_run
    from cxhealth.cli.main import _build_parser

    args = _build_parser().parse_args(["diagnose", "https://api.example.com", "--timeout", str(MAX_TIMEOUT_S)])
    assert build_run(args)[1].timeout == MAX_TIMEOUT_S
