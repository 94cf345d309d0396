"""History (contract §4): drift and persistence as pure functions, the stores, recording.

Given/When/Then over observations built here; the lab end-to-end tests are in
test_history_lab.py. PostgreSQL tests use a database of their own (a unique
name, dropped after).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from cxhealth.tasks.history import (CheckOutcome, DriftCode, HistoryPolicy, Observation, PersistenceKind,
                                    detect_drift, judge_persistence, open_history_store,
                                    record_target_observations)
from cxhealth.tasks.history.store import SQLiteHistoryStore, check_history_url, redact_url

from .conftest import need_service

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
LEAF, INTER, ROOT = "aa" * 32, "bb" * 32, "cc" * 32


def obs(i: int = 0, **kw) -> Observation:
    base = dict(at=T0 + timedelta(minutes=5 * i), target="t1", host="api.example.test", port=443,
                address="127.0.0.2", protocol="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", chain=(LEAF, INTER),
                root="CN=Root", issuer="CN=Inter", not_after=T0 + timedelta(days=60),
                leaf_not_after=T0 + timedelta(days=60), leaf_key="sha256/AAA", handshake_ms=10.0)
    base.update(kw)
    return Observation(**base)


def codes(events) -> list[str]:
    return [str(e.code) for e in events]


# --- drift: pure ---------------------------------------------------------------------------

class TestDrift:
    def test_nothing_changed_reports_nothing(self):
        assert detect_drift([obs(1)], [obs(0)]) == []

    def test_first_observation_of_a_host_is_no_drift(self):
        assert detect_drift([obs(0)], []) == []

    def test_protocol_change_reported_once_then_baseline_moves(self):
        history = [obs(i) for i in range(3)]
        changed = obs(3, protocol="TLSv1.2", cipher="ECDHE-ECDSA-AES256-GCM-SHA384")
        events = detect_drift([changed], history)
        assert codes(events) == ["protocol_changed"]  # the cipher comes with the version: not news
        assert (events[0].from_, events[0].to) == ("TLSv1.3", "TLSv1.2")
        assert detect_drift([obs(4, protocol="TLSv1.2", cipher=changed.cipher)], [*history, changed]) == []

    def test_cipher_change_within_one_version(self):
        events = detect_drift([obs(1, cipher="TLS_AES_128_GCM_SHA256")], [obs(0)])
        assert codes(events) == ["cipher_changed"]

    def test_new_intermediate_is_issuer_changed(self):
        events = detect_drift([obs(1, chain=("dd" * 32, "ee" * 32), issuer="CN=Inter 2")], [obs(0)])
        assert codes(events) == ["issuer_changed"]
        assert "Inter 2" in events[0].to

    def test_new_leaf_with_later_expiry_is_cert_renewed(self):
        renewed = obs(1, chain=("dd" * 32, INTER), leaf_not_after=T0 + timedelta(days=120), leaf_key="sha256/BBB")
        assert codes(detect_drift([renewed], [obs(0)])) == ["cert_renewed"]

    def test_new_leaf_key_without_later_expiry_is_key_changed(self):
        rekeyed = obs(1, chain=("dd" * 32, INTER), leaf_key="sha256/BBB")
        assert codes(detect_drift([rekeyed], [obs(0)])) == ["key_changed"]

    def test_failure_is_not_a_baseline_and_change_after_outage_is_seen(self):
        failed = obs(1, protocol=None, cipher=None, chain=(), cause="tcp_refused", handshake_ms=None)
        back = obs(2, protocol="TLSv1.2", cipher="X")
        assert detect_drift([failed], [obs(0)]) == []
        assert codes(detect_drift([back], [obs(0), failed])) == ["protocol_changed"]

    def test_split_pool_reported_when_it_first_appears(self):
        a = obs(0, address="127.0.0.2", protocol="TLSv1.2", cipher="X")
        b = obs(0, address="127.0.0.3", protocol="TLSv1.3")
        first = detect_drift([a, b], [])
        assert codes(first) == ["split_pool"]
        assert first[0].address is not None and first[0].from_ and first[0].to
        again = detect_drift([replace(a, at=a.at + timedelta(minutes=5)), replace(b, at=b.at + timedelta(minutes=5))],
                             [a, b])
        assert again == []

    def test_split_pool_with_a_failing_address(self):
        a = obs(0, address="127.0.0.2", protocol="TLSv1.2")
        b = obs(0, address="127.0.0.3", protocol=None, cause="protocol_version_mismatch", chain=())
        events = detect_drift([a, b], [])
        assert codes(events) == ["split_pool"]
        assert events[0].address == "127.0.0.3"

    def test_latency_regression_once_when_the_median_triples(self):
        history = [obs(i, handshake_ms=10.0) for i in range(10)]
        slow = [obs(10 + i, handshake_ms=100.0) for i in range(6)]
        found = []
        for i, o in enumerate(slow):
            found.append(codes(detect_drift([o], history + slow[:i])))
        # median of the last 5 reaches 3x on the third slow one, and is reported only then
        assert found == [[], [], ["latency_regression"], [], [], []]

    def test_latency_jitter_under_the_noise_floor_is_not_a_regression(self):
        history = [obs(i, handshake_ms=3.0) for i in range(10)]
        jitter = [obs(10 + i, handshake_ms=12.0) for i in range(5)]
        assert all(detect_drift([o], history + jitter[:i]) == [] for i, o in enumerate(jitter))

    def test_latency_needs_enough_baseline(self):
        history = [obs(i, handshake_ms=10.0) for i in range(3)]
        slow = [obs(3 + i, handshake_ms=100.0) for i in range(5)]
        assert all(detect_drift([o], history + slow[:i]) == [] for i, o in enumerate(slow))

    def test_policy_changes_thresholds(self):
        history = [obs(i, handshake_ms=10.0) for i in range(10)]
        slow = [obs(10 + i, handshake_ms=25.0) for i in range(3)]
        strict = HistoryPolicy(latency_factor=2.0, latency_min_delta_ms=10.0)
        assert codes(detect_drift([slow[2]], history + slow[:2], strict)) == ["latency_regression"]
        assert detect_drift([slow[2]], history + slow[:2]) == []


# --- persistence: pure ---------------------------------------------------------------------------

def checks(pattern: str, split_last: bool = False) -> list[CheckOutcome]:
    """'..xx' oldest first: '.' healthy, 'x' failed; returned newest first."""
    out = [CheckOutcome(T0 + timedelta(minutes=5 * i), c == "x") for i, c in enumerate(pattern)]
    if split_last:
        out[-1] = replace(out[-1], split=True)
    return list(reversed(out))


class TestPersistence:
    def test_healthy_check_has_none(self):
        assert judge_persistence(checks("x..")) is None

    def test_one_off_is_transient(self):
        p = judge_persistence(checks(".....x"))
        assert p.kind is PersistenceKind.TRANSIENT and p.since == T0 + timedelta(minutes=25)

    def test_first_check_failing_is_transient(self):
        assert judge_persistence(checks("x")).kind is PersistenceKind.TRANSIENT

    def test_every_check_since_is_persistent(self):
        p = judge_persistence(checks("...xxx"))
        assert p.kind is PersistenceKind.PERSISTENT and p.since == T0 + timedelta(minutes=15)

    def test_alternating_is_intermittent(self):
        p = judge_persistence(checks(".x.x.x"))
        assert p.kind is PersistenceKind.INTERMITTENT and p.since == T0 + timedelta(minutes=5)

    def test_split_addresses_are_intermittent(self):
        p = judge_persistence(checks("xxx", split_last=True))
        assert p.kind is PersistenceKind.INTERMITTENT

    def test_window_is_ten_checks(self):
        # an old failure outside the last 10 checks does not make it intermittent
        assert judge_persistence(checks("x" + "." * 10 + "x")).kind is PersistenceKind.TRANSIENT

    def test_streak_longer_than_window_uses_store_start(self):
        started = T0 - timedelta(days=2)
        p = judge_persistence(checks("x" * 12), streak_started=started)
        assert p.kind is PersistenceKind.PERSISTENT and p.since == started


# --- stores ---------------------------------------------------------------------------------

@pytest.fixture
def sqlite_store(tmp_path):
    store = open_history_store(f"sqlite:///{tmp_path}/h.sqlite3")
    yield store
    store.close()


@pytest.fixture
def pg_url():
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"cxhealth_history_test_{secrets.token_hex(6)}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scenario() -> list[list[Observation]]:
    """Checks of two targets: a protocol change, a split pool, an outage and a recovery, a renewal."""
    out: list[list[Observation]] = []
    for i in range(30):
        at = dict(at=T0 + timedelta(minutes=5 * i))
        check = [obs(i, address="127.0.0.2", **({"protocol": "TLSv1.2", "cipher": "X"} if i >= 10 else {}))]
        if i >= 20:
            check.append(obs(i, address="127.0.0.3", protocol=None, cipher=None, chain=(), cause="protocol_version_mismatch",
                             handshake_ms=None))
        out.append(check)
        other = obs(i, target="t2", host="login.example.test", address="127.0.0.9")
        if 5 <= i < 8:
            other = replace(other, cause="cert_expired", protocol=None, cipher=None, handshake_ms=None)
        if i >= 15:
            other = replace(other, chain=("ff" * 32, INTER), leaf_not_after=T0 + timedelta(days=400))
        out.append([other])
        del at
    return out


def replay(store) -> tuple[list[list[str]], list]:
    seen, persistence = [], []
    for check in scenario():
        seen.append(codes(store.record(check, now=check[0].at)))
        outcomes, started = store.checks(check[0].target, now=check[0].at)
        p = judge_persistence(outcomes, streak_started=started)
        persistence.append((str(p.kind), p.since) if p else None)
    return seen, persistence


class TestStores:
    def test_sqlite_replay_reports_each_change_once(self, sqlite_store):
        seen, persistence = replay(sqlite_store)
        flat = [c for cs in seen for c in cs]
        assert sorted(flat) == ["cert_renewed", "protocol_changed", "split_pool"]
        assert seen[20] == ["protocol_changed"] and seen[40] == ["split_pool"] and seen[31] == ["cert_renewed"]
        # t2 fails at checks 5, 6, 7: transient, then persistent since the first
        t2 = persistence[1::2]
        assert t2[5] == ("transient", T0 + timedelta(minutes=25))
        assert t2[7] == ("persistent", T0 + timedelta(minutes=25))
        assert t2[8] is None
        # t1 splits from check 20 on: intermittent
        assert persistence[0::2][25][0] == "intermittent"
        drift = sqlite_store.drift_events()
        assert sorted(str(d.code) for d in drift) == sorted(flat)

    def test_postgres_gives_the_same_answers(self, pg_url, sqlite_store):
        pg = open_history_store(pg_url)
        try:
            assert pg.schema_version() == sqlite_store.schema_version() == 2
            assert replay(pg) == replay(sqlite_store)
            assert [o.to_dict() for o in pg.observations()] == [o.to_dict() for o in sqlite_store.observations()]
            assert [d.to_dict() for d in pg.drift_events()] == [d.to_dict() for d in sqlite_store.drift_events()]
            assert [o.to_dict() for o in pg.latest()] == [o.to_dict() for o in sqlite_store.latest()]
        finally:
            pg.close()

    def test_reopen_keeps_schema_and_rows(self, tmp_path):
        url = f"sqlite:///{tmp_path}/h.sqlite3"
        with open_history_store(url) as s:
            s.record([obs(0)], now=T0)
        with open_history_store(url) as s:
            assert s.schema_version() == 2 and len(s.observations()) == 1

    def test_newer_schema_is_refused_with_one_line(self, tmp_path):
        url = f"sqlite:///{tmp_path}/h.sqlite3"
        open_history_store(url).close()
        with sqlite3.connect(tmp_path / "h.sqlite3") as db:
            db.execute("INSERT INTO schema_version VALUES (99)")
        from cxhealth.tasks.history import HistoryError

        with pytest.raises(HistoryError, match="upgrade cxhealth"):
            open_history_store(url)

    def test_compaction_keeps_raw_window_and_counts(self, tmp_path):
        policy = HistoryPolicy(raw_window=10)
        store = SQLiteHistoryStore(tmp_path / "h.sqlite3", policy=policy)
        for i in range(100):
            store.record([obs(i)], now=T0 + timedelta(minutes=5 * i))
        rows = store.observations()
        raw = [o for o in rows if o.until is None]
        rolled = [o for o in rows if o.until is not None]
        assert len(raw) == 10
        assert sum(o.count for o in rolled) == 90 and len(rolled) == 1  # one day, identical facts
        assert rolled[0].until == T0 + timedelta(minutes=5 * 89)

    def test_failures_are_never_compacted(self, tmp_path):
        store = SQLiteHistoryStore(tmp_path / "h.sqlite3", policy=HistoryPolicy(raw_window=5))
        for i in range(30):
            store.record([obs(i, cause="tcp_refused", protocol=None)], now=T0)
        assert len([o for o in store.observations() if o.until is None]) == 30

    def test_retention_deletes_old_rows(self, tmp_path):
        store = SQLiteHistoryStore(tmp_path / "h.sqlite3", retention_days=1)
        store.record([obs(0)], now=T0)
        store.record([obs(0, target="t9", at=T0 + timedelta(days=3))], now=T0 + timedelta(days=3))
        assert [o.target for o in store.observations()] == ["t9"]

    def test_two_processes_write_one_sqlite_file(self, tmp_path):
        path = tmp_path / "h.sqlite3"
        open_history_store(f"sqlite:///{path}").close()
        code = ("import sys\nfrom datetime import datetime, timedelta, timezone\n"
                "from cxhealth.tasks.history import Observation, open_history_store\n"
                f"s = open_history_store('sqlite:///{path}')\n"
                "t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)\n"
                "for i in range(40):\n"
                "    s.record([Observation(at=t0 + timedelta(seconds=i), target=sys.argv[1], host='h', port=443)], now=t0)\n")
        procs = [subprocess.Popen([sys.executable, "-c", code, f"p{n}"]) for n in range(3)]
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
        with open_history_store(f"sqlite:///{path}") as s:
            assert len(s.observations()) == 120

    def test_store_urls(self):
        for bad in ("redis://x", "sqlite://rel", "", "postgresql:///db"):
            with pytest.raises(ValueError):
                check_history_url(bad)
        check_history_url("postgresql://u@db.example/cx")
        assert "s3cret" not in redact_url("postgresql://u:s3cret@db/x")


# --- recording ----------------------------------------------------------------------------

def diagnosis(cause="ok", address="127.0.0.1", protocol="TLSv1.3"):
    return {"target": {"host": "login.example.test", "port": 443, "sni": "login.example.test", "address": address,
                       "proxy": None},
            "ok": cause == "ok", "cause": cause, "summary": "s", "protocol": protocol if cause == "ok" else None,
            "cipher": "TLS_AES_128_GCM_SHA256" if cause == "ok" else None, "handshake_ms": 3.5,
            "chain": [{"subject": "CN=login", "issuer": "CN=Inter", "not_after": "2027-01-01T00:00:00+00:00",
                       "sha256": LEAF, "spki_pin": "sha256/AAA", "self_issued": False},
                      {"subject": "CN=Inter", "issuer": "CN=Root", "not_after": "2026-12-24T00:00:00+00:00",
                       "sha256": INTER, "self_issued": False}],
            "evidence": {}}


def report(cause="ok", at=T0, **kw):
    healthy = cause == "ok"
    return {"name": "lab", "healthy": healthy, "stage": None if healthy else "handshake", "cause": cause,
            "started_at": at.isoformat(), "handshake": diagnosis(cause),
            "oauth": {"ok": True, "status": 200, "access_token": None},
            "endpoints": [{"path": "/v1", "url": "https://api.example.test/v1", "host": "api.example.test", "ok": True,
                           "status": 200, "protocol": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256", "cause": "ok"},
                          {"path": "/v2", "url": "https://api.example.test/v2", "host": "api.example.test", "ok": True,
                           "status": 200, "protocol": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256", "cause": "ok"}]
            if healthy else [],
            **kw}


class TestRecording:
    def test_one_observation_per_connection_and_no_secret(self, sqlite_store):
        doc = report()
        doc["oauth"]["error_description"] = "client secret sk-123 rejected"  # never read
        assert record_target_observations(doc, sqlite_store) is None
        rows = sqlite_store.observations()
        assert sorted((o.host, o.stage) for o in rows) == [("api.example.test", "endpoints"),
                                                          ("login.example.test", "handshake")]
        token = next(o for o in rows if o.stage == "handshake")
        assert token.chain == (LEAF, INTER) and token.root == "CN=Root"
        assert token.not_after == datetime(2026, 12, 24, tzinfo=timezone.utc)
        assert doc["drift"] == [] and "persistence" not in doc
        dump = sqlite_store._conn.iterdump()
        assert not any("sk-123" in line for line in dump)

    def test_unhealthy_target_carries_persistence(self, sqlite_store):
        record_target_observations(report(), sqlite_store, clock=lambda: T0)
        doc = report("cert_expired")
        record_target_observations(doc, sqlite_store, clock=lambda: T0 + timedelta(minutes=5))
        assert doc["persistence"] == "transient"
        assert doc["persistence_since"] == (T0 + timedelta(minutes=5)).isoformat(timespec="seconds")

    def test_breaker_open_check_records_nothing_but_is_judged(self, sqlite_store):
        record_target_observations(report("cert_expired"), sqlite_store, clock=lambda: T0)
        doc = {"name": "lab", "healthy": False, "stage": "breaker_open", "handshake": None, "endpoints": []}
        record_target_observations(doc, sqlite_store, clock=lambda: T0 + timedelta(minutes=5))
        assert len(sqlite_store.observations()) == 1
        assert doc["persistence"] == "persistent"
        assert doc["persistence_since"] == T0.isoformat(timespec="seconds")

    def test_store_error_is_a_warning_not_a_failure(self, sqlite_store):
        sqlite_store.close()
        doc = report("cert_expired")
        warning = record_target_observations(doc, sqlite_store)
        assert warning and "history not recorded" in warning
        assert doc["drift"] == [] and doc["persistence"] is None

    def test_record_reports_with_unopenable_store(self, tmp_path):
        from cxhealth.tasks.history import record_reports
        from cxhealth.tasks.targets import HistorySettings

        blocker = tmp_path / "file"
        blocker.write_text("")
        docs = [report()]
        warnings = record_reports(HistorySettings(store=f"sqlite:///{blocker}/sub/h.sqlite3"), docs)
        assert warnings and warnings[0]["code"] == "history_unavailable"
        assert docs[0]["drift"] == []


def test_a_check_failing_after_a_good_handshake_is_a_failed_check(sqlite_store):
    record_target_observations(report(), sqlite_store, clock=lambda: T0)
    refused = report()
    refused.update(healthy=False, stage="oauth", cause="invalid_client", endpoints=[])
    record_target_observations(refused, sqlite_store, clock=lambda: T0 + timedelta(minutes=5))
    assert refused["persistence"] == "transient"
    again = dict(refused, endpoints=[])
    record_target_observations(again, sqlite_store, clock=lambda: T0 + timedelta(minutes=10))
    assert (again["persistence"], again["persistence_since"]) == ("persistent", (T0 + timedelta(minutes=5)).isoformat())


def test_version_1_store_is_migrated(tmp_path):
    from cxhealth.tasks.history import store as st

    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as db:  # a store as the first release wrote it
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in st.MIGRATIONS[0]:
            db.execute(statement.format(id="INTEGER PRIMARY KEY", float="REAL"))
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute("INSERT INTO observations (at, target, host, port, address, cause, stage, ok) "
                   "VALUES (1.0, 't', 'h', 443, '', 'ok', 'handshake', 1)")
    with open_history_store(f"sqlite:///{path}") as s:
        assert s.schema_version() == 2
        assert [o.check_ok for o in s.observations()] == [None]


def test_history_table_in_targets_file(tmp_path):
    from cxhealth.tasks.targets import TargetConfigError, parse_targets

    base = {"target": [{"name": "a", "platform": "generic", "client_id": "c", "client_secret_env": "S",
                        "token_url": "https://a.example/t", "api_base": "https://a.example"}]}
    assert parse_targets(base).history.retention_days == 30
    cfg = parse_targets({**base, "history": {"store": "postgresql://u@db/x", "retention_days": 7}})
    assert cfg.history.store == "postgresql://u@db/x" and cfg.history.retention_days == 7
    for bad in ({"retention_days": 0}, {"retention_days": "7"}, {"store": "redis://x"}, {"keep": 1}):
        with pytest.raises(TargetConfigError, match=r"\[history\]"):
            parse_targets({**base, "history": bad})


# --- where it shows: Slack, events, the report -----------------------------------------------

DRIFT = {"kind": "drift", "code": "protocol_changed", "target": "lab", "host": "api.example.test", "port": 443,
         "address": "127.0.0.2", "from": "TLSv1.3", "to": "TLSv1.2", "at": "2026-11-01T12:05:00+00:00"}


@pytest.mark.parametrize("mode", ["bot", "webhook"])
def test_slack_one_low_severity_message_per_drift_never_twice(mode):
    from cxhealth.lab.fake_slack import FakeSlack
    from cxhealth.tasks.alerts import Alerter, AlertSettings, MemoryAlertStore

    with FakeSlack(token="xoxb-lab-token", hang_s=10) as slack:
        if mode == "bot":
            settings = AlertSettings(mode="bot", channel="#alerts", api_base=slack.api_base, bot_token="xoxb-lab-token",
                                     timeout_s=2, repeat_interval_s=600, rate_limit_budget_s=5)
        else:
            settings = AlertSettings(mode="webhook", webhook_url=slack.add_webhook("T000/B000/hooksecret"), timeout_s=2,
                                     repeat_interval_s=600, rate_limit_budget_s=5)
        store = MemoryAlertStore()
        result = {"name": "lab", "healthy": True, "stage": None, "cause": "ok", "drift": [DRIFT]}
        first = Alerter(settings, store, lambda: 1_714_564_800.0).process([result])
        again = Alerter(settings, store, lambda: 1_714_564_900.0).process([result])  # a replayed report
        later = Alerter(settings, store, lambda: 1_714_565_000.0).process([{**result, "drift": []}])
        posts = slack.top_level()
        assert len(posts) == 1, posts
        text = json.dumps(posts[0], ensure_ascii=False)
        assert "protocol_changed" in text and "TLSv1.3 → TLSv1.2" in text
        assert "<!here>" not in text and "<!channel>" not in text and "critical" not in text.lower()
        assert first.queued == again.queued == later.queued == 0
        assert [d.outcome for d in again.decisions if d.target == "drift:lab"] == ["suppressed"]


def test_drift_events_for_automations():
    from cxhealth.tasks.history import drift_event_specs

    specs = drift_event_specs([{"name": "lab", "drift": [DRIFT]}, {"name": "quiet", "drift": []}])
    assert len(specs) == 1
    spec = specs[0]
    assert spec["event"] == "cxhealth.tls.drift"
    assert spec["resource"]["prefect.resource.id"] == "cxhealth.host.api.example.test"
    assert spec["related"][0]["prefect.resource.id"] == "cxhealth.target.lab"
    assert (spec["payload"]["code"], spec["payload"]["from"], spec["payload"]["to"]) == ("protocol_changed", "TLSv1.3", "TLSv1.2")


def test_report_trend_sparkline_and_changes(sqlite_store):
    from cxhealth.flows.report import report_markdown, target_markdown
    from cxhealth.tasks.history import sparkline

    assert sparkline([1.0, 2.0, None, 8.0]) == "▁▂×█"
    docs = []
    for i, ms in enumerate([5.0, 6.0, 5.5, 40.0]):
        doc = report()
        doc["handshake"]["handshake_ms"] = ms
        if i == 3:
            doc["handshake"]["protocol"] = "TLSv1.2"
        record_target_observations(doc, sqlite_store, clock=lambda i=i: T0 + timedelta(minutes=5 * i))
        docs.append(doc)
    last = docs[-1]
    assert [p["ms"] for p in last["trend"]["handshake_ms"]] == [5.0, 6.0, 5.5, 40.0]
    assert [c["code"] for c in last["trend"]["changes"]] == ["protocol_changed"]
    md = target_markdown(last)
    assert "▁" in md and "█" in md and "2026-11-01 12:15 UTC `protocol_changed`" in md
    assert "Trend and changes" in report_markdown({"healthy": True, "targets": [last]})


def test_alert_says_the_persistence():
    from cxhealth.tasks.alerts.payload import build_incident_message
    from tests.test_alerts_payload import sample_result

    result = {**sample_result("lab"), "persistence": "persistent", "persistence_since": "2026-11-01T12:00:00+00:00"}
    message = json.dumps(build_incident_message(result, cause="cert_expired").to_dict(), ensure_ascii=False)
    assert "persistent since" in message
