"""The history store: SQLite on one machine, PostgreSQL for a fleet (contract §4 ``[history]``).

One schema, one set of queries, two dialects. What each write costs is bounded:

* drift detection reads at most ``policy.lookback`` rows per address of the check
  (index range scans on ``(target, host, port, address, at)``);
* **compaction** (what keeps 1,000 targets x 30 days small): per address, the
  newest ``policy.raw_window`` observations are kept as they are (persistence,
  latency and the trend read them); older *healthy* ones are merged, at most
  ``COMPACT_PER_WRITE`` per write, into one row per UTC day and identical facts
  (version, cipher, chain, proxy, cause) with a count, the first and last time
  and the mean handshake time. Failed observations are never merged: they are
  the evidence of persistence. Certificate chains are stored once (``chains``)
  and referenced;
* **retention**: rows older than ``retention_days`` are deleted, at most
  ``RETAIN_PER_WRITE`` per write (an index on ``at``), so a backlog drains over
  the next writes instead of stalling one.

One writer at a time: SQLite runs each write in ``BEGIN IMMEDIATE`` (WAL mode,
a busy timeout, so processes of one machine queue instead of failing);
PostgreSQL takes a transaction-scoped advisory lock per target. Drift is
detected inside the write's transaction, so two processes recording the same
target cannot both report one change.

Migrations: ``schema_version`` holds the version; :data:`MIGRATIONS` are applied
in order on open, under the same one-writer rule.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlsplit

from .drift import detect_drift
from .model import CheckOutcome, DriftCode, DriftEvent, HistoryPolicy, Observation

DEFAULT_STORE = "sqlite:///~/.cxhealth/history.sqlite3"
COMPACT_PER_WRITE = 16
RETAIN_PER_WRITE = 500
SCHEMA_VERSION = 2


class HistoryError(RuntimeError):
    """The history store could not be opened, read or written (one line, no secret)."""


def _ts(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def _dt(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), timezone.utc) if value is not None else None


# -- the schema ---------------------------------------------------------------------------
# {id}: the dialect's auto-increment primary key; {float}: a double.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: observations, chains, drift
        "CREATE TABLE chains (id {id}, fingerprints TEXT NOT NULL UNIQUE, root TEXT, issuer TEXT, "
        "not_after {float}, leaf_not_after {float}, leaf_key TEXT)",
        "CREATE TABLE observations (id {id}, at {float} NOT NULL, until {float}, count INTEGER NOT NULL DEFAULT 1, "
        "rollup INTEGER NOT NULL DEFAULT 0, target TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, "
        "address TEXT NOT NULL, proxy TEXT, protocol TEXT, cipher TEXT, chain_id INTEGER, handshake_ms {float}, "
        "cause TEXT NOT NULL, stage TEXT NOT NULL, ok INTEGER NOT NULL)",
        "CREATE INDEX observations_key ON observations (target, host, port, address, at)",
        "CREATE INDEX observations_target ON observations (target, at)",
        "CREATE INDEX observations_at ON observations (at)",
        "CREATE TABLE drift (id {id}, at {float} NOT NULL, target TEXT NOT NULL, host TEXT NOT NULL, "
        "port INTEGER NOT NULL, address TEXT, code TEXT NOT NULL, from_value TEXT, to_value TEXT)",
        "CREATE INDEX drift_target ON drift (target, at)",
        "CREATE INDEX drift_at ON drift (at)",
    ),
    (  # 2: the check's own verdict (a check can fail after a good handshake: the token, an endpoint)
        "ALTER TABLE observations ADD COLUMN check_ok INTEGER",
    ),
)

_OBS_COLUMNS = ("o.at, o.until, o.count, o.target, o.host, o.port, o.address, o.proxy, o.protocol, o.cipher, "
                "c.fingerprints, c.root, c.issuer, c.not_after, c.leaf_not_after, c.leaf_key, o.handshake_ms, "
                "o.cause, o.stage, o.check_ok")
_OBS_FROM = "observations o LEFT JOIN chains c ON c.id = o.chain_id"


def _observation(row: Sequence[Any]) -> Observation:
    (at, until, count, target, host, port, address, proxy, protocol, cipher, fps, root, issuer, not_after,
     leaf_not_after, leaf_key, ms, cause, stage, check_ok) = row
    return Observation(at=_dt(at), target=target, host=host, port=int(port), address=address or None, proxy=proxy,
                       protocol=protocol, cipher=cipher, chain=tuple(fps.split(",")) if fps else (), root=root,
                       issuer=issuer, not_after=_dt(not_after), leaf_not_after=_dt(leaf_not_after),
                       leaf_key=leaf_key, handshake_ms=float(ms) if ms is not None else None, cause=cause,
                       stage=stage, count=int(count), until=_dt(until),
                       check_ok=None if check_ok is None else bool(int(check_ok)))


def _drift(row: Sequence[Any]) -> DriftEvent:
    at, target, host, port, address, code, from_value, to_value = row
    return DriftEvent(DriftCode(code), target, host, int(port), address or None, from_value, to_value, _dt(at))


class SqlHistoryStore:
    """The queries, written once with ``?`` placeholders; subclasses supply the dialect."""

    url: str
    _id_type = "INTEGER PRIMARY KEY"
    _float_type = "REAL"
    _is = "IS"  # NULL-safe equality

    def __init__(self, retention_days: int = 30, policy: HistoryPolicy = HistoryPolicy()) -> None:
        self.retention_days = retention_days
        self.policy = policy
        self._chains: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last_chain_sweep = 0.0

    # -- dialect hooks -------------------------------------------------------------
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @contextmanager
    def _write(self, lock_key: str) -> Iterator[None]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> "SqlHistoryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return [tuple(r) for r in self._execute(sql, params).fetchall()]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        row = self._execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    # -- schema -----------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._write("schema"):
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._one("SELECT MAX(version) FROM schema_version")
            current = int(row[0]) if row and row[0] is not None else 0
            if current > len(MIGRATIONS):
                raise HistoryError(f"the history store's schema is version {current}, newer than this "
                                   f"cxhealth knows ({len(MIGRATIONS)}): upgrade cxhealth")
            for version, statements in enumerate(MIGRATIONS[current:], current + 1):
                for statement in statements:
                    self._execute(statement.format(id=self._id_type, float=self._float_type))
                self._execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        row = self._one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    # -- writing --------------------------------------------------------------------
    def record(self, check: Sequence[Observation], now: datetime | None = None) -> list[DriftEvent]:
        """Store one check's observations (one target) and return the drift they show.

        Raises:
            HistoryError: the store could not be written (the caller turns it into a warning).
        """
        if not check:
            return []
        now = now or datetime.now(timezone.utc)
        target = check[0].target
        try:
            with self._lock, self._write(target):
                earlier = self._earlier(check)
                events = detect_drift(check, earlier, self.policy)
                new_chains: dict[str, int] = {}
                for o in check:
                    chain_id = self._chain_id(o, new_chains)
                    self._execute(
                        "INSERT INTO observations (at, count, rollup, target, host, port, address, proxy, protocol, "
                        "cipher, chain_id, handshake_ms, cause, stage, ok, check_ok) "
                        "VALUES (?, 1, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (_ts(o.at), o.target, o.host, o.port, o.address or "", o.proxy, o.protocol, o.cipher,
                         chain_id, o.handshake_ms, o.cause, o.stage, 1 if o.ok else 0,
                         None if o.check_ok is None else int(o.check_ok)))
                for e in events:
                    self._execute("INSERT INTO drift (at, target, host, port, address, code, from_value, to_value) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  (_ts(e.at), e.target, e.host, e.port, e.address, e.code.value, e.from_, e.to))
                for key in dict.fromkeys(o.key for o in check):
                    self._compact(key)
                self._retain(now)
            self._chains.update(new_chains)
        except HistoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line, the driver's class and reason (never a secret: no values)
            raise HistoryError(f"history store {self.url}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        return events

    def _chain_id(self, o: Observation, new: dict[str, int]) -> int | None:
        if not o.chain:
            return None
        fps = ",".join(o.chain)
        if fps in self._chains:
            return self._chains[fps]
        if fps in new:
            return new[fps]
        row = self._one("SELECT id FROM chains WHERE fingerprints = ?", (fps,))
        if row is None:
            self._execute("INSERT INTO chains (fingerprints, root, issuer, not_after, leaf_not_after, leaf_key) "
                          "VALUES (?, ?, ?, ?, ?, ?)", (fps, o.root, o.issuer, _ts(o.not_after),
                                                        _ts(o.leaf_not_after), o.leaf_key))
            row = self._one("SELECT id FROM chains WHERE fingerprints = ?", (fps,))
        assert row is not None
        new[fps] = int(row[0])
        return new[fps]

    def _earlier(self, check: Sequence[Observation]) -> list[Observation]:
        """What drift detection needs: per address the last rows and the latest healthy one;
        per host new to an address, the host's latest healthy row."""
        out: dict[tuple, Observation] = {}
        key_where = "o.target = ? AND o.host = ? AND o.port = ? AND o.address = ?"
        for key in dict.fromkeys(o.key for o in check):
            rows = self._rows(f"SELECT {_OBS_COLUMNS} FROM {_OBS_FROM} WHERE {key_where} AND o.rollup = 0 "
                              f"ORDER BY o.at DESC LIMIT ?", (*key, self.policy.lookback))
            rows += self._rows(f"SELECT {_OBS_COLUMNS} FROM {_OBS_FROM} WHERE {key_where} AND o.ok = 1 "
                               f"ORDER BY o.at DESC LIMIT 1", key)
            if not rows:
                rows = self._rows(f"SELECT {_OBS_COLUMNS} FROM {_OBS_FROM} WHERE o.target = ? AND o.host = ? "
                                  f"AND o.port = ? AND o.ok = 1 ORDER BY o.at DESC LIMIT 1", key[:3])
            for row in rows:
                o = _observation(row)
                out[(o.key, o.at, o.count)] = o
        return list(out.values())

    def _compact(self, key: tuple[str, str, int, str]) -> None:
        where = "target = ? AND host = ? AND port = ? AND address = ?"
        cut = self._one(f"SELECT at FROM observations WHERE {where} AND rollup = 0 ORDER BY at DESC LIMIT 1 OFFSET ?",
                        (*key, self.policy.raw_window))
        if cut is None:
            return
        old = self._rows(f"SELECT id, at, proxy, protocol, cipher, chain_id, handshake_ms, cause, stage FROM observations "
                         f"WHERE {where} AND rollup = 0 AND ok = 1 AND COALESCE(check_ok, 1) = 1 AND at <= ? "
                         f"ORDER BY at LIMIT ?",
                         (*key, cut[0], COMPACT_PER_WRITE))
        for (row_id, at, proxy, protocol, cipher, chain_id, ms, cause, stage) in old:
            day = float(at) - float(at) % 86400
            same = (f"{where} AND rollup = 1 AND at >= ? AND at < ? AND proxy {self._is} ? AND protocol {self._is} ? "
                    f"AND cipher {self._is} ? AND chain_id {self._is} ? AND cause = ?")
            params = (*key, day, day + 86400, proxy, protocol, cipher, chain_id, cause)
            found = self._one(f"SELECT id, count, handshake_ms FROM observations WHERE {same} LIMIT 1", params)
            if found is None:
                self._execute(
                    "INSERT INTO observations (at, until, count, rollup, target, host, port, address, proxy, protocol, "
                    "cipher, chain_id, handshake_ms, cause, stage, ok) VALUES (?, ?, 1, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (at, at, *key, proxy, protocol, cipher, chain_id, ms, cause, stage))
            else:
                rid, count, mean = found
                if ms is not None:
                    mean = ms if mean is None else (float(mean) * int(count) + float(ms)) / (int(count) + 1)
                self._execute("UPDATE observations SET count = count + 1, until = ?, handshake_ms = ? WHERE id = ?",
                              (at, mean, rid))
            self._execute("DELETE FROM observations WHERE id = ?", (row_id,))

    def _retain(self, now: datetime) -> None:
        cutoff = _ts(now - timedelta(days=self.retention_days))
        deleted = 0
        for table in ("observations", "drift"):
            cur = self._execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < ? "
                                f"ORDER BY at LIMIT ?)", (cutoff, RETAIN_PER_WRITE))
            deleted += max(0, cur.rowcount or 0)
        if deleted and time.monotonic() - self._last_chain_sweep > 3600:
            self._last_chain_sweep = time.monotonic()
            self._execute("DELETE FROM chains WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.chain_id = chains.id)")
            self._chains.clear()

    # -- reading ------------------------------------------------------------------------
    def _filters(self, host: str | None, targets: Sequence[str] | None, since: datetime | None,
                 alias: str = "o.") -> tuple[str, list[Any]]:
        clauses, params = [], []
        if host:
            clauses.append(f"{alias}host = ?")
            params.append(host.lower())
        if targets is not None:
            if not targets:
                return "1 = 0", []
            clauses.append(f"{alias}target IN ({', '.join('?' for _ in targets)})")
            params += list(targets)
        if since is not None:
            clauses.append(f"COALESCE({alias}until, {alias}at) >= ?" if alias == "o." else f"{alias}at >= ?")
            params.append(_ts(since))
        return (" AND ".join(clauses) or "1 = 1"), params

    def observations(self, host: str | None = None, targets: Sequence[str] | None = None,
                     since: datetime | None = None, limit: int = 10000) -> list[Observation]:
        """Newest first (compacted rows count as one, with ``count`` and ``until``)."""
        where, params = self._filters(host, targets, since)
        return [_observation(r) for r in self._rows(
            f"SELECT {_OBS_COLUMNS} FROM {_OBS_FROM} WHERE {where} ORDER BY COALESCE(o.until, o.at) DESC, o.id DESC "
            f"LIMIT ?", (*params, limit))]

    def drift_events(self, host: str | None = None, targets: Sequence[str] | None = None,
                     since: datetime | None = None, limit: int = 10000) -> list[DriftEvent]:
        where, params = self._filters(host, targets, since, alias="")
        return [_drift(r) for r in self._rows(
            f"SELECT at, target, host, port, address, code, from_value, to_value FROM drift WHERE {where} "
            f"ORDER BY at DESC, id DESC LIMIT ?", (*params, limit))]

    def drift_counts(self, targets: Sequence[str] | None = None) -> dict[tuple[str, str, str], int]:
        """``{(target, host, code): n}`` within retention (for ``cxhealth_drift_total``)."""
        where, params = self._filters(None, targets, None, alias="")
        return {(t, h, c): int(n) for t, h, c, n in self._rows(
            f"SELECT target, host, code, COUNT(*) FROM drift WHERE {where} GROUP BY target, host, code", params)}

    def latest(self, targets: Sequence[str] | None = None) -> list[Observation]:
        """Each (target, host)'s latest check: every address it connected to."""
        where, params = self._filters(None, targets, None, alias="")
        newest = self._rows(f"SELECT target, host, MAX(at) FROM observations WHERE {where} AND rollup = 0 "
                            f"GROUP BY target, host", params)
        out: list[Observation] = []
        for target, host, at in sorted(newest):
            out += [_observation(r) for r in self._rows(
                f"SELECT {_OBS_COLUMNS} FROM {_OBS_FROM} WHERE o.target = ? AND o.host = ? AND o.at = ? "
                f"AND o.rollup = 0 ORDER BY o.port, o.address", (target, host, at))]
        return out

    def checks(self, target: str, now: datetime | None = None) -> tuple[list[CheckOutcome], datetime | None]:
        """The target's last ``policy.persistence_checks`` checks within retention, newest first,
        and, when all of them failed, when the failing streak started (the first failure after
        the last healthy check, which may be older than the window)."""
        now = now or datetime.now(timezone.utc)
        cutoff = _ts(now - timedelta(days=self.retention_days))
        ats = [r[0] for r in self._rows("SELECT DISTINCT at FROM observations WHERE target = ? AND rollup = 0 "
                                        "AND at >= ? ORDER BY at DESC LIMIT ?",
                                        (target, cutoff, self.policy.persistence_checks))]
        if not ats:
            return [], None
        rows = self._rows("SELECT at, host, port, address, ok, check_ok FROM observations WHERE target = ? "
                          "AND rollup = 0 AND at >= ? AND at <= ?", (target, min(ats), max(ats)))
        per: dict[float, dict[tuple, list[int]]] = {a: {} for a in ats}
        check_failed: set[float] = set()
        for at, host, port, _address, ok, check_ok in rows:
            if at in per:
                per[at].setdefault((host, port), []).append(int(ok))
                if check_ok is not None and not int(check_ok):
                    check_failed.add(at)
        outcomes = []
        for at in ats:
            hosts = per[at]
            failed = at in check_failed or any(0 in oks for oks in hosts.values())
            split = any(0 in oks and 1 in oks for oks in hosts.values())
            outcomes.append(CheckOutcome(_dt(at), failed, split))
        started = None
        if all(c.failed for c in outcomes):
            last_ok = self._one("SELECT at FROM observations WHERE target = ? AND rollup = 0 AND at < ? "
                                "GROUP BY at HAVING MIN(ok) = 1 AND MIN(COALESCE(check_ok, 1)) = 1 ORDER BY at DESC LIMIT 1",
                                (target, min(ats)))
            rolled = self._one("SELECT MAX(until) FROM observations WHERE target = ? AND rollup = 1", (target,))
            bound = max([v for v in ((last_ok or (None,))[0], (rolled or (None,))[0], cutoff) if v is not None])
            first = self._one("SELECT MIN(at) FROM observations WHERE target = ? AND (ok = 0 OR check_ok = 0) "
                              "AND rollup = 0 AND at > ?",
                              (target, bound))
            started = _dt(first[0]) if first and first[0] is not None else None
        return outcomes, started

    def trend(self, target: str, limit: int = 24) -> list[tuple[datetime, float | None]]:
        """The target's last *limit* checks, oldest first: the token host's handshake time
        (the slowest address), None for a check whose handshake failed."""
        rows = self._rows("SELECT at, MAX(handshake_ms), MIN(ok) FROM observations WHERE target = ? AND rollup = 0 "
                          "AND stage = 'handshake' GROUP BY at ORDER BY at DESC LIMIT ?", (target, limit))
        return [(_dt(at), float(ms) if ms is not None and int(ok) else None) for at, ms, ok in reversed(rows)]

    def size_bytes(self) -> int:  # pragma: no cover - overridden
        return 0


