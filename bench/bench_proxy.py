"""Benchmark: the healthy `cxhealth diagnose --from` run through squid's tunnel vs the floor
client going through the same squid (issue 12).

N healthy lab endpoints (TLSLab.healthy_fleet) behind one real squid (lab/squid.py,
its hosts file resolving the fleet's names); both tools run as whole processes,
rounds interleaved, medians compared:

* floor-proxy: bench/floor_client.py with the proxy — a bare CONNECT, then the same
  verified handshake, N concurrently;
* cxhealth-proxy: `cxhealth diagnose --from FILE --proxy URL --json --concurrency N`;
* floor-direct / cxhealth-direct (without the proxy) for context.

    .venv/bin/python bench/bench_proxy.py [--n 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_diagnose import hyperfine, interleaved  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from cxhealth.lab.squid import SquidLab, squid_binary
    from cxhealth.lab.tls_lab import TLSLab

    if squid_binary() is None:
        raise SystemExit("squid with ssl_bump (Debian's squid-openssl) is not installed")
    with TLSLab(scenarios=False) as lab, tempfile.TemporaryDirectory() as tmp:
        fleet = lab.healthy_fleet(args.n)
        with SquidLab(hosts={s.host: "127.0.0.1" for s in fleet}) as squid:
            targets = Path(tmp) / "targets.txt"
            targets.write_text("".join(s.target + "\n" for s in fleet))
            resolve = [a for s in fleet for a in ("--resolve", f"{s.host}:{s.port}:127.0.0.1")]
            bindir = Path(sys.executable).parent
            floor = [sys.executable, str(ROOT / "bench" / "floor_client.py"), str(targets), str(lab.client_store)]
            diagnose = [str(bindir / "cxhealth"), "diagnose", "--from", str(targets), "--json",
                        "--ca-bundle", str(lab.client_store), "--concurrency", str(args.n), "--no-proxy"]
            proxy = squid.url("plain")
            commands = {
                "floor-proxy": [*floor, proxy.removeprefix("http://")],
                "cxhealth-proxy": [*diagnose[:-1], "--proxy", proxy],
                "floor-direct": floor,
                "cxhealth-direct": [*diagnose, *resolve],
            }
            times = hyperfine(commands, args.rounds) or interleaved(commands, args.rounds)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.n} healthy endpoints, {args.rounds} rounds, whole process, median seconds "
          f"({'hyperfine' if shutil.which('hyperfine') else 'interleaved perf_counter'})")
    for name, median in medians.items():
        print(f"  {name:15} {median:7.3f} s   (min {min(times[name]):.3f} max {max(times[name]):.3f})")
    ratio = medians["cxhealth-proxy"] / medians["floor-proxy"]
    print(f"  through the tunnel: cxhealth / floor = {ratio:.2f}x "
          f"(direct: {medians['cxhealth-direct'] / medians['floor-direct']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
