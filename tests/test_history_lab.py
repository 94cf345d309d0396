"""History against the changing lab (contract §4, issue 15's "done when").

Real TLS servers on loopback whose TLS changes between checks; the checks are
the real ones (tasks.health.check_targets), recorded by the one recording step
with an injected clock (five minutes per check) into a SQLite store of the test.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import urllib.request
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cxhealth.cli.main import main
from cxhealth.lab.changing import ChangingTLSServer
from cxhealth.tasks.health import check_targets
from cxhealth.tasks.history import open_history_store, record_reports
from cxhealth.tasks.runtime import breaker_for
from cxhealth.tasks.targets import load_targets

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def _toml_value(v):
    return json.dumps(v)


def write_targets(path: Path, targets: list[dict], tmp: Path) -> Path:
    lines = [f'[breaker]\nthreshold = 1000\nstore = "sqlite:///{tmp}/breaker.sqlite3"\n',
             f'[history]\nstore = "sqlite:///{tmp}/history.sqlite3"\n']
    for t in targets:
        lines.append("[[target]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in t.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Checker:
    """Runs the real checks of a targets file and records them, one check every five minutes."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.config = load_targets(path)
        self.env = env
        self.now = T0

    def check(self) -> dict[str, dict]:
        async def go():
            breaker = breaker_for(self.config)
            try:
                return await check_targets(list(self.config.targets), breaker, self.env)
            finally:
                breaker.close()

        docs = [r.to_dict() for r in asyncio.run(go())]
        self.now += timedelta(minutes=5)
        at = self.now
        assert record_reports(self.config.history, docs, clock=lambda: at) == []
        return {d["name"]: d for d in docs}


@pytest.fixture(scope="module")
def changing():
    with ChangingTLSServer() as server:
        yield server


def test_each_drift_once_and_persistence(changing, tmp_path):
    path = write_targets(tmp_path / "targets.toml", [changing.target_values("changing")], tmp_path)
    checker = Checker(path, changing.env())
    seen: list[tuple[str, list[str], dict]] = []

    def run(label: str, n: int = 1) -> None:
        for _ in range(n):
            doc = checker.check()["changing"]
            seen.append((label, [d["code"] for d in doc["drift"]], doc))

    run("baseline", 6)
    changing.break_()
    run("one-off failure")
    changing.recover()
    run("recovered")
    changing.set_versions("1.2", "1.2")
    run("tls 1.2 only", 2)
    changing.set_cipher("ECDHE-ECDSA-AES128-GCM-SHA256")
    run("cipher", 2)
    changing.rotate_intermediate()
    run("new intermediate", 2)
    changing.renew_leaf()
    run("renewed", 2)
    changing.rekey_leaf()
    run("rekeyed", 2)
    changing.slow(0.3)
    run("slow", 5)
    changing.slow(0)
    changing.break_()
    run("broken", 3)
    changing.recover()

    by_label = [(label, codes) for label, codes, _ in seen]
    drifted = [(label, codes) for label, codes in by_label if codes]
    assert drifted == [("tls 1.2 only", ["protocol_changed"]), ("cipher", ["cipher_changed"]),
                       ("new intermediate", ["issuer_changed"]), ("renewed", ["cert_renewed"]),
                       ("rekeyed", ["key_changed"]), ("slow", ["latency_regression"])], by_label
    # each appears on the check where its change happened (the first of its label; latency: the third slow one)
    firsts = {label: i for i, (label, _) in reversed(list(enumerate(by_label)))}
    for label, codes in drifted:
        index = next(i for i, (l2, c) in enumerate(by_label) if c == codes)
        assert index == firsts[label] + (2 if label == "slow" else 0)
    protocol = next(d for _, c, doc in seen for d in doc["drift"] if d["code"] == "protocol_changed")
    assert (protocol["from"], protocol["to"]) == ("TLSv1.3", "TLSv1.2") and protocol["host"] == changing.host

    one_off = seen[6][2]
    assert not one_off["healthy"] and one_off["persistence"] == "transient"
    broken = [doc for label, _, doc in seen if label == "broken"]
    assert [d["persistence"] for d in broken] == ["transient", "persistent", "persistent"]
    assert broken[2]["persistence_since"] == broken[1]["persistence_since"] == broken[0]["persistence_since"]
    assert all("persistence" not in doc for label, _, doc in seen if doc["healthy"])

    # the store holds each drift once; history shows them
    with open_history_store(f"sqlite:///{tmp_path}/history.sqlite3") as store:
        assert sorted(str(d.code) for d in store.drift_events()) == sorted(c for _, c in drifted for c in c)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["history", changing.host, "--targets", str(path), "--since", "30d", "--json"]) == 0
    items = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = {i["kind"] for i in items}
    assert kinds == {"observation", "drift", "expiry"}
    drift_items = [i for i in items if i["kind"] == "drift"]
    assert {i["code"] for i in drift_items} == {c for _, cs in drifted for c in cs}
    assert set(drift_items[0]) >= {"code", "host", "address", "from", "to", "at"}
    assert changing.client_secret not in out.getvalue()


