"""``cxhealth run``: the integration checks of a targets.toml, with or without Prefect.

Without ``--flow`` nothing imports Prefect: the checks run in-process. With
``--flow`` the same checks run as the ``integration-health`` flow, recorded by
whichever Prefect API is configured (the embedded SQLite one by default).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Sequence

from .errors import UsageError


def load_run_config(path: str, only: Sequence[str] = (), shard: str | None = None) -> tuple[Any, list[Any]]:
    """Load and validate the file and every secret it names: bad input is exit 2."""
    from cxhealth.tasks import shards
    from cxhealth.tasks.targets import TargetConfigError, load_targets

    try:
        part = shards.parse_shard(shard)
    except shards.ShardSpecError as exc:
        raise UsageError(str(exc)) from None
    try:
        config = load_targets(path)
        selected = shards.select([config.target(n) for n in only] if only else list(config.targets), part)
        for target in selected:  # a missing secret is a configuration error, found before any network
            target.client_secret()
            if target.access_key_secret_env:
                target.access_key_secret()
            target.check_proxy()  # the proxy URL, the environment's proxy, the password variable
    except TargetConfigError as exc:
        raise UsageError(str(exc)) from None
    if not selected and part is None:
        raise UsageError(f"{path}: no [[target]] to check")
    if not selected:  # an empty shard of a small fleet checks nothing, as its flow run does: said, not an error
        import sys

        print(f"shard {part[0]}/{part[1]}: none of the file's {len(config.targets)} target(s) is in this shard; "
              "nothing checked", file=sys.stderr)
    return config, selected


def _usage(fn: Any, *args: Any) -> Any:
    from cxhealth.tasks.runtime import ConfigError

    try:
        return fn(*args)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


async def check_all(config: Any, targets: Sequence[Any]) -> list[dict[str, Any]]:
    from cxhealth.tasks.health import check_targets

    from cxhealth.tasks.runtime import breaker_for

    breaker = _usage(breaker_for, config)
    try:
        runs = await check_targets(targets, breaker)
    finally:
        breaker.close()
    return [r.to_dict() for r in runs]


def run_run(args: Any) -> int:
    shard = getattr(args, "shard", None)
    config, targets = load_run_config(args.targets, args.only, shard)
    from cxhealth.tasks.alerts.run import alert_settings, deliver_alerts

    settings = None if args.no_alerts else _usage(alert_settings, config)
    if args.flow:
        import os

        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # busy machines
        os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "CRITICAL")  # no ephemeral-server shutdown noise
        from cxhealth.flows.integration_health import run_flow_sync

        report = run_flow_sync(args.targets, [t.name for t in targets] if args.only else None,
                               alerts=not args.no_alerts, shard=shard)
    else:
        if sys.stderr.isatty() and not args.json:
            print(f"checking {len(targets)} target(s): {', '.join(t.name for t in targets)} ...", file=sys.stderr)
        runs = asyncio.run(check_all(config, targets))
        from cxhealth.tasks.history import record_run

        history_warnings = record_run(config, runs)  # contract §4: drift, persistence; never fails the run
        report = {"healthy": all(r["healthy"] for r in runs), "targets": runs}
        if history_warnings:
            report["warnings"] = history_warnings
        alerts = deliver_alerts(config, settings, runs)
        if alerts is not None:
            report["alerts"] = alerts
    if args.json:
        print(json.dumps(report, default=str))
    else:
        from cxhealth.flows.report import render_table

        print(render_table(report))
    return 0 if report["healthy"] else 1


