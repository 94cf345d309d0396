"""Benchmark: `cxhealth diagnose --from` over N healthy lab endpoints, in one run
against two references (issue 2):

* the floor — bench/floor_client.py: a bare asyncio client doing the same N
  verified handshakes concurrently, capturing protocol, cipher and chain;
* sslyze's certificate_info scan of the same endpoints (a public tool; it pins
  cryptography<47, so it lives in its own venv, bench/.venv-sslyze, created on
  first use with `--sslyze`).

Each tool runs as a whole process (what a user pays), rounds interleaved so
machine noise hits all alike; medians and ratios are printed, with each
tool's peak RSS (the largest ``ru_maxrss`` of its runs, from ``wait4``) and the
load average before and after. Timing uses hyperfine when it is installed
(apt-get install hyperfine; RSS then comes from one extra run of each), else
the same interleaved loop with time.perf_counter.

    .venv/bin/python bench/bench_diagnose.py [--n 200] [--rounds 7] [--sslyze]
    .venv/bin/python bench/bench_diagnose.py --n 2000 --rounds 5   # issue 16: <= 1.15x, <= 300 MB
    /path/to/wheel-venv/bin/python bench/bench_diagnose.py        # the wheel as users install it
                                                                   # (no editable finder at start-up)

Goals: issue 11, n=200: cxhealth <= 1.2x the floor; issue 16, n=2,000: <= 1.15x
and cxhealth's peak RSS <= 300 MB. Every endpoint is its own lab listener (one
connection each, so the default backlog is enough); the soft open-file limit is
raised to the hard one, for the lab's listeners and both clients' sockets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # an installed cxhealth (the wheel, as users have it) wins over the checkout


def ensure_sslyze() -> Path | None:
    venv = ROOT / "bench" / ".venv-sslyze"
    python = venv / "bin" / "python"
    if not python.exists():
        print("creating bench/.venv-sslyze (pip install sslyze) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "sslyze>=6,<7"])
        if proc.returncode != 0:
            return None
    return python


def hyperfine(commands: dict[str, list[str]], rounds: int) -> dict[str, list[float]] | None:
    exe = shutil.which("hyperfine")
    if exe is None:
        return None
    out = Path(tempfile.mkdtemp()) / "hf.json"
    args = [exe, "--warmup", "1", "--runs", str(rounds), "--export-json", str(out), "-N"]
    for name, cmd in commands.items():
        args += ["-n", name, " ".join(cmd)]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {r["command"]: r["times"] for r in data["results"]}


def run_once(cmd: list[str], name: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {err.decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def interleaved(commands: dict[str, list[str]], rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in commands}
    rss: dict[str, float] = {k: 0.0 for k in commands}
    for name, cmd in commands.items():  # warm-up: page cache, pyc
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(rounds):
        for name, cmd in commands.items():
            wall, peak = run_once(cmd, name)
            times[name].append(wall)
            rss[name] = max(rss[name], peak)
    return times, rss


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def serve_lab(n: int, folder: str) -> None:
    """The lab, in its own process: it writes the targets and the client store's path, says
    ready, and serves until its standard input closes."""
    from cxhealth.lab.tls_lab import TLSLab

    with TLSLab(scenarios=False) as lab:
        fleet = lab.healthy_fleet(n)
        (Path(folder) / "targets.txt").write_text("".join(s.target + "\n" for s in fleet))
        (Path(folder) / "lab.json").write_text(json.dumps({"client_store": str(lab.client_store),
                                                           "fleet": [[s.host, s.port] for s in fleet]}))
        print("ready", flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def lab_process(n: int):
    """(targets file, client store, [(host, port)]) of a lab in a child process.

    Not in this process: a child's ru_maxrss is at least its parent's RSS when it was
    spawned (Linux carries the high-water mark across exec), so a bench that holds the lab
    (~40 MB at 200, more at 2,000) would report that for every tool it measures."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, __file__, "--serve-lab", str(n), tmp],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("the lab did not start")
            info = json.loads((Path(tmp) / "lab.json").read_text())
            yield Path(tmp) / "targets.txt", info["client_store"], [tuple(x) for x in info["fleet"]]
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-lab":
        serve_lab(int(sys.argv[2]), sys.argv[3])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sslyze", action="store_true", help="include sslyze (creates its venv on first use)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="cxhealth's --timeout (the floor has none; 2,000 handshakes at once on a busy 2-core "
                             "machine can take longer than the default 5 s to be served)")
    args = parser.parse_args()
    raise_open_files_limit()
    load_before = os.getloadavg()

    # What a user runs is an installed wheel, whose bytecode pip compiled at install. A checkout under
    # PYTHONDONTWRITEBYTECODE=1 (CI, this machine) would compile every cxhealth module on every run
    # (~0.4 s of CPU): compile once here and let the measured processes read the bytecode.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import compileall

    for folder in ("cxhealth", "tasks", "cli", "lab", "flows", "blocks"):
        if (ROOT / folder).is_dir():
            compileall.compile_dir(str(ROOT / folder), quiet=1)

    with lab_process(args.n) as (targets, client_store, fleet):
        resolve = [a for host, port in fleet for a in ("--resolve", f"{host}:{port}:127.0.0.1")]
        bindir = Path(sys.executable).parent
        commands = {
            "floor": [sys.executable, str(ROOT / "bench" / "floor_client.py"), str(targets), str(client_store)],
            "cxhealth": [str(bindir / "cxhealth"), "diagnose", "--from", str(targets), "--json",
                         "--ca-bundle", str(client_store), "--concurrency", str(args.n), "--timeout", str(args.timeout), *resolve],
        }
        if args.sslyze:
            python = ensure_sslyze()
            if python is None:
                print("sslyze could not be installed: skipped", file=sys.stderr)
            else:
                hosts = [f"{host}:{port}{{127.0.0.1}}" for host, port in fleet]
                commands["sslyze"] = [str(python), "-m", "sslyze", "--certinfo", "--quiet", *hosts]
        timed = hyperfine(commands, args.rounds)
        if timed is not None:
            times, rss = timed, {name: run_once(cmd, name)[1] for name, cmd in commands.items()}
        else:
            times, rss = interleaved(commands, args.rounds)
    load_after = os.getloadavg()
    medians = {k: statistics.median(v) for k, v in times.items()}
    floor = medians["floor"]
    print(f"{args.n} healthy endpoints, {args.rounds} rounds, whole process, median seconds "
          f"({'hyperfine' if shutil.which('hyperfine') else 'interleaved perf_counter'})")
    for name, median in medians.items():
        spread = f"min {min(times[name]):.3f} max {max(times[name]):.3f}"
        print(f"  {name:9} {median:7.3f} s   {median / floor:5.2f}x floor   ({spread})   peak RSS {rss[name]:6.0f} MB")
    if "sslyze" in medians:
        print(f"  cxhealth is {medians['sslyze'] / medians['cxhealth']:.1f}x faster than sslyze")
    print(f"  load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} CPUs)")
    if args.n >= 2000:  # issue 16
        met = medians["cxhealth"] <= 1.15 * floor and rss["cxhealth"] <= 300
        print(f"  goal (issue 16): cxhealth <= 1.15x floor and peak RSS <= 300 MB -> {'met' if met else 'NOT met'}")
    else:  # issue 11
        print(f"  goal (issue 11): cxhealth <= 1.2x floor -> {'met' if medians['cxhealth'] <= 1.2 * floor else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
