"""Fleet benchmark: hundreds of lab targets checked by integration-health runs spread
over N workers, against the same runs on one worker, in the same invocation.

    .venv/bin/python bench/bench_fleet.py [--targets 300] [--runs 12] [--workers 3] [--json]

One fleet (cxhealth.lab.fleet: Prefect server on PostgreSQL, a process pool with
N workers) plus a second process pool, ``cxhealth-bench-solo``, with one worker of
its own. The targets (Genesys-style, at the lab's fake platform: handshake
diagnostics, OAuth token, two endpoint GETs each) are split into ``--runs``
integration-health runs; the same runs go to each pool in turn (fleet first,
then solo — the same targets, the same lab, the same machine).

Reported per configuration:

* throughput — targets checked per second, from the first run created to the
  last run finished (what a scheduler sees);
* p50 / p99 of one target's check — from the server's task runs: the start of
  ``handshake-<target>`` to the end of ``endpoints-<target>``;
* memory per worker — peak RSS of the worker process, and peak RSS of the worker
  together with the flow-run processes it started (sampled every 0.2 s from /proc);
  plus how many runs each worker took (from its log).

Everything runs on 127.0.0.1; the fleet is torn down (database dropped) at the end.
Needs PostgreSQL at 127.0.0.1:5432. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cxhealth.lab.fleet as fleet

SOLO_POOL = "cxhealth-bench-solo"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


class MemorySampler(threading.Thread):
    """Peak RSS of each worker, alone and with its flow-run processes."""

    def __init__(self, workers: list[Any]) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.peak_self = {w.name: 0 for w in workers}
        self.peak_total = {w.name: 0 for w in workers}
        self.peak_children = {w.name: 0 for w in workers}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for w in self.workers:
                own = _rss_kib(w.pid)
                kids = _children(w.pid)
                total = own + sum(_rss_kib(k) for k in kids)
                self.peak_self[w.name] = max(self.peak_self[w.name], own)
                self.peak_total[w.name] = max(self.peak_total[w.name], total)
                self.peak_children[w.name] = max(self.peak_children[w.name], len(kids))
            self.halt.wait(0.2)


def _submissions(workers: list[Any]) -> dict[str, int]:
    return {w.name: len(re.findall(r"Flow run '[^']+' submitted to infrastructure",
                                   Path(w.log).read_text(errors="replace"))) for w in workers}


def _targets_toml(fake: Any, n: int, store: str) -> str:
    # JSON strings and arrays of strings are valid TOML for these ASCII values.
    lines = ["[defaults]", f"ca_bundle = {json.dumps(fake.ca_bundle)}", f"resolve = {json.dumps(fake.resolve)}",
             "timeout = 15.0"]  # the lab serves every target from one process: generous under load
    for i in range(n):
        values = fake.target_values("genesys", name=f"bench-{i:04d}")
        lines += ["", "[[target]]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()
                                       if k not in ("ca_bundle", "resolve", "timeout")]
    lines += ["", "[breaker]", f"store = {json.dumps(store)}", ""]
    return "\n".join(lines)


def _measure(api: Any, deployment_id: str, chunks: list[list[str]], targets_file: str, workers: list[Any],
             timeout: float, redis_url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # each configuration starts with closed breakers (the bench owns this database)
    client.close()
    before = _submissions(workers)
    sampler = MemorySampler(workers)
    sampler.start()
    began = time.time()
    ids = [api.create_flow_run_from_deployment(deployment_id, parameters={
        "targets": chunk, "targets_file": targets_file, "alerts": False}).id for chunk in chunks]
    latest: dict[Any, Any] = {}

    def state_of(r: Any) -> str | None:
        return r.state.type.value if r.state is not None else None

    def done() -> bool:
        latest.update({r.id: r for r in fleet.flow_runs(api, ids)})
        return len(latest) == len(ids) and all(state_of(r) in FINAL for r in latest.values())

    try:
        fleet.wait_for(done, timeout, 0.25, f"{len(ids)} benchmark runs")
    finally:
        sampler.halt.set()
        sampler.join()
    ended = max(r.end_time.timestamp() for r in latest.values() if r.end_time)
    states = [state_of(r) for r in latest.values()]
    failures = [m.groups() for r in latest.values()
                for m in re.finditer(r"(bench-\d+): (\w+) failed \(([^)]+)\)",
                                     (r.state.message if r.state is not None else None) or "")]

    # One target's check, from the server's task runs (they arrive asynchronously: poll).
    names = {t for chunk in chunks for t in chunk}

    progress: dict[str, Any] = {}

    def task_spans() -> dict[str, tuple[float, float]] | None:
        spans: dict[str, list[float]] = {}
        task_runs = fleet.task_runs(api, ids)
        progress["task_runs"] = len(task_runs)
        progress["sample"] = [(tr.name, tr.state_type, tr.start_time, tr.end_time) for tr in task_runs[:3]]
        for tr in task_runs:
            m = re.match(r"(handshake|endpoints)-(.+)$", tr.name or "")
            if not m or m.group(2) not in names:
                continue
            span = spans.setdefault(m.group(2), [0.0, 0.0])
            if m.group(1) == "handshake" and tr.start_time:
                span[0] = tr.start_time.timestamp()
            if m.group(1) == "endpoints" and tr.end_time:
                span[1] = tr.end_time.timestamp()
        complete = {k: (a, b) for k, (a, b) in spans.items() if a and b}
        progress["complete"] = len(complete)
        return complete if len(complete) >= len(names) - len(failures) else None

    try:
        spans = fleet.wait_for(task_spans, 120, 0.5, "every target's task runs on the server")
    except fleet.FleetError as exc:
        raise fleet.FleetError(f"{exc}: {progress}; flow runs {states}") from None
    checks = sorted(b - a for a, b in spans.values())
    after = _submissions(workers)
    wall = ended - began
    return {
        "runs": len(ids), "states": {s: states.count(s) for s in set(states)}, "targets": len(names),
        "unhealthy": len(failures),
        "unhealthy_causes": {f"{stage}/{cause}": sum(1 for f in failures if f[1:] == (stage, cause))
                             for stage, cause in {f[1:] for f in failures}},
        "wall_s": round(wall, 2), "targets_per_s": round(len(names) / wall, 1),
        "checks_timed": len(checks),
        "check_p50_ms": round(1000 * statistics.median(checks), 1),
        "check_p99_ms": round(1000 * checks[min(len(checks) - 1, int(0.99 * len(checks)))], 1),
        "workers": {w.name: {"runs": after[w.name] - before[w.name],
                             "peak_rss_mib": round(sampler.peak_self[w.name] / 1024, 1),
                             "peak_rss_with_flow_runs_mib": round(sampler.peak_total[w.name] / 1024, 1),
                             "peak_flow_run_processes": sampler.peak_children[w.name]} for w in workers},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--runs", type=int, default=12, help="integration-health runs the targets are split into")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--redis-db", type=int, default=14,
                        help="breaker store redis://127.0.0.1:6379/<db>; flushed before each configuration")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from cxhealth.lab.fake_platform import FakePlatform

    with tempfile.TemporaryDirectory(prefix="cxhealth-bench-fleet-") as tmp, FakePlatform() as fake:
        targets = Path(tmp) / "targets.toml"
        store = f"redis://127.0.0.1:6379/{args.redis_db}"
        targets.write_text(_targets_toml(fake, args.targets, store))
        names = [f"bench-{i:04d}" for i in range(args.targets)]
        chunks = [names[i::args.runs] for i in range(args.runs)]
        options = fleet.FleetOptions(state_dir=Path(tmp) / "fleet", workers=args.workers,
                                     db_name="cxhealth_fleet_bench", fresh=True, scheduler=False, ui=False,
                                     worker_poll_s=1, worker_env=fake.env())
        result: dict[str, Any] = {"targets": args.targets, "runs": args.runs, "cores": os.cpu_count()}
        try:
            t = time.monotonic()
            state = fleet.up(options)
            result["fleet_up_s"] = round(time.monotonic() - t, 1)
            fleet.run_prefect(state, "work-pool", "create", SOLO_POOL, "--type", "process")
            solo = fleet.start_worker(state, "cxhealth-bench-solo-1", SOLO_POOL, fake.env(), poll_s=1)
            with fleet.client(state.api_url, timeout=30) as api:
                fleet.wait_for(lambda: fleet.online_workers(api, SOLO_POOL), 120, 0.2, "the solo worker online")
                base = api.read_deployment_by_name("integration-health/every-5-minutes")
                on_fleet = fleet.twin_deployment(api, base, "bench-fleet", work_pool_name=state.pool,
                                                 work_queue_name="default", concurrency_limit=None)
                on_solo = fleet.twin_deployment(api, base, "bench-solo", work_pool_name=SOLO_POOL,
                                                work_queue_name="default", concurrency_limit=None)
                fleet_workers = [p for p in state.workers if p.name != solo.name]
                result["fleet"] = _measure(api, on_fleet, chunks, str(targets), fleet_workers, timeout=900,
                                           redis_url=store)
                result["one_worker"] = _measure(api, on_solo, chunks, str(targets), [solo], timeout=900,
                                                redis_url=store)
        finally:
            report = fleet.down(Path(tmp) / "fleet", drop_db=True)
            result["left_running"] = report.left
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.targets} lab targets in {args.runs} integration-health runs, {os.cpu_count()} cores "
          f"(fleet up in {result['fleet_up_s']}s)")
    print(f"{'':<12} {'wall s':>7} {'targets/s':>9} {'p50 ms':>8} {'p99 ms':>8}  states")
    for key, label in (("fleet", f"{args.workers} workers"), ("one_worker", "1 worker")):
        r = result[key]
        print(f"{label:<12} {r['wall_s']:>7} {r['targets_per_s']:>9} {r['check_p50_ms']:>8} {r['check_p99_ms']:>8}  "
              f"{r['states']}  unhealthy {r['unhealthy']} {r['unhealthy_causes'] or ''}")
        for name, w in r["workers"].items():
            print(f"    {name:<24} runs {w['runs']:>3}  worker RSS {w['peak_rss_mib']:>6} MiB  with flow runs "
                  f"{w['peak_rss_with_flow_runs_mib']:>7} MiB (peak {w['peak_flow_run_processes']} flow-run processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
