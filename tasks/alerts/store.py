"""Where incidents and the outbox live: beside the breaker's state, same URL.

``open_alert_store(url)`` accepts the ``[breaker] store`` URL of contract §2:

* ``sqlite:///~/.cxhealth/breaker.sqlite3``, ``sqlite:////abs/path``,
  ``sqlite:///relative/path`` — our own tables (``alerts_*``) in the breaker's
  file; WAL; every read-modify-write in ``BEGIN IMMEDIATE``, so concurrent
  processes serialise on the write lock and agree on who posts a root message.
* ``redis://host:port/db`` — keys under ``cxhealth:alerts:``; read-modify-write
  by WATCH/MULTI (optimistic, retried), the drain lease by ``SET NX PX``.
* ``memory://`` — one process, for tests.

The store holds what is needed to deliver (incident docs, ready-made payloads)
and never the Slack token or webhook URL: those come from the environment at
delivery time.

All three share one small interface: an atomic per-target update that may also
append outbox entries (so "incident opened" and "its root message is queued"
commit together), an ordered outbox, and a lease that lets one process at a time
drain it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlparse

TargetDoc = dict[str, Any]
Entry = dict[str, Any]
UpdateFn = Callable[[TargetDoc | None], "tuple[TargetDoc | None, list[Entry]]"]

DEFAULT_REDIS_PREFIX = "cxhealth:alerts:"


class AlertStoreError(RuntimeError):
    """The store could not be opened or used (the URL's password is never included)."""


class AlertStore(Protocol):
    """The persistence an :class:`~tasks.alerts.alerter.Alerter` needs."""

    def update_target(self, target: str, fn: UpdateFn, *, ack: str | None = None) -> list[Entry]:
        """Atomically: doc = fn(current doc), append its entries to the outbox,
        and remove the outbox entry ``ack`` (so "root delivered, its ts recorded,
        its entry gone" is one commit).

        ``fn`` may be called more than once (optimistic stores retry it), so it
        must not have side effects. Returns the entries that were committed.
        """

    def get_target(self, target: str) -> TargetDoc | None: ...

    def outbox_head(self, limit: int = 1) -> list[Entry]:
        """The oldest ``limit`` queued entries (not dead letters), oldest first, each with
        ``attempts``, ``last_error`` and ``meta`` (the delivery bookkeeping of the outbox)."""

    def outbox_ack(self, entry_id: str) -> bool:
        """Remove a delivered (or abandoned) entry, queued or dead; False when it was already gone."""

    def outbox_note_failure(self, entry_id: str, error: str) -> None: ...

    def outbox_set_meta(self, entry_id: str, meta: dict[str, Any]) -> None:
        """Replace an entry's delivery bookkeeping (``sending``, ``ambiguous``, ``resent``...)."""

    def outbox_dead_letter(self, entry_id: str, reason: str) -> None:
        """Move an entry out of the queue into the dead letters (kept, reported, never sent)."""

    def outbox_dead(self, limit: int = 100) -> list[Entry]:
        """The dead letters, oldest first, each with ``attempts``, ``last_error`` and ``meta``."""

    def outbox_requeue(self, entry_id: str) -> bool:
        """A dead letter back into the queue, its attempts reset (``cxhealth alerts retry``)."""

    def outbox_size(self) -> int:
        """How many entries are queued (dead letters are not counted)."""

    def acquire_lease(self, owner: str, ttl_s: float, now: float,
                      takeover: Callable[[str], bool] | None = None) -> bool:
        """Take (or renew, if ``owner`` holds it) the single drain lease. ``takeover(holder)``
        says whether a live lease's holder is known dead (a killed process on this machine)."""

    def release_lease(self, owner: str) -> None: ...

    def close(self) -> None: ...


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- memory


class MemoryAlertStore:
    """In-process store for tests and one-shot runs (thread-safe, not durable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[str, str] = {}
        self._outbox: list[Entry] = []
        self._lease: tuple[str, float] | None = None

    def update_target(self, target: str, fn: UpdateFn, *, ack: str | None = None) -> list[Entry]:
        with self._lock:
            if ack is not None:
                self._outbox = [e for e in self._outbox if e["id"] != ack]
            raw = self._targets.get(target)
            doc, entries = fn(json.loads(raw) if raw else None)
            if doc is None:
                self._targets.pop(target, None)
            else:
                self._targets[target] = _dumps(doc)
            committed = [json.loads(_dumps(e)) for e in entries]
            for e in committed:
                self._outbox.append({**e, "attempts": 0, "last_error": None, "meta": {}, "_dead": False})
            return committed

    def get_target(self, target: str) -> TargetDoc | None:
        with self._lock:
            raw = self._targets.get(target)
            return json.loads(raw) if raw else None

    @staticmethod
    def _public(e: Entry) -> Entry:
        return json.loads(_dumps({k: v for k, v in e.items() if k != "_dead"}))

    def outbox_head(self, limit: int = 1) -> list[Entry]:
        with self._lock:
            return [self._public(e) for e in self._outbox if not e["_dead"]][:limit]

    def outbox_set_meta(self, entry_id: str, meta: dict[str, Any]) -> None:
        with self._lock:
            for e in self._outbox:
                if e["id"] == entry_id:
                    e["meta"] = json.loads(_dumps(meta))

    def outbox_dead_letter(self, entry_id: str, reason: str) -> None:
        with self._lock:
            for i, e in enumerate(self._outbox):
                if e["id"] == entry_id and not e["_dead"]:
                    del self._outbox[i]
                    self._outbox.append({**e, "_dead": True, "last_error": reason[:500]})
                    return

    def outbox_dead(self, limit: int = 100) -> list[Entry]:
        with self._lock:
            return [self._public(e) for e in self._outbox if e["_dead"]][:limit]

    def outbox_requeue(self, entry_id: str) -> bool:
        with self._lock:
            for e in self._outbox:
                if e["id"] == entry_id and e["_dead"]:
                    e.update(_dead=False, attempts=0, meta={})
                    return True
            return False

    def outbox_ack(self, entry_id: str) -> bool:
        with self._lock:
            for i, e in enumerate(self._outbox):
                if e["id"] == entry_id:
                    del self._outbox[i]
                    return True
            return False

    def outbox_note_failure(self, entry_id: str, error: str) -> None:
        with self._lock:
            for e in self._outbox:
                if e["id"] == entry_id:
                    e["attempts"] += 1
                    e["last_error"] = error

    def outbox_size(self) -> int:
        with self._lock:
            return sum(1 for e in self._outbox if not e["_dead"])

    def acquire_lease(self, owner: str, ttl_s: float, now: float,
                      takeover: Callable[[str], bool] | None = None) -> bool:
        with self._lock:
            if (self._lease is None or self._lease[0] == owner or self._lease[1] <= now
                    or (takeover is not None and takeover(self._lease[0]))):
                self._lease = (owner, now + ttl_s)
                return True
            return False

    def release_lease(self, owner: str) -> None:
        with self._lock:
            if self._lease and self._lease[0] == owner:
                self._lease = None

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- sqlite

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts_targets (
    target     TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    target     TEXT NOT NULL,
    created_at REAL NOT NULL,
    entry      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    meta       TEXT,
    state      TEXT NOT NULL DEFAULT 'queued'
);
CREATE TABLE IF NOT EXISTS alerts_leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


class SqliteAlertStore:
    """Incidents and outbox in SQLite (WAL), shared by every process on the host."""

    def __init__(self, path: str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._retry_locked(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._immediate() as cur:
            for stmt in filter(str.strip, _SQLITE_SCHEMA.split(";")):
                cur.execute(stmt)
            # A file created by an earlier version: add the delivery bookkeeping columns.
            columns = {row[1] for row in cur.execute("PRAGMA table_info(alerts_outbox)")}
            if "meta" not in columns:
                cur.execute("ALTER TABLE alerts_outbox ADD COLUMN meta TEXT")
            if "state" not in columns:
                cur.execute("ALTER TABLE alerts_outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'queued'")

    @staticmethod
    def _retry_locked(fn: Callable[[], Any], attempts: int = 50) -> Any:
        # Switching to WAL takes a lock the busy handler does not always wait for.
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.02)

    class _Tx:
        def __init__(self, store: SqliteAlertStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Cursor:
            self.store._lock.acquire()
            self.cur = self.store._conn.cursor()
            self.store._retry_locked(lambda: self.cur.execute("BEGIN IMMEDIATE"))
            return self.cur

        def __exit__(self, exc_type: Any, *_: Any) -> None:
            try:
                self.cur.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.cur.close()
                self.store._lock.release()

    def _immediate(self) -> SqliteAlertStore._Tx:
        return SqliteAlertStore._Tx(self)

    def update_target(self, target: str, fn: UpdateFn, *, ack: str | None = None) -> list[Entry]:
        with self._immediate() as cur:
            if ack is not None:
                cur.execute("DELETE FROM alerts_outbox WHERE id = ?", (ack,))
            row = cur.execute("SELECT doc FROM alerts_targets WHERE target = ?", (target,)).fetchone()
            doc, entries = fn(json.loads(row[0]) if row else None)
            now = time.time()
            if doc is None:
                cur.execute("DELETE FROM alerts_targets WHERE target = ?", (target,))
            else:
                cur.execute(
                    "INSERT INTO alerts_targets (target, doc, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(target) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                    (target, _dumps(doc), now),
                )
            committed = []
            for e in entries:
                cur.execute(
                    "INSERT INTO alerts_outbox (id, target, created_at, entry) VALUES (?, ?, ?, ?)",
                    (e["id"], target, float(e.get("created_at", now)), _dumps(e)),
                )
                committed.append(json.loads(_dumps(e)))
            return committed

    def get_target(self, target: str) -> TargetDoc | None:
        with self._lock:
            row = self._conn.execute("SELECT doc FROM alerts_targets WHERE target = ?", (target,)).fetchone()
        return json.loads(row[0]) if row else None

    def targets(self) -> list[str]:
        """Every target with a doc (the local fallback outbox is merged by target)."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT target FROM alerts_targets ORDER BY target")]

    def _entries(self, state: str, limit: int) -> list[Entry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT entry, attempts, last_error, meta FROM alerts_outbox WHERE state = ? ORDER BY seq LIMIT ?",
                (state, limit),
            ).fetchall()
        return [{**json.loads(e), "attempts": a, "last_error": err, "meta": json.loads(m) if m else {}}
                for e, a, err, m in rows]

    def outbox_head(self, limit: int = 1) -> list[Entry]:
        return self._entries("queued", limit)

    def outbox_dead(self, limit: int = 100) -> list[Entry]:
        return self._entries("dead", limit)

    def outbox_set_meta(self, entry_id: str, meta: dict[str, Any]) -> None:
        with self._immediate() as cur:
            cur.execute("UPDATE alerts_outbox SET meta = ? WHERE id = ?", (_dumps(meta), entry_id))

    def outbox_dead_letter(self, entry_id: str, reason: str) -> None:
        with self._immediate() as cur:
            cur.execute("UPDATE alerts_outbox SET state = 'dead', last_error = ? WHERE id = ?",
                        (reason[:500], entry_id))

    def outbox_requeue(self, entry_id: str) -> bool:
        with self._immediate() as cur:
            return cur.execute(
                "UPDATE alerts_outbox SET state = 'queued', attempts = 0, meta = NULL WHERE id = ? AND state = 'dead'",
                (entry_id,),
            ).rowcount > 0

    def outbox_ack(self, entry_id: str) -> bool:
        with self._immediate() as cur:
            return cur.execute("DELETE FROM alerts_outbox WHERE id = ?", (entry_id,)).rowcount > 0

    def outbox_note_failure(self, entry_id: str, error: str) -> None:
        with self._immediate() as cur:
            cur.execute(
                "UPDATE alerts_outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error[:500], entry_id),
            )

    def outbox_size(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM alerts_outbox WHERE state = 'queued'").fetchone()[0])

    def acquire_lease(self, owner: str, ttl_s: float, now: float,
                      takeover: Callable[[str], bool] | None = None) -> bool:
        with self._immediate() as cur:
            row = cur.execute("SELECT owner, expires_at FROM alerts_leases WHERE name = 'drain'").fetchone()
            if row and row[0] != owner and row[1] > now and not (takeover is not None and takeover(row[0])):
                return False
            cur.execute(
                "INSERT INTO alerts_leases (name, owner, expires_at) VALUES ('drain', ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
                (owner, now + ttl_s),
            )
            return True

    def release_lease(self, owner: str) -> None:
        with self._immediate() as cur:
            cur.execute("DELETE FROM alerts_leases WHERE name = 'drain' AND owner = ?", (owner,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# ---------------------------------------------------------------- redis

_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW_LUA = (
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false then return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1 or 0 end "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0"
)


class RedisAlertStore:
    """Incidents and outbox in Redis, for fleets of workers on several hosts.

    Keys (``prefix`` = ``cxhealth:alerts:``): ``target:<name>`` (JSON doc),
    ``outbox:queue`` (list of entry ids, oldest first), ``outbox:entries``
    (hash id → JSON), ``outbox:attempts`` / ``outbox:errors`` / ``outbox:meta``
    (hashes), ``outbox:dead`` (list of dead-letter ids), ``lease:drain`` (owner,
    with a TTL).
    """

    def __init__(self, client: Any, *, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self._r = client
        self.prefix = prefix
        self._release = client.register_script(_RELEASE_LUA)
        self._renew = client.register_script(_RENEW_LUA)

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def update_target(self, target: str, fn: UpdateFn, *, ack: str | None = None) -> list[Entry]:
        import redis

        key = self._k("target", target)
        for _ in range(200):
            with self._r.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    doc, entries = fn(json.loads(raw) if raw else None)
                    committed = [json.loads(_dumps(e)) for e in entries]
                    pipe.multi()
                    if doc is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, _dumps(doc))
                    if ack is not None:
                        self._queue_ack(pipe, ack)
                    for e in committed:
                        pipe.hset(self._k("outbox", "entries"), e["id"], _dumps(e))
                        pipe.rpush(self._k("outbox", "queue"), e["id"])
                    pipe.execute()
                    return committed
                except redis.WatchError:
                    continue
        raise AlertStoreError("redis: too much contention updating an incident")

    def get_target(self, target: str) -> TargetDoc | None:
        raw = self._r.get(self._k("target", target))
        return json.loads(raw) if raw else None

    def _list(self, name: str, limit: int) -> list[Entry]:
        ids = [i.decode() if isinstance(i, bytes) else i for i in self._r.lrange(self._k("outbox", name), 0, limit - 1)]
        if not ids:
            return []
        raws = self._r.hmget(self._k("outbox", "entries"), ids)
        attempts = self._r.hmget(self._k("outbox", "attempts"), ids)
        errors = self._r.hmget(self._k("outbox", "errors"), ids)
        metas = self._r.hmget(self._k("outbox", "meta"), ids)
        out = []
        for raw, att, err, meta in zip(raws, attempts, errors, metas):
            if raw is None:
                continue
            out.append(
                {
                    **json.loads(raw),
                    "attempts": int(att or 0),
                    "last_error": (err.decode() if isinstance(err, bytes) else err),
                    "meta": json.loads(meta) if meta else {},
                }
            )
        return out

    def outbox_head(self, limit: int = 1) -> list[Entry]:
        return self._list("queue", limit)

    def outbox_dead(self, limit: int = 100) -> list[Entry]:
        return self._list("dead", limit)

    def outbox_set_meta(self, entry_id: str, meta: dict[str, Any]) -> None:
        self._r.hset(self._k("outbox", "meta"), entry_id, _dumps(meta))

    def outbox_dead_letter(self, entry_id: str, reason: str) -> None:
        with self._r.pipeline() as pipe:
            pipe.lrem(self._k("outbox", "queue"), 1, entry_id)
            pipe.rpush(self._k("outbox", "dead"), entry_id)
            pipe.hset(self._k("outbox", "errors"), entry_id, reason[:500])
            pipe.execute()

    def outbox_requeue(self, entry_id: str) -> bool:
        with self._r.pipeline() as pipe:
            pipe.lrem(self._k("outbox", "dead"), 1, entry_id)
            pipe.hdel(self._k("outbox", "attempts"), entry_id)
            pipe.hdel(self._k("outbox", "meta"), entry_id)
            removed, *_ = pipe.execute()
        if removed:
            self._r.rpush(self._k("outbox", "queue"), entry_id)
        return bool(removed)

    def _queue_ack(self, pipe: Any, entry_id: str) -> None:
        pipe.lrem(self._k("outbox", "queue"), 1, entry_id)
        pipe.lrem(self._k("outbox", "dead"), 1, entry_id)
        pipe.hdel(self._k("outbox", "entries"), entry_id)
        pipe.hdel(self._k("outbox", "attempts"), entry_id)
        pipe.hdel(self._k("outbox", "errors"), entry_id)
        pipe.hdel(self._k("outbox", "meta"), entry_id)

    def outbox_ack(self, entry_id: str) -> bool:
        with self._r.pipeline() as pipe:
            self._queue_ack(pipe, entry_id)
            queued, dead, *_ = pipe.execute()
        return bool(queued or dead)

    def outbox_note_failure(self, entry_id: str, error: str) -> None:
        with self._r.pipeline() as pipe:
            pipe.hincrby(self._k("outbox", "attempts"), entry_id, 1)
            pipe.hset(self._k("outbox", "errors"), entry_id, error[:500])
            pipe.execute()

    def outbox_size(self) -> int:
        return int(self._r.llen(self._k("outbox", "queue")))

    def acquire_lease(self, owner: str, ttl_s: float, now: float,
                      takeover: Callable[[str], bool] | None = None) -> bool:
        # Redis keeps the TTL by its own clock; ``now`` matters only to the SQL/memory stores.
        key = self._k("lease", "drain")
        if self._renew(keys=[key], args=[owner, max(1, int(ttl_s * 1000))]):
            return True
        holder = self._r.get(key)
        holder = holder.decode() if isinstance(holder, bytes) else holder
        if holder and takeover is not None and takeover(holder):
            self._release(keys=[key], args=[holder])  # only if it is still that holder's
            return bool(self._renew(keys=[key], args=[owner, max(1, int(ttl_s * 1000))]))
        return False

    def release_lease(self, owner: str) -> None:
        self._release(keys=[self._k("lease", "drain")], args=[owner])

    def close(self) -> None:
        self._r.close()

    def delete_all(self) -> None:
        """Remove every key under this store's prefix (tests, decommissioning)."""
        for key in self._r.scan_iter(match=self.prefix + "*", count=500):
            self._r.delete(key)


# ---------------------------------------------------------------- factory


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///rel``, ``sqlite:////abs`` and ``sqlite:///~/x`` (SQLAlchemy's spelling)."""
    rest = url[len("sqlite://"):]
    if not rest.startswith("/"):
        raise AlertStoreError("sqlite store URL must look like sqlite:///path or sqlite:////abs/path")
    path = rest[1:]
    if path in ("", ":memory:"):
        return ":memory:"
    return os.path.expanduser(path)


def open_alert_store(url: str, *, key_prefix: str = DEFAULT_REDIS_PREFIX) -> AlertStore:
    """Open the incidents + outbox store at the ``[breaker] store`` URL."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SqliteAlertStore(sqlite_path_from_url(url))
    if scheme in ("redis", "rediss"):
        import redis

        try:
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        except ValueError as exc:
            raise AlertStoreError(f"bad redis store URL ({exc.__class__.__name__})") from None
        return RedisAlertStore(client, prefix=key_prefix)
    if scheme == "memory":
        return MemoryAlertStore()
    parsed = urlparse(url)
    raise AlertStoreError(f"unsupported alert store scheme {parsed.scheme!r} (sqlite, redis or memory)")
