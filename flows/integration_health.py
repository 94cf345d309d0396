"""The integration-health flow, and the gate a WFM sync calls before it starts.

Parameters carry target *names* and a file path only: Prefect stores flow
parameters in plaintext (prefect-facts.md). Secrets are resolved inside the
tasks, by name, from the environment (or from blocks).

Async on purpose: a sync flow call has a ~1 s heartbeat floor in Prefect 3.9.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.states import Completed, Failed

from cxhealth.flows.report import report_markdown, target_table
from cxhealth.tasks.alerting import send_alerts
from cxhealth.tasks.endpoints import endpoint_checks
from cxhealth.tasks.handshake import handshake_diagnostics
from cxhealth.tasks.health import TargetRun, check_target
from cxhealth.tasks.oauth import oauth_smoke_test

DEFAULT_TARGETS_FILE = "targets.toml"


class IntegrationUnhealthy(RuntimeError):
    """Raised by :func:`health_gate` when a target is unhealthy: the sync must not start.

    Attributes:
        failures: ``[{name, stage, cause, summary}]`` for each unhealthy target.
    """

    def __init__(self, failures: Sequence[Mapping[str, Any]]):
        self.failures = [dict(f) for f in failures]
        super().__init__(failure_message(self.failures))


def failure_message(failures: Sequence[Mapping[str, Any]]) -> str:
    parts = [f"{f['name']}: {f.get('stage')} failed ({f.get('cause')})" for f in failures]
    return "unhealthy integration: " + "; ".join(parts)


async def load_config(targets_file: str | None, names: Sequence[str] | None) -> tuple[Any, list[Any], Mapping[str, str] | None]:
    """The configuration from a targets.toml, or from Prefect blocks when no file is given.

    Returns (config, selected targets, env mapping for secrets or None for os.environ).
    """
    path = targets_file or os.environ.get("CXHEALTH_TARGETS")
    if path is None and Path(DEFAULT_TARGETS_FILE).exists():
        path = DEFAULT_TARGETS_FILE
    env: Mapping[str, str] | None = None
    if path is not None:
        from cxhealth.tasks.targets import load_targets

        config = load_targets(path)
    else:
        from cxhealth.blocks import aload_config_from_blocks  # registered CxTarget blocks

        config, env = await aload_config_from_blocks(list(names) if names else None)
        return config, list(config.targets), env  # already only the named blocks' targets
    selected = [config.target(n) for n in names] if names else list(config.targets)
    return config, selected, env


async def _check_one(target: Any, breaker: Any, env: Mapping[str, str] | None) -> TargetRun:
    run = TargetRun(name=target.name, platform=target.platform)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        if await handshake_diagnostics(target, breaker, run):
            token = await oauth_smoke_test(target, run, env)
            if token is not None:
                await endpoint_checks(target, breaker, run, token)
    finally:
        run.ms = round((loop.time() - start) * 1000, 1)
    return run


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "target"


def _emit_events(runs: Sequence[Mapping[str, Any]]) -> None:
    for t in runs:
        resource = {"prefect.resource.id": f"cxhealth.target.{t['name']}", "prefect.resource.name": t["name"]}
        emit_event(event=f"cxhealth.target.{'healthy' if t['healthy'] else 'unhealthy'}", resource=resource,
                   payload={"stage": t.get("stage"), "cause": t.get("cause"), "summary": t.get("summary"),
                            "breaker": (t.get("breaker") or {}).get("state")})
        for tr in t.get("transitions") or []:
            kind = "opened" if tr["kind"] in ("opened", "reopened") else "closed"
            emit_event(event=f"cxhealth.breaker.{kind}",
                       resource={"prefect.resource.id": f"cxhealth.breaker.{tr['host']}",
                                 "prefect.resource.name": tr["host"], "cxhealth.target": t["name"]},
                       related=[{"prefect.resource.id": f"cxhealth.target.{t['name']}",
                                 "prefect.resource.role": "target"}],
                       payload={"transition": tr["kind"], "at": tr.get("at"), "reopen_at": tr.get("reopen_at"),
                                "trips": tr.get("trips"), "cause": (tr.get("summary") or {}).get("cause")})


async def health_report(targets: list[str] | None, targets_file: str | None, alerts: bool,
                        detailed: bool = True) -> dict[str, Any]:
    """Run every check inside the current flow run and publish the report
    (artifacts, events, Slack). Shared by both flows, so the gate costs one flow run.

    ``detailed``: three task runs per target (handshake, token, endpoints) and a
    table artifact per target, as ops read them in the UI; False is the gate's
    lean path: the same checks run in the flow run itself (no task runs: each
    costs Prefect API round trips, bench/bench_gate.py), one log line per
    target, and the report artifact only when the gate fails. Events are
    emitted either way.
    """
    logger = get_run_logger()
    from cxhealth.tasks.runtime import alert_settings, breaker_for

    config, selected, env = await load_config(targets_file, targets)
    settings = alert_settings(config, env) if alerts else None
    breaker = breaker_for(config)
    try:
        if detailed:
            runs = await asyncio.gather(*(_check_one(t, breaker, env) for t in selected))
        else:
            runs = await asyncio.gather(*(check_target(t, breaker, env) for t in selected))
    finally:
        breaker.close()
    docs = [r.to_dict() for r in runs]
    try:
        from prefect.runtime import flow_run

        url = flow_run.ui_url
        for d in docs:
            d["flow_run_url"] = url
    except Exception:  # noqa: BLE001 - a link is a nicety
        pass
    report: dict[str, Any] = {"healthy": all(d["healthy"] for d in docs), "targets": docs}
    if settings is not None:
        report["alerts"] = await asyncio.to_thread(send_alerts, config, settings, docs)
    for d in docs:
        logger.info("%s: %s%s", d["name"], "healthy" if d["healthy"] else f"{d['stage']} failed ({d['cause']})",
                    f" — {d['summary']}" if not d["healthy"] else "")
    publish_report = detailed or not report["healthy"]  # a healthy gate's report is read by no one
    await asyncio.gather(
        *((create_markdown_artifact(key="cxhealth-report", markdown=report_markdown(report),
                                    description="cxhealth integration health report"),) if publish_report else ()),
        *(create_table_artifact(key=f"cxhealth-target-{_slug(d['name'])}", table=target_table(d),
                                description=f"{d['name']}: {'healthy' if d['healthy'] else d['cause']}")
          for d in (docs if detailed else ())))
    _emit_events(docs)
    return report


def _failures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": d["name"], "stage": d["stage"], "cause": d["cause"], "summary": d["summary"]}
            for d in report["targets"] if not d["healthy"]]


@flow(name="integration-health", description="Handshake diagnostics -> OAuth token smoke test -> endpoint checks, "
      "under the shared circuit breaker, with Slack alerts.")
async def integration_health(targets: list[str] | None = None, targets_file: str | None = None,
                             alerts: bool = True) -> Any:
    """Check every target concurrently; Completed when all are healthy, Failed otherwise.

    Args:
        targets: target names to check (default: all).
        targets_file: a targets.toml path (default: $CXHEALTH_TARGETS, ./targets.toml, else the CxTarget blocks).
        alerts: post to Slack (False: send and queue nothing).
    """
    report = await health_report(targets, targets_file, alerts)
    if report["healthy"]:
        return Completed(message=f"{len(report['targets'])} target(s) healthy", data=report)
    return Failed(message=failure_message(_failures(report)), data=report)


@flow(name="health-gate", description="Returns when the integrations are healthy; raises IntegrationUnhealthy otherwise.")
async def health_gate(targets: list[str] | None = None, targets_file: str | None = None, alerts: bool = True) -> dict:
    """Call at the top of a sync flow: the sync never starts against an unhealthy integration.

    The checks, events, alerts and report artifact are the integration-health
    flow's, run inside this one flow run without task runs: the gate sits in
    front of every sync, so its orchestration cost matters (bench/bench_gate.py).

    Raises:
        IntegrationUnhealthy: naming each unhealthy target, its stage and cause.
    """
    report = await health_report(targets, targets_file, alerts, detailed=False)
    if not report["healthy"]:
        raise IntegrationUnhealthy(_failures(report))
    return {"healthy": True, "targets": [t["name"] for t in report["targets"]]}


def run_flow_sync(targets_file: str, names: Sequence[str] | None, alerts: bool = True) -> dict[str, Any]:
    """Run integration-health as a flow run from the CLI (`cxhealth run --flow`) and return its report."""
    async def go() -> dict[str, Any]:
        state = await integration_health(targets=list(names) if names else None,
                                          targets_file=str(Path(targets_file).resolve()), alerts=alerts,
                                          return_state=True)
        report = state.result(raise_on_failure=False)
        if asyncio.iscoroutine(report):
            report = await report
        if not isinstance(report, dict):
            raise RuntimeError(f"the flow run ended {state.type.value}: {state.message}")
        report["flow_run_id"] = str(state.state_details.flow_run_id)
        return report

    return asyncio.run(go())
