"""``cxhealth breaker``: what an operator needs during an incident.

    cxhealth breaker status  --targets targets.toml [HOST ...]   # every target host when none given
    cxhealth breaker open    --targets targets.toml HOST --reason "vendor incident INC-123"   # kill switch
    cxhealth breaker disable --targets targets.toml HOST [--reason ...]   # count nothing, admit everyone
    cxhealth breaker clear   --targets targets.toml HOST                  # remove an override: back to the state machine
    cxhealth breaker reset   --targets targets.toml HOST                  # close a tripped breaker now (the cause is fixed)

The store is the targets file's ``[breaker] store``, so the change is seen by
every process and worker that shares it. Prefect-free.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import UsageError


def _status_dict(s: Any) -> dict[str, Any]:
    return {"host": s.host, "state": str(s.state), "underlying_state": str(s.underlying_state),
            "failures_in_window": s.failures_in_window, "trips": s.trips,
            "reopen_at": s.reopen_at.isoformat() if s.reopen_at else None,
            "override": str(s.override) if s.override else None, "override_reason": s.override_reason,
            "last_failure": s.last_failure, "fallback": s.fallback, "store": s.store}


def run_breaker(args: Any) -> int:
    from cxhealth.tasks.runtime import ConfigError, breaker_for
    from cxhealth.tasks.targets import TargetConfigError, load_targets

    try:
        config = load_targets(args.targets)
        breaker = breaker_for(config)
    except (TargetConfigError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    hosts = list(args.hosts)
    if args.action != "status" and len(hosts) != 1:
        raise UsageError(f"breaker {args.action} takes exactly one HOST")
    if not hosts:
        hosts = list(dict.fromkeys(e.host for t in config.targets for e in t.endpoints_to_diagnose()))
    try:
        if args.action == "open":
            if not args.reason:
                raise UsageError("breaker open needs --reason (it is shown to every rejected caller)")
            statuses = [breaker.force_open(hosts[0], args.reason)]
        elif args.action == "disable":
            statuses = [breaker.disable(hosts[0], args.reason)]
        elif args.action == "clear":
            before = breaker.status(hosts[0])
            statuses = [breaker.clear_override(hosts[0])]
            after = statuses[0]
            if before.override is None and str(after.state) in ("open", "half_open") and not args.json:
                # clear only removes an operator's override; a breaker the failures tripped stays open
                print(f"{after.host}: no override to clear; the breaker was tripped by handshake failures and "
                      f"lets one probe through at {after.reopen_at.isoformat() if after.reopen_at else 'once due'}. "
                      f"Once the cause is fixed, 'cxhealth breaker reset {after.host} --targets {args.targets}' "
                      "closes it now.")
        elif args.action == "reset":
            statuses = [breaker.reset(hosts[0])]
        else:
            statuses = [breaker.status(h) for h in hosts]
    finally:
        breaker.close()
    docs = [_status_dict(s) for s in statuses]
    if args.json:
        print(json.dumps(docs))
        return 0
    for d in docs:
        extra = f" (override {d['override']}: {d['override_reason']})" if d["override"] else ""
        when = f", reopens {d['reopen_at']}" if d["reopen_at"] else ""
        print(f"{d['host']}: {d['state']}{extra}, {d['failures_in_window']} failure(s) in window, "
              f"{d['trips']} trip(s){when}" + (f" [fallback: {d['fallback']}]" if d["fallback"] else ""))
    return 0
