"""Benchmark: the orchestration cost of the health gate (issue 5).

In one process, against the fake platform's 3 targets (Genesys, NICE, generic),
interleaved rounds of:

* ``gate``  — a warm ``health_gate`` flow call on Prefect's embedded server (SQLite);
* ``plain`` — the same checks without Prefect (``tasks.health.check_targets``);
* ``empty`` — a flow call that does nothing: Prefect's own floor on this machine;
* ``in-sync gate`` / ``in-sync plain`` — how a data team uses it: a sync flow
  that calls ``health_gate`` as a subflow, vs the same flow running the plain
  checks; the difference is what the gate adds to each sync run.

Prints both medians and the difference (the goal: <= 0.3 s of orchestration).

``--gap`` idles between calls (outside the timed region). Back to back
(``--gap 0``) the embedded SQLite server is still persisting the previous
run's events when the next flow run is created; it answers 503
(SQLITE_BUSY_SNAPSHOT) and Prefect's client backs off ~2 s. A gate runs once
before each scheduled sync, so the spaced figure is the representative one;
both are worth reporting.

    .venv/bin/python bench/bench_gate.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--gap", type=float, default=1.0,
                        help="idle seconds between calls, outside the timed region (0: back to back)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxhealth-bench-gate-"))
    os.environ["PREFECT_HOME"] = str(tmp / "prefect")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry attempts offline
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # slow or busy machines

    from cxhealth.lab.fake_platform import FakePlatform

    with FakePlatform() as fake:
        os.environ.update(fake.env())
        targets = fake.write_targets(tmp / "targets.toml")
        targets.write_text(targets.read_text() + f'\n[breaker]\nstore = "sqlite:///{tmp}/cxhealth.sqlite3"\n')

        from cxhealth.flows.integration_health import health_gate
        from cxhealth.cli.run import check_all, load_run_config

        config, selected = load_run_config(str(targets))

        async def gate() -> None:
            await health_gate(targets_file=str(targets), alerts=False)

        async def plain() -> None:
            runs = await check_all(config, selected)
            assert all(r["healthy"] for r in runs)

        from prefect import flow

        @flow(name="empty-reference")
        async def empty_flow() -> None:
            """Prefect's own floor on this machine: a flow call that does nothing."""

        async def empty() -> None:
            await empty_flow()

        @flow(name="sync-with-gate")
        async def sync_with_gate() -> None:
            await health_gate(targets_file=str(targets), alerts=False)

        @flow(name="sync-with-plain-checks")
        async def sync_with_plain() -> None:
            await plain()

        async def bench() -> dict[str, list[float]]:
            await gate()  # starts the embedded server, migrates: not measured
            await plain()
            await empty()
            await sync_with_gate()
            await sync_with_plain()
            calls = (("gate", gate), ("plain", plain), ("empty", empty),
                     ("sync_gate", sync_with_gate), ("sync_plain", sync_with_plain))
            times: dict[str, list[float]] = {name: [] for name, _ in calls}
            for _ in range(args.rounds):
                for name, fn in calls:
                    await asyncio.sleep(args.gap)  # a gate runs before each (hourly) sync, not back to back
                    start = time.perf_counter()
                    await fn()
                    times[name].append(time.perf_counter() - start)
            return times

        times = asyncio.run(bench())
    gate_m, plain_m = statistics.median(times["gate"]), statistics.median(times["plain"])
    empty_m = statistics.median(times["empty"])
    sync_gate_m, sync_plain_m = statistics.median(times["sync_gate"]), statistics.median(times["sync_plain"])
    print(f"3 healthy lab targets, {args.rounds} interleaved rounds, {args.gap:g} s idle between calls, "
          "median seconds (in-process, warm)")
    print(f"  plain (no Prefect)      {plain_m:.3f} s")
    print(f"  health_gate flow call   {gate_m:.3f} s")
    print(f"  empty Prefect flow call {empty_m:.3f} s  (Prefect's own floor here, for reference)")
    print(f"  orchestration overhead  {gate_m - plain_m:+.3f} s  (goal <= 0.300 s: "
          f"{'met' if gate_m - plain_m <= 0.3 else 'NOT met'}); above an empty flow: {gate_m - plain_m - empty_m:+.3f} s")
    print(f"  in a sync flow: gate subflow {sync_gate_m:.3f} s vs plain checks {sync_plain_m:.3f} s "
          f"-> the gate adds {sync_gate_m - sync_plain_m:+.3f} s to each sync run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
