"""The rules that let a fleet scale (issue 16): which shard checks a target, and when a
target's own artifact is written. Pure functions; the flow tests (test_flows.py) run them
inside real flow runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from cxhealth.tasks.shards import ShardSpecError, in_shard, parse_shard, select, shard_index

NAMES = [f"fleet-{i:05d}" for i in range(1000)] + ["genesys-prod", "nice-eu", "partner ü"]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_the_shards_partition_the_targets(n):
    shards = [parse_shard(f"{k}/{n}") for k in range(1, n + 1)]
    owners = {name: [s for s in shards if in_shard(name, s)] for name in NAMES}
    assert all(len(o) == 1 for o in owners.values()), "every target in exactly one shard"
    picked = [select(NAMES, s, name=str) for s in shards]
    assert sorted(x for p in picked for x in p) == sorted(NAMES)
    if n > 1:  # spread: no shard empty, none with more than twice its share
        assert all(0 < len(p) < 2 * len(NAMES) / n for p in picked), [len(p) for p in picked]


def test_a_targets_shard_does_not_depend_on_the_others():
    alone = [select([name], parse_shard(f"{k}/4"), name=str) for name in NAMES[:50] for k in range(1, 5)]
    together = [select(NAMES[:50], parse_shard(f"{k}/4"), name=str) for k in range(1, 5)]
    assert sorted(x for a in alone for x in a) == sorted(NAMES[:50])
    for k, names in enumerate(together):
        assert all(shard_index(x, 4) == k for x in names)


def test_the_rule_is_sha256_of_the_name_the_same_in_every_process():
    """Python's hash() of a string changes per process (PYTHONHASHSEED); the rule must not."""
    import hashlib

    assert shard_index("genesys-prod", 1000) == int.from_bytes(
        hashlib.sha256(b"genesys-prod").digest()[:8], "big") % 1000
    code = ("import json; from cxhealth.tasks.shards import shard_index; "
            f"print(json.dumps([shard_index(n, 7) for n in {NAMES[:200]!r}]))")
    seen = []
    for seed in ("1", "2", "random"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        seen.append(json.loads(out))
    assert seen[0] == seen[1] == seen[2] == [shard_index(n, 7) for n in NAMES[:200]]


@pytest.mark.parametrize("spec,needle", [
    ("0/3", "numbered from 1"), ("4/3", "between 1 and n (3)"), ("1/0", "n must be between 1 and 1000"),
    ("1/1001", "between 1 and 1000"), ("2", "expected 'k/n'"), ("a/b", "expected 'k/n'"), ("1/3/4", "expected 'k/n'"),
    ("-1/3", "expected 'k/n'"), ("1.0/3", "expected 'k/n'"),
])
def test_a_bad_shard_spec_is_one_line_naming_it(spec, needle):
    with pytest.raises(ShardSpecError) as info:
        parse_shard(spec)
    text = str(info.value)
    assert needle in text and repr(spec) in text and "\n" not in text


def test_no_shard_is_every_target():
    assert parse_shard(None) is None and parse_shard("") is None and parse_shard(" 2 / 5 ") == (2, 5)
    assert select(NAMES, None, name=str) == NAMES


def test_the_cli_rejects_a_bad_shard_in_one_line(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text('[[target]]\nname = "x"\nplatform = "generic"\nclient_id = "c"\nclient_secret_env = "S"\n'
                    'token_url = "https://127.0.0.1:9/t"\napi_base = "https://127.0.0.1:9"\n')
    proc = subprocess.run([sys.executable, "-m", "cxhealth", "run", "--targets", str(path), "--shard", "3/2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "shard '3/2'" in proc.stderr and "Traceback" not in proc.stderr


def test_an_empty_shard_checks_nothing_and_says_so(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text('[[target]]\nname = "x"\nplatform = "generic"\nclient_id = "c"\nclient_secret_env = "S"\n'
                    'token_url = "https://127.0.0.1:9/t"\napi_base = "https://127.0.0.1:9"\n')
    empty = next(f"{k}/3" for k in (1, 2, 3) if not in_shard("x", parse_shard(f"{k}/3")))
    proc = subprocess.run([sys.executable, "-m", "cxhealth", "run", "--targets", str(path), "--shard", empty,
                           "--json", "--no-alerts"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "S": "secret-value"})
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"healthy": True, "targets": []}
    assert f"shard {empty}: none of the file's 1 target(s) is in this shard" in proc.stderr


# --- when a target's own artifact is written ---------------------------------------------

def _latest(description, age_s=60.0):
    return SimpleNamespace(description=description,
                           updated=datetime.now(timezone.utc) - timedelta(seconds=age_s))


def test_a_target_artifact_is_written_only_when_it_is_news():
    from cxhealth.flows.integration_health import TARGET_REFRESH_S, target_artifact_reason as why

    now = time.time()
    ok, bad = {"name": "a", "healthy": True}, {"name": "a", "healthy": False, "cause": "cert_expired"}
    assert why(ok, _latest("healthy: a"), True, now) is None, "healthy, and its latest version says so"
    assert why(bad, _latest("UNHEALTHY: a cert_expired"), True, now) == "unhealthy"
    assert why(bad, _latest("healthy: a"), True, now) == "unhealthy"
    assert why(ok, _latest("UNHEALTHY: a cert_expired"), True, now) == "recovered", "never stale red"
    assert why(ok, _latest(None), True, now) == "recovered"
    assert why(ok, None, True, now) == "first"
    assert why(ok, _latest("healthy: a", TARGET_REFRESH_S + 60), True, now) == "refresh"
    assert why(ok, None, False, now) == "unknown", "cannot tell: write it"


def test_the_shard_deployments_cover_every_shard_once():
    """deployments/fleet-shards.yaml: shards 1/n … n/n, one deployment each, one n, same flow."""
    from pathlib import Path

    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "deployments" / "fleet-shards.yaml").read_text())
    deps = spec["deployments"]
    shards = [parse_shard(d["parameters"]["shard"]) for d in deps]
    n = {s[1] for s in shards}
    assert len(n) == 1 and sorted(k for k, _ in shards) == list(range(1, n.pop() + 1))
    assert {d["entrypoint"] for d in deps} == {"cxhealth.flows.integration_health:integration_health"}
    assert all(d["concurrency_limit"] == 1 and d["work_pool"]["name"] == "cxhealth-pool" for d in deps)
