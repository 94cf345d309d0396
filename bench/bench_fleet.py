"""Fleet benchmark (issue 16): 1,000 lab targets on 10 hosts, in ONE invocation —

* ``inproc``  — the baseline: ``cxhealth run --targets FILE --json --no-alerts`` in one process;
* ``1w``      — integration-health runs, one per shard (``shard="k/n"``), on a pool with 1 worker;
* ``3w``      — the same runs on a pool with 3 workers (cxhealth.lab.fleet: Prefect server on
  PostgreSQL, process work pools);

    .venv/bin/python bench/bench_fleet.py [--targets 1000] [--hosts 10] [--shards 3] [--rounds 2] [--json]

Rounds are interleaved (inproc, 1w, 3w, inproc, 1w, 3w, …); medians are reported, and the
ratios fleet / in-process of the medians (goal: >= 1/3). Each fleet configuration is
measured twice per round:

* ``steady`` — the targets were checked before, healthy: the per-target artifacts are
  written only when news (flows/integration_health.py ``target_artifact_reason``), so a
  healthy run writes the run report only;
* ``cold``   — fresh target names (``--cold``, on by default): no target artifact exists
  yet, so every target writes one — the cost every run paid before the news rule.

Per measurement: throughput (targets/s, from the first run created to the last run
finished on the server, what a scheduler sees); healthy / unhealthy targets; the
Prefect objects the runs created on the server (task runs — counted once every one is recorded
final, and how long after the runs ended that took —, artifacts, log lines);
per worker: runs taken, peak RSS of the worker and of the worker with its flow-run
processes (sampled every 0.2 s from /proc). The load average is printed before and after.

Breaker store Redis ``redis://127.0.0.1:6379/<--redis-db>`` (flushed before each
measurement), the server's event messaging on Redis streams (database ``--redis-db`` - 1;
``--messaging memory``: Prefect's in-memory default, whose dropped events are counted
from the server's log), history SQLite in a temporary directory. Needs PostgreSQL at
127.0.0.1:5432 and Redis at 127.0.0.1:6379. Everything is torn down at the end (the
bench's database dropped). Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cxhealth.lab.fleet as fleet

SOLO_POOL = "cxhealth-bench-solo"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its reaped children (utime+stime+cutime+cstime) and its live descendants."""
    f = _stat(pid)
    if f is None:
        return 0.0
    own = sum(int(x) for x in f[11:15]) / _TICK
    return own + sum(_cpu_s(k) for k in _children(pid))


