"""``cxhealth lab``: start the TLS lab and print a command per scenario.

``cxhealth lab --full [--dir DIR]`` keeps the whole lab up instead (TLS scenarios,
fake platform, fake Slack) and writes a targets file and an env file with its
secrets, to deploy against and run from the Prefect UI (:mod:`cxhealth.lab.full`).

Run it in one terminal, paste the printed ``cxhealth diagnose ...`` lines into
another. It runs until Ctrl-C or SIGTERM (or ``--for SECONDS``), then stops
every server and removes its temporary certificates.

Also runnable as ``python -m cxhealth.lab.cli``. No Prefect import on this path.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from types import FrameType
from typing import Sequence, TextIO

from .tls_lab import Scenario, TLSLab


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxhealth lab",
        description="Start local TLS servers reproducing every cxhealth failure cause and warning.",
    )
    parser.add_argument("--for", dest="duration", type=float, metavar="SECONDS", default=None,
                        help="exit by itself after SECONDS (default: run until Ctrl-C / SIGTERM)")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="print only these scenarios (repeatable)")
    parser.add_argument("--program", default="cxhealth", help="command name to print (default: cxhealth)")
    parser.add_argument("--full", action="store_true",
                        help="also the fake Genesys/NICE platform and the fake Slack; write a targets.toml and "
                             "an env file with the lab's secrets into --dir, to deploy and run against")
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help="with --full: where the files go (default: ./.cxhealth-lab)")
    return parser


def format_table(scenarios: Sequence[Scenario], program: str = "cxhealth") -> str:
    """A compact table: name, expected cause (+warnings), description, then the command."""
    width = max((len(s.name) for s in scenarios), default=0)
    lines = []
    for s in scenarios:
        expect = s.cause + "".join(f" +{w}" for w in s.warnings)
        lines.append(f"{s.name:<{width}}  {expect}  -- {s.description}")
        lines.append(f"{'':<{width}}  $ {shlex.join(s.command(program))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    args = _parser().parse_args(argv)
    if args.duration is not None and args.duration < 0:
        print("cxhealth lab: --for needs a number of seconds >= 0", file=sys.stderr)
        return 2

    stop = threading.Event()
    previous: dict[int, object] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    is_main_thread = threading.current_thread() is threading.main_thread()
    if is_main_thread:  # signal handlers can only be set there (tests may call main() elsewhere)
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        if args.full:
            from .full import run_full

            return run_full(args.dir, args.duration, stop, out)
        with TLSLab() as lab:
            chosen = [s for s in lab.scenarios.values() if not args.only or s.name in args.only]
            unknown = sorted(set(args.only) - set(lab.scenarios))
            if unknown:
                print(f"cxhealth lab: unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
                return 2
            print(f"cxhealth lab: {len(lab.scenarios)} TLS scenarios on 127.0.0.1, files in {lab.directory}", file=out)
            print(format_table(chosen, args.program), file=out)
            until = f"for {args.duration:g} s" if args.duration is not None else "until Ctrl-C"
            print(f"cxhealth lab: running {until}", file=out, flush=True)
            stop.wait(args.duration)
        print("cxhealth lab: stopped", file=out, flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
