"""The SQLite store: the embedded default, safe across the processes of one machine.

Atomicity: every read-modify-write runs in a ``BEGIN IMMEDIATE`` transaction,
which takes SQLite's single write lock *before* reading, so two processes can
never both read "CLOSED, one failure" and both write "OPEN": the second one
reads what the first committed. Reads that change nothing (the common
``admit`` of a CLOSED breaker, a rejection while OPEN) run on a WAL snapshot
without the write lock; when such a read finds that a change is due (OPEN past
its time -> a probe), the decision is taken again under ``BEGIN IMMEDIATE``.

WAL lets those readers run while a writer commits. The busy timeout bounds the
wait for the write lock, so a wedged database ends in :class:`StoreUnavailable`
(and the fallback), never in a hang.

``read_only=True`` opens the file for reading only (``mode=ro``, or
``immutable=1`` on a read-only filesystem where WAL's shared memory cannot be
created): a store that cannot be written is still honoured for what it says
(an OPEN record is obeyed) while the decisions are written to the fallback.

A path on a network filesystem (NFS, SMB, sshfs ...) is refused: SQLite's locks
do not hold across machines (see :mod:`.filesystem`). A row that cannot be read
raises :class:`RecordUnreadable` for that host only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from . import machine
from .machine import BreakerRecord
from .model import BreakerConfig, BreakerState, BreakerStatus, Decision, Override, Transition
from .filesystem import network_fs_of
from .store import RecordUnreadable, StoreMisconfigured, StoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS breaker (
    host            TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    failures        TEXT NOT NULL,      -- JSON array of epoch seconds
    trips           INTEGER NOT NULL,
    reopen_at       REAL,
    lease           TEXT,
    lease_expires   REAL,
    last_failure    TEXT,               -- JSON summary of the failure that opened it
    override        TEXT,
    override_reason TEXT,
    epoch           INTEGER NOT NULL,
    updated_at      REAL NOT NULL,
    last_success    REAL,               -- the last success recorded (lifts the cold-start limit)
    inflight        TEXT                -- JSON [[slot token, expires], ...] of cold-start callers
)
"""
#: Columns added after the first release: a file made by it gets them on open.
_ADDED_COLUMNS = (("last_success", "REAL"), ("inflight", "TEXT"))
_COLUMNS = (
    "state, failures, trips, reopen_at, lease, lease_expires, last_failure, "
    "override, override_reason, epoch, last_success, inflight"
)
_SELECT = f"SELECT {_COLUMNS} FROM breaker WHERE host = ?"
_UPSERT = (
    f"INSERT OR REPLACE INTO breaker (host, {_COLUMNS}, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EMPTY = BreakerRecord()


class SQLiteStore:
    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 5.0,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path).expanduser()
        self.read_only = read_only
        network = network_fs_of(str(self.path))
        if network:
            raise StoreMisconfigured(
                f"sqlite store {self.path} is on a network filesystem ({network}): SQLite's locks do not "
                "hold across machines; use a local path, or redis://host:port/db for a breaker shared by "
                "several machines")
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        with self._lock:
            self._connection()  # surface an unusable path now, not at the first check

    # -- connection ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(): a child opens its own.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self.read_only:
            return self._read_only_connection()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=self._busy_timeout_s,
                isolation_level=None, check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:  # no such directory, no permission: the path is wrong
            raise StoreMisconfigured(f"sqlite store {self.path} cannot be opened: {_describe(exc)}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")  # also proves the file is writable
            conn.execute(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(breaker)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE breaker ADD COLUMN {name} {kind}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(f"sqlite store {self.path} is not usable: {_describe(exc)}") from exc
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _read_only_connection(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise StoreUnavailable(f"sqlite store {self.path} does not exist (nothing to read)")
        last: BaseException | None = None
        for flags in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"file:{self.path}?{flags}", uri=True, timeout=self._busy_timeout_s,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("SELECT count(*) FROM breaker").fetchall()
            except sqlite3.Error as exc:  # no -shm can be made (read-only folder): try immutable
                last = exc
                continue
            self._conn, self._pid = conn, os.getpid()
            return conn
        raise StoreUnavailable(f"sqlite store {self.path} cannot be read: {_describe(last)}")

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment of exclusive access; when many
        # processes create the file at once, some see "locked" without the busy
        # handler being consulted, so retry for up to the busy timeout.
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
                raise sqlite3.OperationalError(f"journal_mode stayed {mode!r}")
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _drop_connection(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn = None

    # -- records ------------------------------------------------------------

    @staticmethod
    def _read(conn: sqlite3.Connection, host: str) -> BreakerRecord:
        # fetchall() steps the statement to its end, so the implicit read
        # transaction ends here rather than when the cursor is collected.
        rows = conn.execute(_SELECT, (host,)).fetchall()
        if not rows:
            return _EMPTY
        row = rows[0]
        (state, failures, trips, reopen_at, lease, lease_expires, last_failure,
         override, override_reason, epoch, last_success, inflight) = row
        try:
            record = BreakerRecord(
                state=BreakerState(state),
                failures=tuple(float(t) for t in json.loads(failures)),
                trips=int(trips),
                reopen_at=None if reopen_at is None else float(reopen_at),
                lease=lease,
                lease_expires=None if lease_expires is None else float(lease_expires),
                last_failure=last_failure,
                override=Override(override) if override else None,
                override_reason=override_reason,
                epoch=int(epoch),
                last_success=None if last_success is None else float(last_success),
                inflight=tuple((str(t), float(e)) for t, e in json.loads(inflight or "[]")),
            )
            if record.state is BreakerState.UNKNOWN or (last_failure is not None and not isinstance(json.loads(last_failure), dict)):
                raise ValueError("not a breaker state")
        except (ValueError, TypeError) as exc:
            raise RecordUnreadable(host, f"{type(exc).__name__}: {str(exc)[:80]}") from None
        return record

    def _write(self, conn: sqlite3.Connection, host: str, r: BreakerRecord) -> None:
        conn.execute(_UPSERT, (
            host, r.state.value, json.dumps(list(r.failures)), r.trips, r.reopen_at,
            r.lease, r.lease_expires, r.last_failure,
            r.override.value if r.override else None, r.override_reason, r.epoch,
            r.last_success, json.dumps([list(x) for x in r.inflight]) if r.inflight else None,
            self._clock(),
        ))

    def _read_modify_write(self, host: str, step):
        """Run ``step(record, now) -> (new_record | None, result)`` atomically."""
        if self.read_only:
            raise StoreUnavailable(f"sqlite store {self.path} is read-only here")
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                new, result = step(self._read(conn, host), self._clock())
                if new is not None:
                    self._write(conn, host, new)
                conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                self._rollback_quietly(conn)
                self._drop_connection()
                raise StoreUnavailable(f"sqlite store {self.path} failed: {_describe(exc)}") from exc
            except RecordUnreadable:
                self._rollback_quietly(conn)
                raise

    @staticmethod
    def _rollback_quietly(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # -- the store interface ------------------------------------------------

    def admit(self, host: str, config: BreakerConfig, new_lease: str) -> Decision:
        with self._lock:
            conn = self._connection()
            try:
                new, decision = machine.admit(
                    self._read(conn, host), self._clock(), config, host, new_lease, self.name
                )
            except sqlite3.Error as exc:
                self._drop_connection()
                raise StoreUnavailable(f"sqlite store {self.path} failed: {_describe(exc)}") from exc
        if new is None:
            return decision  # nothing to change: the snapshot read is the answer
        return self._read_modify_write(
            host, lambda record, now: machine.admit(record, now, config, host, new_lease, self.name)
        )

    def record_failure(
        self, host: str, config: BreakerConfig, summary_json: str,
        epoch: int | None, lease: str | None,
    ) -> Transition | None:
        return self._read_modify_write(
            host, lambda record, now: machine.record_failure(
                record, now, config, host, summary_json, epoch, lease
            ),
        )

    def record_success(
        self, host: str, config: BreakerConfig, epoch: int | None, lease: str | None,
    ) -> Transition | None:
        return self._read_modify_write(
            host, lambda record, now: machine.record_success(record, now, config, host, epoch, lease),
        )

    def release(self, host: str, lease: str | None) -> None:
        self._read_modify_write(host, lambda record, now: (machine.release(record, now, host, lease), None))

    def amend_failure(self, host: str, early_json: str, final_json: str) -> None:
        self._read_modify_write(host, lambda record, now: (machine.amend_failure(record, early_json, final_json), None))

    def mirror_open(self, host: str, reopen_at: float | None, summary_json: str, trips: int) -> None:
        """This machine's copy of an OPEN the shared store recorded (see Breaker: local fallback)."""
        self._read_modify_write(host, lambda record, now: (machine.mirror_open(record, reopen_at, summary_json,
                                                                               trips), None))

    def set_override(self, host: str, override: Override | None, reason: str | None) -> None:
        self._read_modify_write(
            host, lambda record, now: (machine.set_override(record, override, reason), None)
        )

    def status(self, host: str, config: BreakerConfig) -> BreakerStatus:
        with self._lock:
            conn = self._connection()
            try:
                record = self._read(conn, host)
            except sqlite3.Error as exc:
                self._drop_connection()
                raise StoreUnavailable(f"sqlite store {self.path} failed: {_describe(exc)}") from exc
        return machine.status(record, self._clock(), config, host)

    def reset(self, host: str) -> None:
        if self.read_only:
            raise StoreUnavailable(f"sqlite store {self.path} is read-only here")
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("DELETE FROM breaker WHERE host = ?", (host,))
            except sqlite3.Error as exc:
                self._drop_connection()
                raise StoreUnavailable(f"sqlite store {self.path} failed: {_describe(exc)}") from exc

    def close(self) -> None:
        with self._lock:
            self._drop_connection()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