def _postgres_cpu_s(db_name: str) -> float:
    """CPU seconds of the PostgreSQL backends serving *db_name* (live ones: the server's pool keeps them)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if db_name.encode() not in (entry / "cmdline").read_bytes():
                    continue
            except OSError:
                continue
            f = _stat(int(entry.name))
            if f is not None:
                total += (int(f[11]) + int(f[12])) / _TICK
    return total


class CpuMeter:
    """Where the CPU goes during one measurement: the Prefect server, PostgreSQL (this database's
    backends), each worker with its flow-run processes, and this process (the lab, polling)."""

    def __init__(self, server_pid: int | None, workers: list[Any], db_name: str) -> None:
        self.server_pid, self.workers, self.db_name = server_pid, workers, db_name

    def snap(self) -> dict[str, float]:
        t = os.times()
        out = {"lab_and_bench": t.user + t.system, "cxhealth_run": t.children_user + t.children_system,
               "postgres": _postgres_cpu_s(self.db_name)}
        if self.server_pid:
            out["prefect_server"] = _cpu_s(self.server_pid)
        for w in self.workers:
            out[w.name] = _cpu_s(w.pid)
        return out

    @staticmethod
    def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: round(b[k] - a.get(k, 0.0), 1) for k in b if round(b[k] - a.get(k, 0.0), 1)}


def _submissions(workers: list[Any]) -> dict[str, int]:
    return {w.name: len(re.findall(r"Flow run '[^']+' submitted to infrastructure",
                                   Path(w.log).read_text(errors="replace"))) for w in workers}


def write_targets(path: Path, fake: Any, n: int, hosts: int, prefix: str, breaker: str, history: str) -> list[str]:
    """bench_run_scale's targets (generic platform, token + /v1/health on the i-th partner host)."""
    from cxhealth.lab.fake_platform import partner_api_host

    c = fake.credentials
    lines = ["[defaults]", f"ca_bundle = {json.dumps(str(fake.ca_bundle))}",
             f"resolve = {json.dumps(fake.resolve)}", "timeout = 15", ""]  # one lab process serves them all
    names = []
    for i in range(n):
        host = partner_api_host(i % hosts + 1)
        names.append(f"{prefix}-{i:05d}")
        lines += ["[[target]]", f'name = "{names[-1]}"', 'platform = "generic"',
                  f"client_id = {json.dumps(c.partner_client_id)}", 'client_secret_env = "LAB_PARTNER_SECRET"',
                  f"token_url = {json.dumps(fake.url(host, '/oauth/token'))}",
                  f"api_base = {json.dumps(fake.url(host))}", 'endpoints = ["/v1/health"]', ""]
    lines += ["[breaker]", f"store = {json.dumps(breaker)}", "", "[history]", f"store = {json.dumps(history)}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return names


def _flush(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # each measurement starts with closed breakers (the bench owns this database)
    client.close()


def measure_inproc(targets: Path, env: dict[str, str], n: int, redis_url: str, meter: CpuMeter) -> dict[str, Any]:
    _flush(redis_url)
    cpu0 = meter.snap()
    cli = [sys.executable, "-m", "cxhealth", "run", "--targets", str(targets), "--json", "--no-alerts"]
    start = time.perf_counter()
    proc = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - start
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"cxhealth run failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}") from None
    healthy = sum(1 for t in report["targets"] if t["healthy"])
    return {"wall_s": round(wall, 2), "targets_per_s": round(n / wall, 1), "healthy": healthy,
            "unhealthy": len(report["targets"]) - healthy, "exit": proc.returncode,
            "cpu_s": CpuMeter.delta(cpu0, meter.snap())}


def _count_logs(api: Any, ids: list[Any]) -> int:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    total = 0
    for i in range(0, len(ids), 50):
        offset = 0
        while True:
            page = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids[i:i + 50])),
                                 limit=200, offset=offset)
            total += len(page)
            if len(page) < 200:
                break
            offset += 200
    return total


def _count_artifacts(api: Any, ids: list[Any]) -> dict[str, int]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    keys: dict[str, int] = {}
    offset = 0
    while True:
        page = api.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)),
                                  limit=200, offset=offset)
        for a in page:
            kind = "report" if a.key == "cxhealth-report" else "target" if (a.key or "").startswith(
                "cxhealth-target-") else str(a.key)
            keys[kind] = keys.get(kind, 0) + 1
        if len(page) < 200:
            break
        offset += 200
    return keys


SERVER_LOG: list[Path] = []


def _dropped_events() -> int:
    """Events the server's in-memory messaging dropped (a consumer's queue full), from its log."""
    if not SERVER_LOG:
        return 0
    return Path(SERVER_LOG[0]).read_text(errors="replace").count("Subscription queue is full, dropping message")


