"""The alert store on memory, SQLite and Redis; many processes, one root message.

Redis tests skip with a reason when Redis is not reachable on 127.0.0.1:6379
(and fail instead with CXHEALTH_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import multiprocessing
import os
import uuid

import pytest

from cxhealth.lab.fake_slack import FakeSlack
from cxhealth.tasks.alerts import AlertStoreError, MemoryAlertStore, RedisAlertStore, SqliteAlertStore, open_alert_store
from cxhealth.tasks.alerts.store import sqlite_path_from_url
from tests.conftest import need_service
from tests.test_alerts_payload import sample_result

REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "xoxb-concurrency"


@pytest.fixture
def redis_url_and_prefix():
    need_service("Redis", "127.0.0.1", 6379)
    prefix = f"cxhealth:alerts:test-{uuid.uuid4().hex[:10]}:"
    yield REDIS_URL, prefix
    store = open_alert_store(REDIS_URL, key_prefix=prefix)
    assert isinstance(store, RedisAlertStore)
    store.delete_all()
    store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryAlertStore()
    elif request.param == "sqlite":
        s = open_alert_store(f"sqlite:///{tmp_path}/breaker.sqlite3")
        yield s
        s.close()
    else:
        url, prefix = request.getfixturevalue("redis_url_and_prefix")
        s = open_alert_store(url, key_prefix=prefix)
        yield s
        s.close()


def _entry(i: int, target: str = "t") -> dict:
    return {"id": f"e{i}-{uuid.uuid4().hex[:6]}", "target": target, "incident_id": "i", "cause": "c",
            "action": "post_root", "kind": "open", "created_at": float(i), "message": {"text": str(i)}}


def test_update_target_commits_the_doc_and_its_entries_together_in_order(store) -> None:
    store.update_target("t", lambda doc: ({"n": 1}, [_entry(1), _entry(2)]))
    store.update_target("u", lambda doc: ({"n": 1}, [_entry(3, "u")]))
    store.update_target("t", lambda doc: ({"n": doc["n"] + 1}, [_entry(4)]))
    assert store.get_target("t") == {"n": 2}
    head = store.outbox_head(10)
    assert [e["message"]["text"] for e in head] == ["1", "2", "3", "4"]
    assert all(e["attempts"] == 0 and e["last_error"] is None for e in head)
    assert store.outbox_size() == 4


def test_ack_and_failure_notes(store) -> None:
    (e1, e2) = store.update_target("t", lambda doc: ({}, [_entry(1), _entry(2)]))
    store.outbox_note_failure(e1["id"], "http_500")
    head = store.outbox_head(1)[0]
    assert head["id"] == e1["id"] and head["attempts"] == 1 and head["last_error"] == "http_500"
    # an ack inside update_target: "root delivered, ts recorded, entry gone" in one commit
    store.update_target("t", lambda doc: ({"root": "1.0"}, []), ack=e1["id"])
    assert [e["id"] for e in store.outbox_head(5)] == [e2["id"]]
    assert store.outbox_ack(e2["id"]) is True
    assert store.outbox_ack(e2["id"]) is False
    assert store.outbox_size() == 0


def test_a_doc_of_none_deletes_the_target(store) -> None:
    store.update_target("t", lambda doc: ({"x": 1}, []))
    store.update_target("t", lambda doc: (None, []))
    assert store.get_target("t") is None


def test_the_drain_lease_has_one_holder_until_released_or_expired(store) -> None:
    assert store.acquire_lease("a", 60, now=1000.0)
    assert not store.acquire_lease("b", 60, now=1001.0)
    assert store.acquire_lease("a", 60, now=1002.0)  # renewal by the holder
    store.release_lease("b")  # not the holder: no effect
    assert not store.acquire_lease("b", 60, now=1003.0)
    store.release_lease("a")
    assert store.acquire_lease("b", 60, now=1004.0)
    if not isinstance(store, RedisAlertStore):  # Redis expires by its own clock
        assert store.acquire_lease("c", 60, now=1004.0 + 61)


def test_delivery_bookkeeping_and_dead_letters(store) -> None:
    (e1, e2, e3) = store.update_target("t", lambda doc: ({}, [_entry(1), _entry(2), _entry(3)]))
    store.outbox_set_meta(e1["id"], {"sending": True, "sent_at": 12.5})
    assert store.outbox_head(1)[0]["meta"] == {"sending": True, "sent_at": 12.5}
    # a dead letter leaves the queue (and its count) but is kept, with its reason
    store.outbox_note_failure(e2["id"], "http_500")
    store.outbox_dead_letter(e2["id"], "3 attempts failed")
    assert [e["id"] for e in store.outbox_head(10)] == [e1["id"], e3["id"]] and store.outbox_size() == 2
    (dead,) = store.outbox_dead()
    assert dead["id"] == e2["id"] and dead["last_error"] == "3 attempts failed" and dead["attempts"] == 1
    # requeued: queued again, its attempts reset
    assert store.outbox_requeue(e2["id"]) and not store.outbox_requeue(e2["id"])
    queued = {e["id"]: e for e in store.outbox_head(10)}
    assert set(queued) == {e1["id"], e2["id"], e3["id"]} and queued[e2["id"]]["attempts"] == 0
    assert store.outbox_dead() == []
    store.outbox_dead_letter(e3["id"], "refused")
    assert store.outbox_ack(e3["id"]) and store.outbox_dead() == []


def test_a_dead_holders_lease_is_taken_over_at_once(store) -> None:
    assert store.acquire_lease("dead-one", 600, now=1000.0)
    assert not store.acquire_lease("b", 600, now=1001.0, takeover=lambda holder: False)
    assert store.acquire_lease("b", 600, now=1001.0, takeover=lambda holder: holder == "dead-one")
    assert not store.acquire_lease("dead-one", 600, now=1002.0)


def test_store_urls() -> None:
    assert sqlite_path_from_url("sqlite:////abs/path/x.db") == "/abs/path/x.db"
    assert sqlite_path_from_url("sqlite:///rel/x.db") == "rel/x.db"
    assert sqlite_path_from_url("sqlite:///~/.cxhealth/breaker.sqlite3") == os.path.expanduser("~/.cxhealth/breaker.sqlite3")
    assert isinstance(open_alert_store("memory://"), MemoryAlertStore)
    with pytest.raises(AlertStoreError):
        open_alert_store("postgres://x/y")


def test_sqlite_tables_live_beside_others_in_the_same_file(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "breaker.sqlite3"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE breaker_state (host TEXT PRIMARY KEY, doc TEXT)")
    other.commit()
    other.close()
    store = SqliteAlertStore(str(path))
    store.update_target("t", lambda doc: ({"x": 1}, [_entry(1)]))
    store.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"breaker_state", "alerts_targets", "alerts_outbox", "alerts_leases"} <= tables
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---------------------------------------------------------------- many processes


def _run_phases(store_url: str, prefix: str, api_base: str, barrier, results_by_phase, out) -> None:
    """One worker process: the same runs as its siblings, phase by phase, at once."""
    from cxhealth.tasks.alerts import Alerter, AlertSettings, open_alert_store

    store = open_alert_store(store_url, key_prefix=prefix)
    settings = AlertSettings(mode="bot", channel="#alerts", api_base=api_base, bot_token=TOKEN,
                             timeout_s=10, repeat_interval_s=3600)
    alerter = Alerter(settings, store)
    summary = []
    for results in results_by_phase:
        barrier.wait(timeout=60)
        report = alerter.process(results)
        summary.append({"sent": [(s["target"], s["action"]) for s in report.sent],
                        "errors": list(report.errors) + list(report.config_errors)})
    store.close()
    out.put(summary)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_concurrent_processes_post_exactly_one_root_and_one_resolve_per_incident(backend, tmp_path, request) -> None:
    if backend == "redis":
        url, prefix = request.getfixturevalue("redis_url_and_prefix")
    else:
        url, prefix = f"sqlite:///{tmp_path}/breaker.sqlite3", "cxhealth:alerts:"
    n = 6
    phases = [
        [sample_result("a", "cert_expired"), sample_result("b", "tcp_timeout")],  # everyone sees the outage
        [sample_result("a", "cert_expired"), sample_result("b", "tcp_timeout")],  # and again
        [sample_result("a", healthy=True), sample_result("b", healthy=True)],  # everyone sees recovery
    ]
    ctx = multiprocessing.get_context("spawn")
    with FakeSlack(token=TOKEN) as slack:
        barrier, out = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_run_phases, args=(url, prefix, slack.api_base, barrier, phases, out)) for _ in range(n)]
        for p in procs:
            p.start()
        summaries = [out.get(timeout=90) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0

        assert all(not phase["errors"] for s in summaries for phase in s), summaries
        roots = slack.top_level()
        # exactly one root message per incident, whatever the interleaving
        assert sorted(r["text"].split(":")[0] for r in roots) == ["[resolved] a", "[resolved] b"]
        for root in roots:
            assert len(root["updates"]) == 1  # one chat.update on resolve
            replies = slack.replies(root["ts"])
            assert [r["text"].startswith("[resolved]") for r in replies] == [True]  # one resolve, no repeats
        assert len(slack.api_calls("chat.postMessage")) == 4
    store = open_alert_store(url, key_prefix=prefix)
    assert store.outbox_size() == 0
    store.close()
