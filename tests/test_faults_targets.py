"""targets.toml mistakes (issue 14): one line each that names the problem, exit 2 — never
"internal error", never a 401 from the platform for a secret with a trailing newline."""

from __future__ import annotations

import pytest

from cxhealth.tasks.targets import MAX_ENDPOINTS, MAX_TARGETS, TargetConfigError, load_targets, resolve_secret
from tests.test_run_cli import run_cli

GOOD = ('[[target]]\nname = "t"\nplatform = "generic"\ntoken_url = "https://auth.example.test/token"\n'
        'api_base = "https://api.example.test"\nclient_id = "c"\nclient_secret_env = "T_SECRET"\n')


def _write(tmp_path, data: bytes):
    path = tmp_path / "targets.toml"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("value, words", [
    ("s3cret\n", "ends with a newline"),
    ("s3cret\r\n", "ends with a newline"),
    (" s3cret", "starts with whitespace"),
    ("s3cret ", "ends with whitespace"),
])
def test_whitespace_around_a_secret_is_named_not_sent(value, words) -> None:
    with pytest.raises(TargetConfigError) as err:
        resolve_secret("T_SECRET", {"T_SECRET": value}, target="t")
    message = str(err.value)
    assert words in message and "T_SECRET" in message and "s3cret" not in message and "\n" not in message


def test_run_with_a_trailing_newline_in_a_secret_is_exit_2_before_any_network(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("T_SECRET", "s3cret\n")
    code, out, err = run_cli("run", "--targets", str(_write(tmp_path, GOOD.encode())))
    assert code == 2 and "T_SECRET ends with a newline" in err and err.count("\n") == 1 and "s3cret" not in err


@pytest.mark.parametrize("encoding, words", [
    ("utf-16", "UTF-16 (little-endian)"),  # Python writes a BOM
    ("utf-16-be", "UTF-16 (big-endian, no BOM)"),
    ("utf-16-le", "UTF-16 (little-endian, no BOM)"),
    ("utf-32", "UTF-32 (little-endian)"),
])
def test_a_utf16_or_utf32_file_names_its_encoding(tmp_path, encoding, words) -> None:
    code, _, err = run_cli("run", "--targets", str(_write(tmp_path, GOOD.encode(encoding))))
    assert code == 2 and words in err and "save it as UTF-8" in err and "internal error" not in err


def test_a_binary_or_latin1_file_is_named(tmp_path) -> None:
    code, _, err = run_cli("run", "--targets", str(_write(tmp_path, b"\x7fELF\x02\x01\x01\x00" + bytes(64))))
    assert code == 2 and "not text" in err and "internal error" not in err
    code, _, err = run_cli("run", "--targets", str(_write(tmp_path, GOOD.replace('"c"', '"caf\xe9"').encode("latin-1"))))
    assert code == 2 and "not UTF-8 (byte 0xe9 on line 6)" in err


def test_a_utf8_bom_is_accepted(tmp_path) -> None:
    config = load_targets(_write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode()))
    assert [t.name for t in config.targets] == ["t"]


def test_limits_on_targets_and_endpoints(tmp_path) -> None:
    many = "".join(GOOD.replace('name = "t"', f'name = "t{i}"') for i in range(MAX_TARGETS + 1))
    with pytest.raises(TargetConfigError, match=f"{MAX_TARGETS + 1} \\[\\[target\\]\\] tables; at most {MAX_TARGETS}"):
        load_targets(_write(tmp_path, many.encode()))
    endpoints = ", ".join(f'"/v1/e{i}"' for i in range(MAX_ENDPOINTS + 1))
    with pytest.raises(TargetConfigError, match=f"endpoints: {MAX_ENDPOINTS + 1} entries; at most {MAX_ENDPOINTS}"):
        load_targets(_write(tmp_path, (GOOD + f"endpoints = [{endpoints}]\n").encode()))
    huge = GOOD + "endpoints = [" + ", ".join('"/x"' for _ in range(300_000)) + "]\n"
    code, _, err = run_cli("run", "--targets", str(_write(tmp_path, huge.encode())))
    assert code == 2 and "300000 entries; at most 100 per target" in err
    huger = GOOD + "endpoints = [" + ", ".join('"/api/v2/organizations/me"' for _ in range(300_000)) + "]\n"
    code, _, err = run_cli("run", "--targets", str(_write(tmp_path, huger.encode())))
    assert code == 2 and "larger than 4 MiB" in err