def measure_fleet(api: Any, deployment_id: Any, shards: int, targets_file: Path, n: int, workers: list[Any],
                  redis_url: str, meter: CpuMeter, timeout: float = 1200) -> dict[str, Any]:
    _flush(redis_url)
    cpu0 = meter.snap()
    dropped0 = _dropped_events()
    before = _submissions(workers)
    sampler = MemorySampler(workers)
    sampler.start()
    began = time.time()
    ids = [api.create_flow_run_from_deployment(deployment_id, parameters={
        "targets_file": str(targets_file), "alerts": False, "shard": f"{k}/{shards}"}).id
        for k in range(1, shards + 1)]
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
    wall = ended - began
    states = [state_of(r) for r in latest.values()]
    healthy = sum(int(m.group(1)) for r in latest.values()
                  for m in [re.match(r"(\d+) target\(s\) healthy", (r.state.message or "") if r.state else "")] if m)
    failures = [m.groups() for r in latest.values()
                for m in re.finditer(r"(\S+): (\w+) failed \(([^)]+)\)", (r.state.message or "") if r.state else "")]
    starts = sorted(r.start_time.timestamp() - began for r in latest.values() if r.start_time)
    cpu = CpuMeter.delta(cpu0, meter.snap())
    # Task runs reach the server as events (its task-run recorder writes them), logs in batches:
    # wait until every target's task run is recorded final (at most 180 s), and say how long it took.
    recorded_at = time.time()
    task_runs: list[Any] = []
    while time.time() - recorded_at < 180:
        task_runs = fleet.task_runs(api, ids)
        if sum(1 for t in task_runs if t.state is not None and t.state.is_final()) >= n:
            break
        time.sleep(1)
    recorded_s = round(time.time() - recorded_at, 1)
    after = _submissions(workers)
    return {
        "wall_s": round(wall, 2), "targets_per_s": round(n / wall, 1), "runs": len(ids),
        "states": {s: states.count(s) for s in set(states)}, "healthy_in_completed_runs": healthy,
        "unhealthy": len(failures),
        "unhealthy_causes": {f"{s}/{c}": sum(1 for f in failures if f[1:] == (s, c)) for s, c in {f[1:] for f in failures}},
        "cpu_s": cpu, "server_dropped_events": _dropped_events() - dropped0,
        "first_run_started_s": round(starts[0], 1) if starts else None,
        "last_run_started_s": round(starts[-1], 1) if starts else None,
        "server_objects": {"task_runs": len(task_runs), "artifacts": _count_artifacts(api, ids),
                           "log_lines": _count_logs(api, ids)},
        "task_runs_recorded_s": recorded_s,  # after the last run ended, until every task run was final on the server
        "workers": {w.name: {"runs": after[w.name] - before[w.name],
                             "peak_rss_mib": round(sampler.peak_self[w.name] / 1024, 1),
                             "peak_rss_with_flow_runs_mib": round(sampler.peak_total[w.name] / 1024, 1),
                             "peak_flow_run_processes": sampler.peak_children[w.name]} for w in workers},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--shards", type=int, default=3, help="integration-health runs per measurement (shard k/n)")
    parser.add_argument("--workers", type=int, default=3, help="workers of the multi-worker pool")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-cold", dest="cold", action="store_false",
                        help="skip the fresh-names measurement (every target artifact written)")
    parser.add_argument("--redis-db", type=int, default=14, help="the breaker store's Redis database")
    parser.add_argument("--messaging", choices=("redis", "memory"), default="redis",
                        help="the server's event messaging: Redis streams (prefect-redis, database --redis-db minus 1) "
                             "or Prefect's in-memory default (drops events past 10,000 queued per consumer)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from cxhealth.lab.fake_platform import FakePlatform

    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    result: dict[str, Any] = {"targets": args.targets, "hosts": args.hosts, "shards": args.shards,
                              "messaging": args.messaging,
                              "rounds": args.rounds, "cores": os.cpu_count(), "load_before": _load(), "samples": []}
    with tempfile.TemporaryDirectory(prefix="cxhealth-bench-fleet-") as tmp, \
            FakePlatform(partner_hosts=args.hosts) as fake:
        tmpd = Path(tmp)
        history = "sqlite:///" + str(tmpd / "history.sqlite3")
        steady = tmpd / "steady.toml"
        write_targets(steady, fake, args.targets, args.hosts, "fleet", redis_url, history)
        secret = {"LAB_PARTNER_SECRET": fake.credentials.partner_client_secret}
        env = {**os.environ, **fake.env(), **secret}
        options = fleet.FleetOptions(state_dir=tmpd / "fleet", workers=args.workers, db_name="cxhealth_fleet_bench",
                                     fresh=True, scheduler=False, ui=False, worker_poll_s=1,
                                     worker_env={**fake.env(), **secret},
                                     messaging=f"redis://127.0.0.1:6379/{args.redis_db - 1}"
                                     if args.messaging == "redis" else None)
        if options.messaging:
            _flush(options.messaging)
        try:
            t = time.monotonic()
            state = fleet.up(options)
            result["fleet_up_s"] = round(time.monotonic() - t, 1)
            SERVER_LOG[:] = [Path(p.log) for p in state.processes if p.role == "server"]
            fleet.run_prefect(state, "work-pool", "create", SOLO_POOL, "--type", "process")
            solo = fleet.start_worker(state, "cxhealth-bench-solo-1", SOLO_POOL, {**fake.env(), **secret}, poll_s=1)
            with fleet.client(state.api_url, timeout=60) as api:
                fleet.wait_for(lambda: fleet.online_workers(api, SOLO_POOL), 120, 0.2, "the solo worker online")
                base = api.read_deployment_by_name("integration-health/every-5-minutes")
                deps = {"3w": fleet.twin_deployment(api, base, "bench-fleet", work_pool_name=state.pool,
                                                    work_queue_name="default", concurrency_limit=None),
                        "1w": fleet.twin_deployment(api, base, "bench-solo", work_pool_name=SOLO_POOL,
                                                    work_queue_name="default", concurrency_limit=None)}
                pools = {"3w": [p for p in state.workers if p.name != solo.name], "1w": [solo]}
                server_pid = next((p.pid for p in state.processes if p.role == "server"), None)
                meter = CpuMeter(server_pid, [*pools["3w"], solo], options.db_name)
                # warm-up: the steady targets get their first artifacts (and the workers their first runs)
                result["warmup"] = measure_fleet(api, deps["3w"], args.shards, steady, args.targets, pools["3w"],
                                                 redis_url, meter)
                for r in range(args.rounds):
                    sample: dict[str, Any] = {"round": r + 1, "load_at_start": _load()}
                    sample["inproc"] = measure_inproc(steady, env, args.targets, redis_url, meter)
                    for key in ("1w", "3w"):
                        sample[f"{key}_steady"] = measure_fleet(api, deps[key], args.shards, steady, args.targets,
                                                                pools[key], redis_url, meter)
                        if args.cold:
                            cold = tmpd / f"cold-{key}-{r}.toml"
                            write_targets(cold, fake, args.targets, args.hosts, f"cold{r}{key}", redis_url, history)
                            sample[f"{key}_cold"] = measure_fleet(api, deps[key], args.shards, cold, args.targets,
                                                                  pools[key], redis_url, meter)
                    sample["load_at_end"] = _load()
                    result["samples"].append(sample)
                    print(f"round {r + 1}: " + ", ".join(f"{k} {v['targets_per_s']}/s" for k, v in sample.items()
                                                       if isinstance(v, dict)) + f"; load {sample['load_at_end']}",
                          file=sys.stderr, flush=True)
        finally:
            report = fleet.down(tmpd / "fleet", drop_db=True)
            result["left_running"] = report.left
    result["load_after"] = _load()
    kinds = [k for k in ("inproc", "1w_steady", "3w_steady", "1w_cold", "3w_cold") if k in result["samples"][0]]
    med = {k: statistics.median(s[k]["targets_per_s"] for s in result["samples"]) for k in kinds}
    result["median_targets_per_s"] = med
    result["ratio_to_inproc"] = {k: round(med[k] / med["inproc"], 3) for k in kinds if k != "inproc"}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.targets} lab targets on {args.hosts} hosts; fleet runs: {args.shards} shards; "
          f"{args.rounds} rounds; {os.cpu_count()} cores; fleet up in {result['fleet_up_s']} s")
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    print(f"{'':<11} {'median t/s':>10} {'ratio':>6}  per round (t/s)   healthy")
    for k in kinds:
        per = [s[k]["targets_per_s"] for s in result["samples"]]
        ok = [s[k].get("healthy", s[k].get("healthy_in_completed_runs")) for s in result["samples"]]
        ratio = "" if k == "inproc" else f"{result['ratio_to_inproc'][k]:.2f}"
        print(f"{k:<11} {med[k]:>10.1f} {ratio:>6}  {per!s:<17} {ok}")
    last = result["samples"][-1]
    print(f"  inproc: CPU s {last['inproc']['cpu_s']}")
    for k in kinds[1:]:
        r = last[k]
        print(f"  {k}: server objects {r['server_objects']}; runs started "
              f"{r['first_run_started_s']}–{r['last_run_started_s']} s after creation; CPU s {r['cpu_s']}; "
              f"events dropped by the server {r['server_dropped_events']}")
        for name, w in r["workers"].items():
            print(f"    {name:<24} runs {w['runs']:>2}  worker RSS {w['peak_rss_mib']:>6} MiB  with flow runs "
                  f"{w['peak_rss_with_flow_runs_mib']:>7} MiB (peak {w['peak_flow_run_processes']} flow-run processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
