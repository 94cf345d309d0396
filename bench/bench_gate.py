"""Benchmark: what the health gate adds to a team's sync flow (issue 16: <= 0.05 s).

A team's WFM sync flow, run the way a worker's flow-run process runs it: in this
process, against a real ``prefect server start`` (PostgreSQL at 127.0.0.1:5432
by default, a fresh database dropped afterwards; ``--database sqlite`` for the
server on SQLite). Two variants of the same flow, differing in one line:

* ``A`` (gate)  — ``await health_gate(targets=..., targets_file=...)``, as the README
  shows (alerts on: the run's ``[slack]`` is the lab's fake Slack), then the sync;
* ``B`` (plain) — the same checks without Prefect: ``load_targets`` +
  ``breaker_for`` + ``cxhealth.tasks.health.check_targets`` (no events, no
  artifacts, no history, no Slack), then the same sync.

The sync work is the same in both: the gated WFM sync's own tasks
(``fetch-wfm-schedules`` from the lab's fake Genesys, ``write-wfm-schedules`` into
SQLite). Targets: the fake platform's three (Genesys, NICE, generic), all healthy;
the breaker and the history on SQLite files of the run's temporary directory.

Rounds are interleaved and counterbalanced (AB, BA, AB, …), after warm-up
rounds that are not counted; ``--gap`` idles before every call, outside the
timed region (the server persists the previous run's events and logs then, as it
would between two scheduled syncs). Each round's pair gives one difference A−B.
Printed: the medians of A and B, the median of the paired differences with its
IQR and a bootstrap 95% interval, the same for the gate line alone (timed inside
the flow), and the load average before and after.

    .venv/bin/python bench/bench_gate.py [--rounds 21] [--warmup 3] [--gap 0.5] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_S = 0.05


def start_server(tmp: Path, database: str, pg_url: str) -> tuple[object, str, str | None]:
    """``prefect server start`` in its own session; returns (process, API URL, database to drop)."""
    from cxhealth.lab.fleet import _prefect_cmd, _spawn, ensure_database, free_port

    port = free_port()
    db_name = None
    if database == "postgres":
        db_name = f"cxhealth_bench_gate_{os.getpid()}"
        ensure_database(pg_url, db_name, fresh=True)
        db_url = f"postgresql+asyncpg://{pg_url.split('://', 1)[1].rstrip('/')}/{db_name}"
    else:
        db_url = f"sqlite+aiosqlite:///{tmp / 'prefect-server.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp / "server-home"), "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "false",
                "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"})
    proc = _spawn([*_prefect_cmd(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                  env, tmp / "server.log")
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench_gate: the Prefect server did not start (see {tmp / 'server.log'})")
        time.sleep(0.2)
    return proc, api, db_name


def spread(values: list[float], resamples: int = 4000, seed: int = 16) -> tuple[float, float, float, float, float]:
    """median, IQR (q1, q3) and a bootstrap 95% interval of the median."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return statistics.median(values), q1, q3, meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21, help="counted rounds, each one A and one B (>= 15)")
    parser.add_argument("--warmup", type=int, default=3, help="rounds run first and not counted")
    parser.add_argument("--gap", type=float, default=0.5, help="idle seconds before each call, not timed")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres",
                        help="the Prefect server's database (postgres: 127.0.0.1:5432, trust auth)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--no-slack", action="store_true", help="no [slack] table: the gate's alerts are off")
    args = parser.parse_args()
    if args.rounds < 15:
        parser.error("--rounds must be at least 15 for a stable median")

    tmp = Path(tempfile.mkdtemp(prefix="cxhealth-bench-gate-"))
    load_before = os.getloadavg()
    server, api, db_name = start_server(tmp, args.database, args.pg_url)
    try:
        for k in [k for k in os.environ if k.startswith("PREFECT_")]:
            del os.environ[k]
        os.environ.update({"PREFECT_HOME": str(tmp / "client-home"), "PREFECT_API_URL": api,
                           "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        times, counts = run_bench(tmp, args)
    finally:
        from cxhealth.lab.fleet import _stop, drop_database

        _stop([server.pid], grace_s=10)
        if db_name:
            try:
                drop_database(args.pg_url, db_name)
            except Exception as exc:  # noqa: BLE001 - say so, the figures stand
                print(f"(could not drop database {db_name}: {type(exc).__name__})", file=sys.stderr)
    load_after = os.getloadavg()
    report(times, counts, args, load_before, load_after)
    return 0


def run_bench(tmp: Path, args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, int]]:
    from cxhealth.lab.fake_platform import FakePlatform
    from cxhealth.lab.fake_slack import FakeSlack
    from cxhealth.lab.full import LAB_SECRETS, SLACK_CHANNEL

    with FakePlatform() as fake, FakeSlack(token=LAB_SECRETS["DEMO_SLACK_BOT_TOKEN"],
                                           channels=dict([SLACK_CHANNEL])) as slack:
        os.environ.update(fake.env())
        os.environ.update(LAB_SECRETS)
        text = fake.targets_toml()
        text += f'\n[breaker]\nstore = "sqlite:///{tmp}/breaker.sqlite3"\n'
        text += f'\n[history]\nstore = "sqlite:///{tmp}/history.sqlite3"\n'
        if not args.no_slack:
            text += (f'\n[slack]\nbot_token_env = "DEMO_SLACK_BOT_TOKEN"\nchannel = "{SLACK_CHANNEL[0]}"\n'
                     f'api_base = "{slack.api_base}"\n')
        targets_file = tmp / "targets.toml"
        targets_file.write_text(text, encoding="utf-8")
        names = ["lab-genesys", "lab-nice", "lab-partner"]
        db = str(tmp / "wfm.sqlite3")

        from prefect import flow

        from cxhealth import health_gate
        from cxhealth.flows.integration_health import load_config
        from cxhealth.flows.wfm_sync import fetch_schedules, write_schedules
        from cxhealth.tasks.health import check_targets
        from cxhealth.tasks.runtime import breaker_for
        from cxhealth.tasks.targets import load_targets

        segment: dict[str, float] = {}

        async def sync_work(target: object, env: object) -> int:
            rows = await fetch_schedules(target, env, "bu-lab-1", "2024-05-06")
            return write_schedules(db, "bu-lab-1", "2024-05-06", rows)

        @flow(name="bench-sync-with-gate")
        async def sync_with_gate(targets: list[str], targets_file: str) -> int:
            start = time.perf_counter()
            await health_gate(targets=targets, targets_file=targets_file)
            segment["A"] = time.perf_counter() - start
            start = time.perf_counter()
            config, selected, env = await load_config(targets_file, targets)
            rows = await sync_work(selected[0], env)
            segment["work_A"] = time.perf_counter() - start
            return rows

        @flow(name="bench-sync-with-plain-checks")
        async def sync_with_plain(targets: list[str], targets_file: str) -> int:
            start = time.perf_counter()
            config = load_targets(targets_file)
            selected = [config.target(n) for n in targets]
            breaker = breaker_for(config)
            try:
                reports = await check_targets(selected, breaker)
            finally:
                breaker.close()
            if not all(r.healthy for r in reports):
                raise RuntimeError("plain checks: unhealthy")
            segment["B"] = time.perf_counter() - start
            start = time.perf_counter()
            rows = await sync_work(selected[0], None)
            segment["work_B"] = time.perf_counter() - start
            return rows

        variants = {"A": sync_with_gate, "B": sync_with_plain}
        collector = {"s": 0.0, "full": 0, "t0": 0.0}

        def on_gc(phase: str, info: dict) -> None:  # time in Python's cyclic collector, per call
            if phase == "start":
                collector["t0"] = time.perf_counter()
            else:
                collector["s"] += time.perf_counter() - collector["t0"]
                collector["full"] += info.get("generation") == 2

        gc.callbacks.append(on_gc)

        async def bench() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {"A": [], "B": [], "gate_A": [], "gate_B": [], "work_A": [], "work_B": [],
                                            "gc_A": [], "gc_B": [], "full_A": [], "full_B": []}
            for i in range(args.warmup + args.rounds):
                order = "AB" if i % 2 == 0 else "BA"
                for v in order:
                    await asyncio.sleep(args.gap)
                    collector.update(s=0.0, full=0)
                    start = time.perf_counter()
                    rows = await variants[v](targets=names, targets_file=str(targets_file))
                    elapsed = time.perf_counter() - start
                    if rows != len(fake.schedule_rows):
                        raise SystemExit(f"bench_gate: variant {v} synced {rows!r} rows")
                    if i >= args.warmup:
                        times[v].append(elapsed)
                        times[f"gate_{v}"].append(segment[v])
                        times[f"work_{v}"].append(segment[f"work_{v}"])
                        times[f"gc_{v}"].append(collector["s"])
                        times[f"full_{v}"].append(collector["full"])
            return times

        times = asyncio.run(bench())
        counts = {"slack_calls": len(slack.api_calls()), "slack_top_level": len(slack.top_level())}
    return times, counts


def report(times: dict[str, list[float]], counts: dict[str, int], args: argparse.Namespace,
           load_before: tuple[float, ...], load_after: tuple[float, ...]) -> None:
    a, b = times["A"], times["B"]
    diffs = [x - y for x, y in zip(a, b)]
    seg = [x - y for x, y in zip(times["gate_A"], times["gate_B"])]
    med, q1, q3, lo, hi = spread(diffs)
    smed, sq1, sq3, slo, shi = spread(seg)
    print(f"a team's sync flow on `prefect server start` ({args.database}), in-process flow calls, "
          f"3 healthy lab targets; {args.rounds} counted rounds (AB/BA alternating) after {args.warmup} "
          f"warm-up rounds, {args.gap:g} s idle before each call; Slack {'off' if args.no_slack else 'on (lab fake)'}")
    print(f"  A  sync flow with `await health_gate(...)`     median {statistics.median(a):.3f} s "
          f"(min {min(a):.3f}, max {max(a):.3f})")
    print(f"  B  sync flow with the plain checks            median {statistics.median(b):.3f} s "
          f"(min {min(b):.3f}, max {max(b):.3f})")
    print(f"  A-B per round (paired)   median {med:+.3f} s  IQR [{q1:+.3f}, {q3:+.3f}]  "
          f"bootstrap 95% [{lo:+.3f}, {hi:+.3f}]  ratio of medians {statistics.median(a) / statistics.median(b):.3f}")
    print(f"  the gate line vs the plain checks, timed inside the flow: A {statistics.median(times['gate_A']):.3f} s, "
          f"B {statistics.median(times['gate_B']):.3f} s; paired median {smed:+.3f} s  IQR [{sq1:+.3f}, {sq3:+.3f}]  "
          f"95% [{slo:+.3f}, {shi:+.3f}]")
    wmed, wq1, wq3, wlo, whi = spread([x - y for x, y in zip(times["work_A"], times["work_B"])])
    print(f"  the sync work after it, timed inside the flow: A {statistics.median(times['work_A']):.3f} s, "
          f"B {statistics.median(times['work_B']):.3f} s; paired median {wmed:+.3f} s  IQR [{wq1:+.3f}, {wq3:+.3f}]  "
          f"95% [{wlo:+.3f}, {whi:+.3f}]")
    print(f"  time in Python's cyclic garbage collector per flow call: A median {statistics.median(times['gc_A']) * 1000:.0f} ms "
          f"(full collections {sum(times['full_A'])} in {len(a)} calls), B {statistics.median(times['gc_B']) * 1000:.0f} ms "
          f"({sum(times['full_B'])})")
    verdict = "met" if hi <= GOAL_S else ("NOT met" if lo > GOAL_S else "not shown (the interval straddles it)")
    print(f"  goal: the gate adds <= {GOAL_S:.2f} s to a sync flow -> {verdict}")
    print(f"  load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} (2 cores); "
          f"Slack API calls {counts['slack_calls']}, top-level messages {counts['slack_top_level']} "
          "(all healthy: a drift, e.g. latency_regression on a loaded machine, is one low-severity message)")


if __name__ == "__main__":
    raise SystemExit(main())
