"""The ``cxhealth`` command line.

Sub-commands import what they need lazily: ``cxhealth diagnose`` never imports
Prefect (its import alone costs ~0.6 s, prefect-facts.md).

Exit status everywhere: 0 healthy, 1 a failure was diagnosed, 2 the command
itself could not run (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


from .errors import UsageError, _Parser


def _add_proxy_options(p: argparse.ArgumentParser, *, no_proxy: bool = True) -> None:
    p.add_argument("--proxy", metavar="URL", help="reach targets through this HTTP proxy: http://[user@]host:port "
                   "(a CONNECT tunnel, as curl -x); default: HTTPS_PROXY/ALL_PROXY of the environment")
    p.add_argument("--proxy-password-env", metavar="VAR",
                   help="the environment variable holding the proxy user's password (never on the command line)")
    if no_proxy:
        p.add_argument("--no-proxy", action="store_true",
                       help="ignore HTTPS_PROXY/https_proxy/ALL_PROXY/NO_PROXY in the environment")


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``only="diagnose"`` just that command (what ``cxhealth diagnose``
    parses: the other commands' parsers cost it ~10 ms of start-up, bench/bench_diagnose.py)."""
    parser = _Parser(prog="cxhealth", description="Integration health for cloud contact-center APIs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser("diagnose", help="diagnose the TLS handshake of one or more endpoints",
                       description="Diagnose TLS endpoints: name the root cause, show the evidence, give the fix.")
    d.add_argument("targets", nargs="*", metavar="TARGET", help="https://HOST[:PORT][/path] or HOST[:PORT]")
    d.add_argument("--from", dest="from_file", metavar="FILE", help="read targets from FILE, one per line ('-' = stdin)")
    d.add_argument("--concurrency", type=int, default=100, metavar="N")
    d.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR")
    sni = d.add_mutually_exclusive_group()
    sni.add_argument("--sni", metavar="NAME")
    sni.add_argument("--no-sni", action="store_true")
    d.add_argument("--ca-bundle", metavar="PEM")
    d.add_argument("--reference-ca-bundle", metavar="PEM")
    d.add_argument("--expect-issuer", action="append", default=[], metavar="TEXT")
    d.add_argument("--pin", action="append", default=[], metavar="sha256/BASE64")
    d.add_argument("--tls-min", default="1.2")
    d.add_argument("--tls-max", default="1.3")
    d.add_argument("--ciphers", metavar="STRING")
    d.add_argument("--client-cert", metavar="PEM")
    d.add_argument("--client-key", metavar="PEM")
    d.add_argument("--client-key-password-env", metavar="VAR",
                   help="the environment variable holding the passphrase of an encrypted --client-key (never prompted)")
    d.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")
    d.add_argument("--no-aia", action="store_true")
    _add_proxy_options(d)
    d.add_argument("--json", action="store_true")
    d.add_argument("--record", action="store_true",
                   help="record each connection in the history store (contract §4; the default [history] store)")
    if only == "diagnose":
        return parser

    pa = sub.add_parser("proxy-audit", help="which of a platform's hosts the egress proxy tunnels, intercepts or refuses",
                        description="Diagnose every host of a platform's region through the proxy in use and "
                                    "print the bypass list that would cover the intercepted ones.")
    pa.add_argument("--platform", required=True, choices=("genesys", "nice"))
    pa.add_argument("--region", required=True, metavar="REGION",
                    help="genesys: us_east_1, eu_west_1, ...; nice: commercial, fedramp or an API area (na1, ...)")
    _add_proxy_options(pa, no_proxy=False)
    pa.add_argument("--ca-bundle", metavar="PEM")
    pa.add_argument("--reference-ca-bundle", metavar="PEM",
                    help="the public roots a platform host's chain must reach (default: certifi's); a chain "
                         "trusted only through --ca-bundle is an inspecting proxy's")
    pa.add_argument("--connect-to", action="append", default=[], metavar="HOST1:PORT1:HOST2:PORT2",
                    help="as curl: tunnel to HOST2:PORT2 for HOST1:PORT1 (SNI and verification stay on HOST1)")
    pa.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")
    pa.add_argument("--json", action="store_true")

    r = sub.add_parser("run", help="run the integration health checks of a targets.toml")
    r.add_argument("--targets", required=True, metavar="FILE")
    r.add_argument("--json", action="store_true")
    r.add_argument("--no-alerts", action="store_true")
    r.add_argument("--flow", action="store_true", help="run as a Prefect flow run (recorded by the configured API)")
    r.add_argument("--only", action="append", default=[], metavar="NAME", help="check only this target (repeatable)")
    r.add_argument("--shard", metavar="K/N", help="check only shard K of N: the targets whose sha256(name) mod N "
                                               "is K-1 (deployments/FLEET.md, Sharding)")

    demo = sub.add_parser("demo", help="start the lab and run the integration-health flow against it")
    demo.add_argument("--dir", metavar="DIR", help="state directory (default: ./.cxhealth-demo)")
    demo.add_argument("--keep", action="store_true", help="keep the state directory's previous content")

    b = sub.add_parser("breaker", help="show or override the shared circuit breaker of a host")
    b.add_argument("action", choices=("status", "open", "disable", "clear", "reset"))
    b.add_argument("hosts", nargs="*", metavar="HOST")
    b.add_argument("--targets", required=True, metavar="FILE", help="the targets.toml whose [breaker] store to use")
    b.add_argument("--reason", help="why (shown to every caller the override affects)")
    b.add_argument("--json", action="store_true")

    al = sub.add_parser("alerts", help="show the Slack alert outbox: queued alerts and dead letters")
    al.add_argument("action", choices=("status", "retry", "drop"))
    al.add_argument("ids", nargs="*", metavar="ENTRY_ID")
    al.add_argument("--targets", required=True, metavar="FILE", help="the targets.toml whose [breaker] store to use")
    al.add_argument("--json", action="store_true")

    h = sub.add_parser("history", help="what the checks remember: observations, drift, upcoming expiries")
    h.add_argument("host", nargs="?", metavar="HOST", help="only this host name (any port)")
    h.add_argument("--targets", metavar="FILE", help="the targets.toml whose [history] store (and targets) to use")
    h.add_argument("--since", default="7d", metavar="7d|12h")
    h.add_argument("--json", action="store_true")

    m = sub.add_parser("metrics", help="the latest observations in Prometheus' text format")
    m.add_argument("--targets", metavar="FILE", help="the targets.toml whose [history] store (and targets) to use")
    m.add_argument("--listen", metavar="ADDRESS:PORT", help="serve /metrics (e.g. 127.0.0.1:9466) instead of printing once")

    lab = sub.add_parser("lab", help="start the TLS failure lab for manual `cxhealth diagnose` runs",
                         add_help=False)
    lab.add_argument("lab_args", nargs=argparse.REMAINDER)
    return parser