class SQLiteHistoryStore(SqlHistoryStore):
    """One file, WAL, one writer at a time (``BEGIN IMMEDIATE``), safe across processes of one machine."""

    def __init__(self, path: str | os.PathLike[str], retention_days: int = 30,
                 policy: HistoryPolicy = HistoryPolicy(), busy_timeout_ms: int = 10000) -> None:
        super().__init__(retention_days, policy)
        self.path = Path(path).expanduser()
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"history store {self.path}: cannot open ({type(exc).__name__}: {exc})") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, tuple(params))

    @contextmanager
    def _write(self, lock_key: str) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def size_bytes(self) -> int:
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())


class PostgresHistoryStore(SqlHistoryStore):
    """The fleet's PostgreSQL (a database of its own; the tool creates its tables). psycopg 3."""

    _id_type = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    _float_type = "DOUBLE PRECISION"
    _is = "IS NOT DISTINCT FROM"

    def __init__(self, url: str, retention_days: int = 30, policy: HistoryPolicy = HistoryPolicy(),
                 connect_timeout: float = 5.0) -> None:
        super().__init__(retention_days, policy)
        self.url = redact_url(url)
        try:
            import psycopg
        except ImportError:  # pragma: no cover - a dependency of cxhealth
            raise HistoryError("a postgresql:// history store needs psycopg (pip install 'psycopg[binary]')") from None
        try:
            self._conn = psycopg.connect(url, connect_timeout=max(1, int(connect_timeout)), autocommit=True)
            self._migrate()
        except psycopg.Error as exc:
            raise HistoryError(f"history store {self.url}: cannot open ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:200] if str(exc) else 'no reason given'})") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), tuple(params))

    @contextmanager
    def _write(self, lock_key: str) -> Iterator[None]:
        with self._conn.transaction():
            lock = int.from_bytes(hashlib.sha256(f"cxhealth.history:{lock_key}".encode()).digest()[:8], "big",
                                  signed=True)
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            yield

    def close(self) -> None:
        self._conn.close()

    def size_bytes(self) -> int:
        row = self._one("SELECT pg_database_size(current_database())")
        return int(row[0]) if row else 0


def redact_url(url: str) -> str:
    """A store URL without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def check_history_url(url: str) -> None:
    """Raises ValueError (one line) for a store URL this tool cannot use."""
    if not isinstance(url, str) or not url:
        raise ValueError("store: must be a sqlite:/// or postgresql:// URL")
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ValueError(f"store: {url!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        return
    if scheme in ("postgresql", "postgres"):
        if not urlsplit(url).hostname and "host=" not in url:
            raise ValueError(f"store: {redact_url(url)!r}: name the host, e.g. postgresql://user@db.example/cxhealth")
        return
    raise ValueError(f"store: {redact_url(url)!r}: use sqlite:///PATH or postgresql://user@host/db")


def open_history_store(url: str = DEFAULT_STORE, retention_days: int = 30,
                       policy: HistoryPolicy = HistoryPolicy()) -> SqlHistoryStore:
    """Open (and migrate) the store a ``[history] store`` URL names.

    Raises:
        ValueError: a URL this tool cannot use.
        HistoryError: the store cannot be opened.
    """
    check_history_url(url)
    if url.lower().startswith("sqlite:///"):
        return SQLiteHistoryStore(unquote(url[len("sqlite:///"):]), retention_days, policy)
    return PostgresHistoryStore(url, retention_days, policy)
