"""What does remembering cost? (issue 15, scale)

1. **Per observation**, at 100,000 stored rows on SQLite: the same sequence of
   real checks (a verified diagnosis of a lab TLS server on 127.0.0.1) run
   without recording and with recording + drift detection + the persistence
   read; reported as ms per observation and as the ratio of the two runs. The
   store is filled first with 100,000 rows of 2,000 (target, host, address) keys
   (50 raw rows each: the steady state of the raw window).
2. **Size**: the history of 1,000 targets over 30 days at a check every five
   minutes (1,000 x 288 x 30 = 8.64M observations), through the real write path
   (``store.record``: drift, compaction, retention), for a sample of targets
   (``--size-targets``, default 25) over 35 simulated days (so retention has
   worked too); the database size per target is then multiplied by 1,000. Each
   target: one observation per check, 2% of checks failed (kept raw, as
   persistence needs), a certificate renewal and a cipher change during the month.
   ``--full`` instead writes all 1,000 targets (hours on a loaded machine).

    python bench/bench_history.py [--checks 300] [--size-targets 25] [--full]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxhealth.lab.changing import ChangingTLSServer  # noqa: E402
from cxhealth.tasks.history import Observation, judge_persistence, open_history_store  # noqa: E402
from cxhealth.tasks.history.recording import observation_from_diagnosis  # noqa: E402
from cxhealth.tasks.history.store import SQLiteHistoryStore  # noqa: E402
from cxhealth.tasks.tls import DiagnoseOptions, Endpoint, TLSPolicy, diagnose  # noqa: E402

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
CHAIN = ("a1" * 32, "b2" * 32)


def prefill(store: SQLiteHistoryStore, rows: int, keys: int) -> None:
    """*rows* raw observations over *keys* keys, written in bulk (the steady state of the raw window)."""
    conn = store._conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO chains (fingerprints, root, issuer, not_after, leaf_not_after, leaf_key) "
                 "VALUES (?, 'CN=Root', 'CN=Inter', ?, ?, 'sha256/x')",
                 (",".join(CHAIN), (T0 + timedelta(days=90)).timestamp(), (T0 + timedelta(days=90)).timestamp()))
    per_key = rows // keys
    batch = []
    for k in range(keys):
        for i in range(per_key):
            at = (T0 + timedelta(minutes=5 * i)).timestamp()
            batch.append((at, f"t{k // 2}", f"h{k % 2}.bench.test", 443, "127.0.0.1", "TLSv1.3",
                          "TLS_AES_256_GCM_SHA384", 1, 5.0 + (i % 7), "ok", "handshake", 1))
    conn.executemany("INSERT INTO observations (at, count, rollup, target, host, port, address, protocol, cipher, "
                     "chain_id, handshake_ms, cause, stage, ok) VALUES (?, 1, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
    conn.execute("COMMIT")


async def checks(server: ChangingTLSServer, n: int, store: SQLiteHistoryStore | None
                 ) -> tuple[float, list[float], list[float]]:
    """n sequential real checks; with a store each is recorded (drift + persistence read). Returns
    (total seconds, per-observation recording ms: wall clock, and this thread's CPU time)."""
    policy = TLSPolicy(ca_bundle=server.ca_bundle, timeout=5)
    endpoint = Endpoint(host=server.host, port=server.port, address="127.0.0.1")
    record_ms: list[float] = []
    record_cpu_ms: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        d = await diagnose(endpoint, policy, DiagnoseOptions(aia=False))
        if store is not None:
            t, c = time.perf_counter(), time.thread_time()
            at = T0 + timedelta(days=40, minutes=5 * i)
            o = observation_from_diagnosis(d.to_dict(), at=at, target="t7", stage="handshake")
            store.record([o], now=at)
            outcomes, started = store.checks("t7", now=at)
            judge_persistence(outcomes, streak_started=started)
            record_ms.append((time.perf_counter() - t) * 1000)
            record_cpu_ms.append((time.thread_time() - c) * 1000)
    return time.perf_counter() - start, record_ms, record_cpu_ms


def per_observation(n_checks: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, ChangingTLSServer() as server:
        store = open_history_store(f"sqlite:///{tmp}/h.sqlite3", retention_days=3650)
        prefill(store, 100_000, 2_000)
        stored = store._one("SELECT COUNT(*) FROM observations")[0]
        asyncio.run(checks(server, 20, None))  # warm up (contexts, caches)
        # interleave the two runs in rounds so machine load hits both alike
        plain_s = recorded_s = 0.0
        record_ms: list[float] = []
        cpu_ms: list[float] = []
        rounds = 5
        for _ in range(rounds):
            s, _, _ = asyncio.run(checks(server, n_checks // rounds, None))
            plain_s += s
            s, ms, cpu = asyncio.run(checks(server, n_checks // rounds, store))
            recorded_s += s
            record_ms += ms
            cpu_ms += cpu
        store.close()
    ms_sorted = sorted(record_ms)
    return {"stored_rows": stored, "checks": len(record_ms),
            "record_ms_p50": statistics.median(record_ms), "record_ms_p99": ms_sorted[int(0.99 * (len(ms_sorted) - 1))],
            "record_ms_mean": statistics.fmean(record_ms), "record_cpu_ms_p50": statistics.median(cpu_ms),
            "record_cpu_ms_mean": statistics.fmean(cpu_ms),
            "check_ms_without": plain_s * 1000 / len(record_ms), "check_ms_with": recorded_s * 1000 / len(record_ms),
            "ratio": recorded_s / plain_s}


def target_month(store: SQLiteHistoryStore, name: str, days: int, rng: random.Random, hosts: int = 1) -> int:
    """One target's checks every five minutes for *days*, through store.record (*hosts*
    observations per check: the token host, then API hosts)."""
    def leaf(n: int) -> str:
        return f"{name}-leaf{n}".encode().hex()[:64].ljust(64, "0")

    chain = (leaf(1), "b2" * 32)
    cipher, leaf_after = "TLS_AES_256_GCM_SHA384", T0 + timedelta(days=90)
    renew_at, cipher_at = rng.randrange(288 * days), rng.randrange(288 * days)
    n = 0
    for i in range(288 * days):
        at = T0 + timedelta(minutes=5 * i)
        if i == renew_at:
            chain, leaf_after = (leaf(2), chain[1]), leaf_after + timedelta(days=60)
        if i == cipher_at:
            cipher = "TLS_AES_128_GCM_SHA256"
        failed = rng.random() < 0.02
        check = []
        for h in range(hosts):
            bad = failed and h == 0
            check.append(Observation(
                at=at, target=name, host=f"{'login' if h == 0 else f'api{h}'}.{name}.bench.test", port=443,
                address=f"192.0.2.{10 + h}", protocol=None if bad else "TLSv1.3", cipher=None if bad else cipher,
                chain=() if bad else chain, root="CN=Bench Root", issuer="CN=Bench Inter", not_after=leaf_after,
                leaf_not_after=leaf_after, leaf_key=f"sha256/{chain[0][:8]}",
                handshake_ms=None if bad else rng.uniform(20, 40), cause="tcp_timeout" if bad else "ok",
                stage="handshake" if h == 0 else "endpoints"))
            if bad:
                break  # a failed handshake stops the check
        store.record(check, now=at)
        n += len(check)
    return n


def clone_to(store: SQLiteHistoryStore, targets: int) -> None:
    """Copy the written targets' rows until there are *targets* targets (the same shapes at full scale)."""
    conn = store._conn
    names = [r[0] for r in conn.execute("SELECT DISTINCT target FROM observations")]
    conn.execute("BEGIN")
    for copy in range(targets // len(names) - 1):
        for name in names:
            conn.execute("INSERT INTO observations (at, until, count, rollup, target, host, port, address, proxy, "
                         "protocol, cipher, chain_id, handshake_ms, cause, stage, ok) SELECT at, until, count, rollup, "
                         "? , replace(host, ?, ?), port, address, proxy, protocol, cipher, chain_id, handshake_ms, cause, "
                         "stage, ok FROM observations WHERE target = ?",
                         (f"{name}c{copy}", name, f"{name}c{copy}", name))
            conn.execute("INSERT INTO drift (at, target, host, port, address, code, from_value, to_value) "
                         "SELECT at, ?, replace(host, ?, ?), port, address, code, from_value, to_value FROM drift "
                         "WHERE target = ?", (f"{name}c{copy}", name, f"{name}c{copy}", name))
    conn.execute("COMMIT")


def size(targets: int, days: int, full: bool, hosts: int, clone: int) -> dict:
    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteHistoryStore(Path(tmp) / "h.sqlite3", retention_days=30)
        count = 1000 if full else targets
        start, cpu = time.perf_counter(), time.thread_time()
        written = sum(target_month(store, f"target{i:04d}", days, rng, hosts) for i in range(count))
        elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
        rows = store._one("SELECT COUNT(*) FROM observations")[0]
        raw = store._one("SELECT COUNT(*) FROM observations WHERE rollup = 0")[0]
        store._conn.execute("VACUUM")
        nbytes = store.size_bytes()
        cloned_bytes = None
        if clone and not full:
            clone_to(store, clone)
            store._conn.execute("VACUUM")
            cloned_bytes = store.size_bytes()
        store.close()
    per_target = nbytes / count
    return {"targets_written": count, "days": days, "hosts": hosts, "observations_written": written,
            "rows_kept": rows, "raw_rows_kept": raw, "db_bytes": nbytes, "bytes_per_target": per_target,
            "projected_1000_targets_mb": per_target * 1000 / 1e6, "write_ms_mean": elapsed * 1000 / written,
            "write_cpu_ms_mean": cpu * 1000 / written, "cloned_targets": clone if cloned_bytes else None,
            "cloned_mb": cloned_bytes / 1e6 if cloned_bytes else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checks", type=int, default=300)
    p.add_argument("--size-targets", type=int, default=25)
    p.add_argument("--days", type=int, default=35)
    p.add_argument("--full", action="store_true")
    p.add_argument("--hosts", type=int, default=1, help="observations per check (token host + API hosts)")
    p.add_argument("--clone-to", type=int, default=1000, help="copy the written targets' rows up to this many targets")
    p.add_argument("--skip-per-observation", action="store_true")
    args = p.parse_args()
    a = None if args.skip_per_observation else per_observation(args.checks)
    if a:
        print(f"per observation at {a['stored_rows']:,} stored rows (SQLite), {a['checks']} real checks:")
        print(f"  recording + drift + persistence read: p50 {a['record_ms_p50']:.2f} ms, p99 {a['record_ms_p99']:.2f} ms, "
          f"mean {a['record_ms_mean']:.2f} ms wall clock; CPU p50 {a['record_cpu_ms_p50']:.2f} ms, "
          f"mean {a['record_cpu_ms_mean']:.2f} ms (budget 5 ms)")
        print(f"  a check without recording {a['check_ms_without']:.2f} ms, with {a['check_ms_with']:.2f} ms: "
          f"ratio {a['ratio']:.3f}")
    b = size(args.size_targets, args.days, args.full, args.hosts, args.clone_to)
    print(f"size: {b['targets_written']} targets x {b['hosts']} host(s) x {b['days']} days x 288 checks = {b['observations_written']:,} "
          f"observations written (mean {b['write_ms_mean']:.2f} ms wall, {b['write_cpu_ms_mean']:.2f} ms CPU each), {b['rows_kept']:,} rows kept "
          f"({b['raw_rows_kept']:,} raw), {b['db_bytes'] / 1e6:.2f} MB")
    print(f"  {b['bytes_per_target'] / 1e3:.1f} kB per target: 1,000 targets x 30 days = "
          f"{b['projected_1000_targets_mb']:.1f} MB (budget 200 MB)")
    if b["cloned_mb"] is not None:
        print(f"  the same rows copied to {b['cloned_targets']:,} targets (full-scale indexes): {b['cloned_mb']:.1f} MB")
    print(f"  machine load average while measuring: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    ok = (a is None or a["record_ms_p50"] <= 5) and b["projected_1000_targets_mb"] < 200
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