def _diagnose_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["diagnose"]


def take_resolves(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """``cxhealth diagnose`` argv without its ``--resolve VALUE`` pairs, and the values, in order.

    argparse is quadratic in the number of options on a command line: 2,000 ``--resolve``
    pairs (one per target of a fleet) cost it ~0.3 s of CPU. The pairs are taken out
    first, only when that cannot change what argparse decides: every token is an exact
    option of ``diagnose``, the value of one, or a positional; anything else (an
    abbreviation, a short or unknown option, a value starting with '-') returns None
    and argparse sees the command line whole."""
    if not argv or argv[0] != "diagnose":
        return None
    values, flags = set(), set()
    for action in _diagnose_parser(parser)._actions:
        if isinstance(action, (argparse._StoreAction, argparse._AppendAction)) and action.nargs is None:
            values.update(action.option_strings)
        else:
            flags.update(action.option_strings)
    rest, taken, i = [argv[0]], [], 1
    # argparse reads TARGETs from one run of positionals: a pair taken from between two
    # positionals would join two runs (an error before), so then argparse sees it all.
    after_positional = just_taken = False
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        if token == "--resolve" or token.startswith("--resolve="):
            if token == "--resolve":
                if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                    return None
                taken.append(argv[i + 1])
                i += 1
            else:
                taken.append(token[len("--resolve="):])
            just_taken = True
            i += 1
            continue
        if token in values:
            rest.extend(argv[i:i + 2])  # the option and its value, whatever the value is
            i += 2
        elif token in flags or (token.startswith("--") and token.partition("=")[0] in values):
            rest.append(token)
            i += 1
        elif token.startswith("-") and token != "-":
            return None
        else:
            if just_taken and after_positional:
                return None
            rest.append(token)
            i += 1
            after_positional, just_taken = True, False
            continue
        after_positional = just_taken = False
    return rest, taken


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(only="diagnose" if args_list[:1] == ["diagnose"] else None)
    try:
        if args_list and args_list[0] == "lab":
            from cxhealth.lab.cli import main as lab_main

            return lab_main(args_list[1:])
        split = take_resolves(parser, args_list)
        if split is not None and split[1]:
            args = parser.parse_args(split[0])
            args.resolve = split[1] + args.resolve
        else:
            args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "diagnose":
            from .diagnose import run_diagnose

            return run_diagnose(args)
        if args.command == "proxy-audit":
            from .proxy_audit import run_proxy_audit

            return run_proxy_audit(args)
        if args.command == "run":
            from .run import run_run

            return run_run(args)
        if args.command == "breaker":
            from .breaker import run_breaker

            return run_breaker(args)
        if args.command == "alerts":
            from .alerts import run_alerts

            return run_alerts(args)
        if args.command == "history":
            from .history import run_history

            return run_history(args)
        if args.command == "metrics":
            from .metrics import run_metrics

            return run_metrics(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        raise UsageError(f"unknown command {args.command}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cxhealth ... | head`
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug must still be one line, not a traceback
        print(f"error: cxhealth hit an internal error ({type(exc).__name__}: {str(exc)[:200]}); "
              "rerun with CXHEALTH_DEBUG=1 for the traceback and report it", file=sys.stderr)
        if os.environ.get("CXHEALTH_DEBUG"):
            raise
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