@pytest.fixture(scope="module")
def pool():
    with ChangingTLSServer(addresses=("127.0.0.2", "127.0.0.3")) as server:
        server.set_versions("1.2", "1.2", address="127.0.0.2")
        server.set_versions("1.3", "1.3", address="127.0.0.3")
        yield server


def test_two_pool_host_is_split_and_intermittent_and_metrics_serve_it(pool, tmp_path):
    path = write_targets(tmp_path / "targets.toml", [pool.target_values("pool-wide"),
                                                      pool.target_values("pool-capped", tls_max="1.2")], tmp_path)
    checker = Checker(path, pool.env())
    first = checker.check()
    second = checker.check()
    wide, capped = first["pool-wide"], first["pool-capped"]
    # a client allowing 1.2-1.3 succeeds on both, with different versions: healthy, but a split pool
    assert wide["healthy"] and [d["code"] for d in wide["drift"]] == ["split_pool"]
    # a client capped at 1.2 fails on the TLS 1.3-only member only
    assert not capped["healthy"] and capped["cause"] == "protocol_version_mismatch"
    assert f"1 of 2 addresses of {pool.host}:{pool.port} refuse TLS 1.2 (127.0.0.3)" in capped["summary"]
    assert [(d["code"], d["address"]) for d in capped["drift"]] == [("split_pool", "127.0.0.3")]
    assert capped["persistence"] == "intermittent"
    assert second["pool-capped"]["drift"] == [] and second["pool-wide"]["drift"] == []
    assert second["pool-capped"]["persistence"] == "intermittent"
    addresses = capped["handshake"]["evidence"]["addresses"]
    assert [(a["address"], a["ok"]) for a in addresses] == [("127.0.0.2", True), ("127.0.0.3", False)]

    # cxhealth metrics, printed once, parsed by prometheus_client's own parser
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["metrics", "--targets", str(path)]) == 0
    samples = metric_samples(out.getvalue())
    key = {"target": "pool-capped", "host": pool.host}
    assert samples[("probe_success", frozenset(key.items()))] == 0.0
    assert samples[("probe_success", frozenset({**key, "target": "pool-wide"}.items()))] == 1.0
    assert samples[("cxhealth_cause_info", frozenset({**key, "cause": "protocol_version_mismatch"}.items()))] == 1.0
    assert samples[("cxhealth_drift_total", frozenset({**key, "code": "split_pool"}.items()))] == 1.0
    assert samples[("cxhealth_drift_total", frozenset({**key, "code": "protocol_changed"}.items()))] == 0.0
    assert samples[("cxhealth_addresses_failing", frozenset(key.items()))] == 1.0
    assert samples[("cxhealth_breaker_state", frozenset(key.items()))] == 0.0
    assert samples[("probe_tls_version_info", frozenset({**key, "version": "TLSv1.2"}.items()))] == 1.0
    assert samples[("probe_ssl_earliest_cert_expiry", frozenset(key.items()))] > datetime.now().timestamp()
    assert all({"target", "host"} <= set(dict(labels)) for (_, labels) in samples)

    # and served over HTTP with --listen
    proc = subprocess.Popen([sys.executable, "-m", "cxhealth", "metrics", "--targets", str(path),
                             "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        url = line.split()[1]
        with urllib.request.urlopen(url, timeout=30) as resp:
            served = metric_samples(resp.read().decode())
        assert served[("probe_success", frozenset(key.items()))] == 0.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def metric_samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_run_json_carries_drift_and_persistence(changing, tmp_path, monkeypatch):
    path = write_targets(tmp_path / "targets.toml", [changing.target_values("cli")], tmp_path)
    for k, v in changing.env().items():
        monkeypatch.setenv(k, v)
    out = io.StringIO()
    with redirect_stdout(out):
        main(["run", "--targets", str(path), "--json", "--no-alerts"])
    report = json.loads(out.getvalue())
    target = report["targets"][0]
    assert target["healthy"] and target["drift"] == [] and "warnings" not in report
    assert changing.client_secret not in out.getvalue()


def test_store_that_cannot_be_written_is_a_warning(changing, tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    path = tmp_path / "targets.toml"
    path.write_text(write_targets(tmp_path / "t.toml", [changing.target_values("cli")], tmp_path).read_text()
                    .replace(f"sqlite:///{tmp_path}/history.sqlite3", f"sqlite:///{blocker}/x/history.sqlite3"))
    for k, v in changing.env().items():
        monkeypatch.setenv(k, v)
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["run", "--targets", str(path), "--json", "--no-alerts"])
    report = json.loads(out.getvalue())
    assert code == 0 and report["healthy"]
    assert report["warnings"][0]["code"] == "history_unavailable"
    # the human report says it too
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["run", "--targets", str(path), "--no-alerts"])
    assert code == 0 and "warning: history_unavailable: history not recorded" in out.getvalue()


def test_diagnose_with_several_addresses_and_record(pool, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # --record writes the default store under ~/.cxhealth
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["diagnose", f"{pool.host}:{pool.port}", "--resolve", f"{pool.host}:{pool.port}:127.0.0.2,127.0.0.3",
                     "--ca-bundle", pool.ca_bundle, "--tls-max", "1.2", "--json", "--record"])
    doc = json.loads(out.getvalue())
    assert code == 1 and doc["cause"] == "protocol_version_mismatch"
    assert doc["summary"].startswith(f"1 of 2 addresses of {pool.host}:{pool.port} refuse TLS 1.2 (127.0.0.3)")
    assert [d["code"] for d in doc["drift"]] == ["split_pool"]
    with open_history_store(f"sqlite:///{tmp_path}/.cxhealth/history.sqlite3") as store:
        assert sorted(o.address for o in store.observations()) == ["127.0.0.2", "127.0.0.3"]


def test_an_api_host_apart_from_the_token_host_is_observed_whole_and_its_drift_seen(tmp_path):
    """The guide's trap: the token host and the API host differ. The API host's connection is
    recorded like the token host's — address, handshake time, the chain and its expiry — so a
    new intermediate there is an ``issuer_changed`` and its expiry reaches the metrics."""
    with ChangingTLSServer() as login, ChangingTLSServer(token_issuer=login) as api:
        bundle = tmp_path / "both.pem"
        bundle.write_text(Path(login.ca_bundle).read_text() + Path(api.ca_bundle).read_text())
        values = login.target_values("split", api_base=f"https://{api.host}:{api.port}", ca_bundle=str(bundle),
                                     resolve=[f"{login.host}:{login.port}:127.0.0.1",
                                              f"{api.host}:{api.port}:127.0.0.1"])
        path = write_targets(tmp_path / "targets.toml", [values], tmp_path)
        checker = Checker(path, login.env())
        docs = [checker.check()["split"] for _ in range(3)]
        assert all(d["healthy"] for d in docs), docs[-1]
        api.rotate_intermediate()
        rotated = checker.check()["split"]
        assert rotated["healthy"]
        assert [(d["code"], d["host"]) for d in rotated["drift"]] == [("issuer_changed", api.host)]
        assert "intermediate B" in rotated["drift"][0]["to"]

        with open_history_store(f"sqlite:///{tmp_path}/history.sqlite3") as store:
            seen = [o for o in store.observations(host=api.host)]
        assert seen and all(o.stage == "endpoints" for o in seen)
        newest = seen[0]
        assert newest.address == "127.0.0.1" and newest.handshake_ms is not None and newest.handshake_ms > 0
        assert len(newest.chain) >= 1 and newest.not_after is not None
        assert "changing root" in str(newest.root)

        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["metrics", "--targets", str(path)]) == 0
        expiry = [s for f in text_string_to_metric_families(out.getvalue()) for s in f.samples
                  if s.name == "probe_ssl_earliest_cert_expiry" and s.labels.get("host") == api.host]
        assert len(expiry) == 1 and expiry[0].value == newest.not_after.timestamp()
