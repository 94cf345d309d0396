"""The integration-health flow, and the gate a WFM sync calls before it starts.

Parameters carry target *names* and a file path only: Prefect stores flow
parameters in plaintext (prefect-facts.md). Secrets are resolved inside the
tasks, by name, from the environment (or from blocks).

What ops see in the UI, in Prefect's own terms:

* one task run per target, named after it (``check-target``), ``Completed`` when
  the target is healthy and ``Failed(name="Unhealthy")`` when not, its message
  the target's cause, host, summary and first fix;
* the flow run ``Completed`` or ``Failed(name="Unhealthy")`` with a message that
  names every unhealthy target first; its name and tags carry the targets and,
  on failure, the causes (``unhealthy:<target>``, ``cause:<cause>``);
* one log line per target (ERROR for a failure, WARNING while its breaker is
  open), with the summary and the first fix;
* the report artifact (``cxhealth-report``; the gate's is ``cxhealth-gate-report``)
  and one per target (``cxhealth-target-<name>``), see :mod:`cxhealth.flows.report`;
* events ``cxhealth.target.healthy|unhealthy`` and ``cxhealth.breaker.opened|closed``
  whose resources carry the target, host and cause as labels.

Async on purpose: a sync flow call has a ~1 s heartbeat floor in Prefect 3.9.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.states import Cancelled, Completed, Failed, State
from prefect.utilities.annotations import quote

from cxhealth.flows.report import report_markdown, target_markdown
from cxhealth.tasks.alerting import send_alerts
from cxhealth.tasks.health import TargetReport, check_target, config_error_report, utc_text
from cxhealth.tasks.remedies import remediation_for

REPORT_KEY = "cxhealth-report"
GATE_REPORT_KEY = "cxhealth-gate-report"
UNHEALTHY = "Unhealthy"   # the name of a Failed state that found an unhealthy integration
HELD = "Held"             # the name of the Cancelled state of a sync the gate held


class IntegrationUnhealthy(RuntimeError):
    """Raised by :func:`health_gate` when a target is unhealthy: the sync must not start.

    Attributes:
        failures: ``[{name, stage, cause, host, summary, fix, probe_at}]`` for each unhealthy target.
        report: the gate's report (contract §2 dict), when there is one.

    A sync flow ends in a named, non-crash state with :meth:`held`::

        try:
            await health_gate(targets=["genesys-prod"])
        except IntegrationUnhealthy as exc:
            return exc.held()          # Cancelled(name="Held", message=<which targets, why, when>)
    """

    def __init__(self, failures: Sequence[Mapping[str, Any]], report: Mapping[str, Any] | None = None):
        self.failures = [dict(f) for f in failures]
        self.report = dict(report) if report is not None else None
        super().__init__(failure_message(self.failures))

    def held(self) -> State:
        """The state a gated sync returns: ``Cancelled(name="Held")`` with one readable message.

        Cancelled, not Failed: the sync did nothing wrong and ran nothing; the
        integration's failure is reported once, by the health run that found it
        (and Slack), and a Failed sync would be retried by flow retries into the
        same open breaker.
        """
        return Cancelled(name=HELD, message="held: the sync did not start; " + failure_message(self.failures))


def _first_fix(d: Mapping[str, Any]) -> str | None:
    steps = remediation_for(d)
    return steps[0] if steps else None


def failure_of(d: Mapping[str, Any]) -> dict[str, Any]:
    """What a message needs about one unhealthy target (from its report dict)."""
    breaker = d.get("breaker") or {}
    return {"name": d["name"], "stage": d.get("stage"), "cause": d.get("cause"), "host": d.get("host"),
            "summary": d.get("summary"), "fix": _first_fix(d),
            "probe_at": utc_text(breaker.get("reopen_at")) if breaker.get("state") in ("open", "half_open") else None}


def failure_line(f: Mapping[str, Any]) -> str:
    """``tls12-trap: endpoints failed (protocol_version_mismatch) on HOST — summary. Fix: …``"""
    if f.get("cause") == "config_error":  # nothing was checked: not a failed handshake
        stage = "not checked"
    else:
        stage = "breaker open" if f.get("stage") == "breaker_open" else f"{f.get('stage')} failed"
    line = f"{f['name']}: {stage} ({f.get('cause')})"
    if f.get("host"):
        line += f" on {f['host']}"
    if f.get("summary"):
        line += f" — {str(f['summary']).rstrip('.')}."
    if f.get("fix"):
        line += f" Fix: {f['fix']}"
    if f.get("probe_at") and "probe" not in str(f.get("summary") or ""):
        line += f" The breaker lets a probe through at {f['probe_at']}."
    return line


def failure_message(failures: Sequence[Mapping[str, Any]]) -> str:
    return "unhealthy integration: " + " | ".join(failure_line(f) for f in failures)


def healthy_line(d: Mapping[str, Any]) -> str:
    oauth = d.get("oauth") or {}
    eps = d.get("endpoints") or []
    tls = sorted({e.get("protocol") for e in eps if e.get("protocol")} | ({oauth["protocol"]} if oauth.get("protocol") else set()))
    return (f"{d['name']}: healthy — token HTTP {oauth.get('status')}, {sum(1 for e in eps if e.get('ok'))}/{len(eps)} "
            f"endpoints ok, {', '.join(tls) or 'TLS'}")


# --- configuration ----------------------------------------------------------------------

async def load_config(targets_file: str | None, names: Sequence[str] | None
                      ) -> tuple[Any, list[Any], Mapping[str, str] | None]:
    """The configuration, from exactly one source (the README's precedence rule):

    1. the ``targets_file`` parameter, if given;
    2. else ``$CXHEALTH_TARGETS``, if set;
    3. else the Prefect blocks (CxHealth Target blocks, the ``default`` Slack and
       breaker settings blocks).

    A ``targets.toml`` that happens to be in the worker's working directory is
    never picked up by itself. Errors name their source. Returns (config, selected
    targets, env mapping for block-held secrets or None for os.environ).
    """
    path = targets_file or os.environ.get("CXHEALTH_TARGETS") or None
    if path is not None:
        from cxhealth.tasks.targets import load_targets

        config = load_targets(path)
        selected = [config.target(n) for n in names] if names else list(config.targets)
        return config, selected, None
    from cxhealth.blocks import aload_config_from_blocks  # registered CxTarget blocks

    config, env = await aload_config_from_blocks(list(names) if names else None)
    return config, list(config.targets), env  # already only the named blocks' targets


async def load_run_config(targets_file: str | None, names: Sequence[str] | None
                          ) -> tuple[Any, list[Any], Mapping[str, str] | None, dict[str, str]]:
    """:func:`load_config` for a health run: a named target that is unknown, or whose
    block is missing or invalid, is one error (naming its source; an unknown name lists
    the known ones) in the returned ``{name: error}`` — reported as that target's
    failure — instead of an error for the whole run."""
    path = targets_file or os.environ.get("CXHEALTH_TARGETS") or None
    errors: dict[str, str] = {}
    if path is not None:
        from cxhealth.tasks.targets import TargetConfigError, load_targets

        config = load_targets(path)
        selected = []
        for n in names or [t.name for t in config.targets]:
            try:
                selected.append(config.target(n))
            except TargetConfigError as exc:
                errors[n] = str(exc)
        return config, selected, None, errors
    from cxhealth.blocks import aload_config_from_blocks

    config, env = await aload_config_from_blocks(list(names) if names else None, errors=errors)
    return config, list(config.targets), env, errors


# --- events -----------------------------------------------------------------------------

def _labels(d: Mapping[str, Any]) -> dict[str, str]:
    out = {"cxhealth.target": str(d["name"]), "cxhealth.health": "healthy" if d["healthy"] else "unhealthy",
           "cxhealth.cause": str(d.get("cause") or "ok"), "cxhealth.stage": str(d.get("stage") or "none")}
    if d.get("host"):
        out["cxhealth.host"] = str(d["host"])
    return out


def hosts_of(d: Mapping[str, Any]) -> set[str]:
    """Every host a target's report says it uses (token host, API hosts, the breaker's)."""
    hosts = {d.get("token_host"), d.get("host"), (d.get("breaker") or {}).get("host"),
             (d.get("oauth") or {}).get("host")}
    hosts |= {e.get("host") for e in d.get("endpoints") or []}
    return {str(h) for h in hosts if h}


def emit_events(docs: Sequence[Mapping[str, Any]]) -> None:
    """One event per target and one per breaker transition, cause and host in the resource's labels
    (the event feed shows ``prefect.resource.name``; Automations match labels). A breaker event is
    related to every target of the run that uses its host (role ``target``): an Automation scoped
    to a sync's targets matches it whichever target's check tripped the breaker."""
    users: dict[str, list[str]] = {}
    for d in docs:
        for h in hosts_of(d):
            users.setdefault(h, []).append(str(d["name"]))
    for d in docs:
        labels = _labels(d)
        name = d["name"] if d["healthy"] else f"{d['name']}: {d.get('cause')}" + (f" on {d['host']}" if d.get("host") else "")
        related = ([{"prefect.resource.id": f"cxhealth.host.{d['host']}", "prefect.resource.role": "host",
                     "prefect.resource.name": str(d["host"])}] if d.get("host") else [])
        emit_event(event=f"cxhealth.target.{'healthy' if d['healthy'] else 'unhealthy'}",
                   resource={"prefect.resource.id": f"cxhealth.target.{d['name']}", "prefect.resource.name": name,
                             **labels},
                   related=related,
                   payload={"stage": d.get("stage"), "cause": d.get("cause"), "host": d.get("host"),
                            "summary": d.get("summary"), "fix": None if d["healthy"] else _first_fix(d),
                            "breaker": (d.get("breaker") or {}).get("state")})
        for tr in d.get("transitions") or []:
            kind = "opened" if tr["kind"] in ("opened", "reopened") else "closed"
            cause = str((tr.get("summary") or {}).get("cause") or d.get("cause") or "unknown")
            resource = {"prefect.resource.id": f"cxhealth.breaker.{tr['host']}",
                        "prefect.resource.name": f"breaker {tr['host']} {kind}" + (f": {cause}" if kind == "opened" else ""),
                        "cxhealth.target": str(d["name"]), "cxhealth.host": str(tr["host"]), "cxhealth.cause": cause,
                        "cxhealth.transition": str(tr["kind"])}
            targets = list(dict.fromkeys([str(d["name"])] + users.get(str(tr["host"]), [])))
            emit_event(event=f"cxhealth.breaker.{kind}", resource=resource,
                       related=[{"prefect.resource.id": f"cxhealth.target.{name}", "prefect.resource.role": "target",
                                 "prefect.resource.name": name} for name in targets],
                       payload={"transition": tr["kind"], "at": tr.get("at"), "reopen_at": tr.get("reopen_at"),
                                "probe_at": utc_text(tr.get("reopen_at")), "trips": tr.get("trips"), "cause": cause,
                                "summary": (tr.get("summary") or {}).get("summary")})


async def note_held_runs(docs: Sequence[Mapping[str, Any]]) -> int:
    """When a breaker opens, say so on every scheduled run of a deployment that depends on one of
    its targets (``targets`` parameter; none given = every target): one ``cxhealth.sync.held`` event
    per run, its resource the flow run, naming the breaker, the cause and when it lets a probe
    through — what a run sitting in a paused work queue has to tell. Returns how many were noted."""
    opened = [(d, tr) for d in docs for tr in d.get("transitions") or [] if tr["kind"] in ("opened", "reopened")]
    if not opened:
        return 0
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    users: dict[str, set[str]] = {}
    for d in docs:
        for h in hosts_of(d):
            users.setdefault(h, set()).add(str(d["name"]))
    noted = 0
    async with get_client() as client:
        deployments = await client.read_deployments(limit=200)
        for d, tr in opened:
            affected = users.get(str(tr["host"]), set()) | {str(d["name"])}
            cause = str((tr.get("summary") or {}).get("cause") or d.get("cause"))
            for dep in deployments:
                wanted = (dep.parameters or {}).get("targets")
                if not isinstance(wanted, list) or not set(wanted) & affected:
                    continue  # a deployment without a targets list is not a gated sync of these targets
                runs = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))), limit=50)
                note = (f"held: breaker {tr['host']} of {', '.join(sorted(set(wanted) & affected))} opened "
                        f"({cause}); the cxhealth Automation pauses this sync's work queue until it closes; "
                        f"it lets a probe through at {utc_text(tr.get('reopen_at')) or 'a later run'}")
                for run in runs:
                    emit_event(event="cxhealth.sync.held",
                               resource={"prefect.resource.id": f"prefect.flow-run.{run.id}",
                                         "prefect.resource.name": run.name, "cxhealth.host": str(tr["host"]),
                                         "cxhealth.cause": cause},
                               related=[{"prefect.resource.id": f"prefect.deployment.{dep.id}",
                                         "prefect.resource.role": "deployment", "prefect.resource.name": dep.name},
                                        {"prefect.resource.id": f"cxhealth.breaker.{tr['host']}",
                                         "prefect.resource.role": "breaker", "prefect.resource.name": str(tr["host"])}],
                               payload={"note": note, "breaker": tr["host"], "cause": cause,
                                        "probe_at": utc_text(tr.get("reopen_at"))})
                    noted += 1
    return noted


# --- the check of one target, as one task run ---------------------------------------------

def log_target(logger: Any, d: Mapping[str, Any]) -> None:
    """One line per target: INFO healthy, WARNING while its breaker is open, ERROR for a fresh failure."""
    if d["healthy"]:
        logger.info("%s", healthy_line(d))
    else:
        logger.log(30 if d.get("stage") == "breaker_open" else 40, "%s", failure_line(failure_of(d)))


def _target_state(report: TargetReport) -> State:
    d = report.to_dict()
    if report.healthy:
        return Completed(message=healthy_line(d), data=report)
    return Failed(name=UNHEALTHY, message=failure_line(failure_of(d)), data=report)


@task(name="check-target", task_run_name="{target.name}", cache_policy=NO_CACHE, persist_result=False, retries=0)
async def check_target_task(target: Any, breaker: Any, env: Mapping[str, str] | None = None) -> State:
    """The whole check of one target (handshake, token, endpoints) in one task run named after it.

    Returns ``Completed`` when healthy, ``Failed(name="Unhealthy")`` otherwise; the
    state's data is the frozen :class:`~cxhealth.tasks.health.TargetReport`
    (kept in memory only: ``persist_result=False``).
    """
    report = await check_target(target, breaker, env)
    log_target(get_run_logger(), report.to_dict())
    return _target_state(report)


async def _task_report(target: Any, breaker: Any, env: Mapping[str, str] | None) -> TargetReport:
    # quote: Prefect would walk each argument (the target model, the breaker, the environment) twice
    # per task run, to resolve futures and record task inputs; none holds a future (fleet CPU, issue 16)
    state = await check_target_task(quote(target), quote(breaker), quote(env), return_state=True)
    report = state.result(raise_on_failure=False)
    if asyncio.iscoroutine(report):
        report = await report
    if not isinstance(report, TargetReport):  # the task itself crashed: say so, as this target's failure
        return config_error_report(target.name, f"the check crashed: {state.message}", platform=target.platform)
    return report


# --- the report of a run --------------------------------------------------------------------

async def _announce(docs: list[dict[str, Any]], history_warnings: list[dict[str, str]], logger: Any) -> dict[str, Any]:
    """The run's verdict, out before Slack and the artifacts (transitions first, issue 14): each
    target linked to this flow run, the report, its events, the drift events, the held-run notes.
    Shared by both flows."""
    from cxhealth.tasks.history import drift_event_specs

    try:
        from prefect.runtime import flow_run

        url = flow_run.ui_url
        for d in docs:
            d["flow_run_url"] = url
    except Exception:  # noqa: BLE001 - a link is a nicety
        pass
    report: dict[str, Any] = {"healthy": all(d["healthy"] for d in docs), "targets": docs}
    if history_warnings:
        report["warnings"] = history_warnings
    emit_events(docs)
    for spec in drift_event_specs(docs):  # contract §4: cxhealth.tls.drift, for Automations
        emit_event(**spec)
    try:
        await note_held_runs(docs)
    except Exception as exc:  # noqa: BLE001 - a note is a nicety; the Automation still holds the runs
        logger.debug("could not note the held runs: %s", type(exc).__name__)
    return report


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "target"


async def health_report(targets: list[str] | None, targets_file: str | None, alerts: bool,
                        shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """The integration-health flow's run: one task run per target, then the report
    (events, Slack, artifacts — in that order: transitions first), as ops read them
    in the UI. The gate's lean path is :func:`gate_report`.

    ``shard``: ``(k, n)`` from :func:`cxhealth.tasks.shards.parse_shard`: only the
    targets (and unknown names) of that shard are checked; None checks them all.
    """
    logger = get_run_logger()
    from cxhealth.tasks.alerts.run import alert_settings
    from cxhealth.tasks.runtime import breaker_for

    config, selected, env, errors = await load_run_config(targets_file, targets)
    if shard is not None:
        from cxhealth.tasks import shards

        selected = shards.select(selected, shard)
        errors = {n: e for n, e in errors.items() if shards.in_shard(n, shard)}
    settings = alert_settings(config, env) if alerts else None
    breaker = breaker_for(config)
    try:
        runs = await asyncio.gather(*(_task_report(t, breaker, env) for t in selected))
    finally:
        breaker.close()
    runs = list(runs) + [config_error_report(name, error) for name, error in errors.items()]
    docs = [r.to_dict() for r in runs]
    from cxhealth.tasks.history import record_run

    history_warnings = await asyncio.to_thread(record_run, config, docs)  # contract §4; never fails the run
    report = await _announce(docs, history_warnings, logger)
    if settings is not None:
        report["alerts"] = await asyncio.to_thread(send_alerts, config, settings, docs)
    for d in docs:
        if d.get("config_error"):  # the checked targets' task runs log their own line
            log_target(logger, d)
    try:  # the transitions went out above: a failed artifact costs only the artifact (issue 14)
        written = await _publish_artifacts(report, docs, detailed=True)
        if docs:
            logger.info("%s", _artifacts_line(written, len(docs)))
    except Exception as exc:  # noqa: BLE001 - the verdict and the transitions stand
        logger.warning("the report artifact could not be written (%s); events and Slack alerts went out",
                       type(exc).__name__)
        report.setdefault("warnings", []).append(f"report artifact not written ({type(exc).__name__})")
    return report


TARGET_KEY_PREFIX = "cxhealth-target-"
TARGET_REFRESH_S = 24 * 3600   # a healthy target's artifact is rewritten at least this often
_LATEST_PAGE = 200             # keys per read of the latest artifacts (the server's default page limit)


def target_key(name: str) -> str:
    return TARGET_KEY_PREFIX + _slug(name)


def _target_description(d: Mapping[str, Any]) -> str:
    return ("healthy: " if d["healthy"] else "UNHEALTHY: ") + (d["name"] if d["healthy"] else f"{d['name']} {d.get('cause')}")


def target_artifact_reason(d: Mapping[str, Any], latest: Any, known: bool, now: float) -> str | None:
    """Why a target's artifact is written this run, or None when its latest version already says it.

    The rule (README, "What ops see"; deployments/FLEET.md): write when it is news —

    * ``unhealthy``: the target is unhealthy (every run: the breaker's probe time and the
      cause may move);
    * ``recovered``: its key's latest version is not a healthy one (it was unhealthy at its
      last check), so the key never stays red after recovery;
    * ``first``: the key has no version yet;
    * ``refresh``: the latest healthy version is older than ``TARGET_REFRESH_S`` (24 h);
    * ``unknown``: the latest versions could not be read (``known`` False): write, never guess.

    Otherwise (healthy now, and the latest version, written less than 24 h ago, says healthy)
    nothing is written: the run's report (``cxhealth-report``) carries every target every run.
    """
    if not d["healthy"]:
        return "unhealthy"
    if not known:
        return "unknown"
    if latest is None:
        return "first"
    if not str(getattr(latest, "description", None) or "").startswith("healthy:"):
        return "recovered"
    updated = getattr(latest, "updated", None) or getattr(latest, "created", None)
    if updated is None or now - updated.timestamp() > TARGET_REFRESH_S:
        return "refresh"
    return None


async def latest_target_artifacts(names: Sequence[str]) -> dict[str, Any] | None:
    """The latest version of each target's artifact key, ``{key: ArtifactCollection}``, read in pages of
    200 keys (one API call each: 5 for 1,000 targets, instead of 1,000 writes); None if it cannot be read."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    keys = list(dict.fromkeys(target_key(n) for n in names))
    found: dict[str, Any] = {}
    try:
        async with get_client() as client:
            for i in range(0, len(keys), _LATEST_PAGE):
                page = keys[i:i + _LATEST_PAGE]
                rows = await client.read_latest_artifacts(
                    artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=page)),
                    limit=len(page))
                found.update({r.key: r for r in rows})
    except Exception as exc:  # noqa: BLE001 - the safe side: write every target's artifact
        get_run_logger().debug("could not read the latest target artifacts: %s", type(exc).__name__)
        return None
    return found


async def _publish_artifacts(report: dict[str, Any], docs: Sequence[Mapping[str, Any]],
                             detailed: bool) -> dict[str, list[str]]:
    """Write the run's artifacts; returns ``{reason: [target names]}`` of the per-target ones written."""
    written: dict[str, list[str]] = {}
    if detailed:
        import time

        latest = await latest_target_artifacts([d["name"] for d in docs]) if docs else {}
        now = time.time()
        news = []
        for d in docs:
            why = target_artifact_reason(d, (latest or {}).get(target_key(d["name"])), latest is not None, now)
            if why is not None:
                written.setdefault(why, []).append(str(d["name"]))
                news.append(d)
        await asyncio.gather(
            create_markdown_artifact(key=REPORT_KEY, markdown=report_markdown(report),
                                     description=_describe(report)),
            *(create_markdown_artifact(key=target_key(d["name"]), markdown=target_markdown(d),
                                       description=_target_description(d))
              for d in news))
    elif not report["healthy"]:  # a healthy gate's report is read by no one
        await create_markdown_artifact(key=GATE_REPORT_KEY, markdown=report_markdown(report, title="Health gate"),
                                       description="the health gate held the sync: " + _describe(report))
    return written


def _artifacts_line(written: Mapping[str, Sequence[str]], total: int) -> str:
    n = sum(len(v) for v in written.values())
    parts = ", ".join(f"{len(v)} {why}" for why, v in written.items())
    return (f"target artifacts: {n} of {total} written" + (f" ({parts})" if parts else "")
            + (f"; {total - n} healthy ones unchanged since their latest version (see cxhealth-report)"
               if total - n else ""))


def _describe(report: Mapping[str, Any]) -> str:
    bad = [d for d in report["targets"] if not d["healthy"]]
    if not bad:
        return f"healthy: {len(report['targets'])} target(s)"
    return "UNHEALTHY: " + ", ".join(f"{d['name']} ({d.get('cause')})" for d in bad)


def _failures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [failure_of(d) for d in report["targets"] if not d["healthy"]]


def run_title(report: Mapping[str, Any], prefix: str = "health") -> str:
    """The flow run's name after the checks: which targets, and the causes when unhealthy."""
    bad = [d for d in report["targets"] if not d["healthy"]]
    if bad:
        text = f"{prefix} UNHEALTHY " + ", ".join(f"{d['name']} ({d.get('cause')})" for d in bad)
    else:
        text = f"{prefix} ok " + ", ".join(d["name"] for d in report["targets"])
    return text if len(text) <= 120 else text[:119] + "…"


MAX_TAGGED = 50  # a run over more targets tags none of them by name (its report lists them all)


def run_tags(report: Mapping[str, Any]) -> list[str]:
    """``target:<t>`` per target (runs of at most 50 targets), ``unhealthy:<t>`` and ``cause:<c>`` per
    unhealthy target (the first 50), and ``healthy`` or ``unhealthy``."""
    docs = report["targets"]
    tags = [f"target:{d['name']}" for d in docs] if len(docs) <= MAX_TAGGED else []
    for d in [d for d in docs if not d["healthy"]][:MAX_TAGGED]:
        tags += [f"unhealthy:{d['name']}", f"cause:{d.get('cause')}"]
    return list(dict.fromkeys(tags + (["unhealthy"] if not report["healthy"] else ["healthy"])))


def _names_text(docs: Sequence[Mapping[str, Any]], most: int = 20) -> str:
    names = [str(d["name"]) for d in docs]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


async def label_flow_run(name: str | None, tags: Sequence[str]) -> None:
    """Rename the current flow run and add tags (the runs list then says which integration broke)."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.runtime import flow_run

        run_id = flow_run.id
        if not run_id:
            return
        existing = list(flow_run.tags or [])
        async with get_client() as client:
            await client.update_flow_run(run_id, name=name, tags=list(dict.fromkeys(existing + list(tags))))
    except Exception as exc:  # noqa: BLE001 - a label is a nicety, the state carries the verdict
        get_run_logger().debug("could not label the flow run: %s", type(exc).__name__)


def _health_run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    names = params.get("targets")
    text = "health " + (", ".join(names) if names else "all targets")
    return text + (f" (shard {str(params['shard']).strip()})" if params.get("shard") else "")


@flow(name="integration-health", flow_run_name=_health_run_name,
      description="Handshake diagnostics -> OAuth token smoke test -> endpoint checks, "
      "under the shared circuit breaker, with Slack alerts.")
async def integration_health(targets: list[str] | None = None, targets_file: str | None = None,
                             alerts: bool = True, shard: str | None = None) -> Any:
    """Check every target concurrently; Completed when all are healthy, Failed(name="Unhealthy") otherwise.

    Args:
        targets: target names to check (default: all).
        targets_file: a targets.toml path on the worker (default: $CXHEALTH_TARGETS, else the CxTarget blocks).
        alerts: post to Slack (False: send and queue nothing).
        shard: ``"k/n"``: check only the targets whose stable hash (sha256 of the name) mod n is
            k-1 (:mod:`cxhealth.tasks.shards`; deployments/FLEET.md); None: every target.
    """
    from cxhealth.tasks.shards import parse_shard

    part = parse_shard(shard)  # a bad spec fails the run with one line, before any check
    report = await health_report(targets, targets_file, alerts, shard=part)
    await label_flow_run(run_title(report), run_tags(report))
    if report["healthy"]:
        return Completed(message=f"{len(report['targets'])} target(s) healthy: " + _names_text(report["targets"]),
                         data=report)
    return Failed(name=UNHEALTHY, message=failure_message(_failures(report)), data=report)


async def gate_report(targets: list[str] | None, targets_file: str | None, alerts: bool) -> dict[str, Any]:
    """The gate's checks and report, in the current flow run, at the least cost over the
    plain checks (issue 16: <= 0.05 s, bench/bench_gate.py).

    It publishes what :func:`health_report` publishes, in the same order (history,
    events, Slack, then — only when it holds the sync — the report artifact), but:
    the checks run in the flow run itself (no task runs); the history store is opened
    while they run, and each target is recorded in it as soon as its own check is done,
    while the others still run; the alert store is opened while the last records and
    the events go out; the alerts go out by a plain call (no ``slack-alerts`` task run:
    Prefect's engine spent 0.1-0.3 s on it, bench/bench_gate.py).
    Prefect API calls of a healthy gate: none of its own (events and log lines go
    through Prefect's batching workers); one artifact when it holds the sync.
    """
    logger = get_run_logger()
    from cxhealth.tasks.alerts.run import alert_settings, deliver_alerts, open_run_alert_store
    from cxhealth.tasks.history import open_run_history, record_run

    config, selected, env, errors = await load_run_config(targets_file, targets)
    settings = alert_settings(config, env) if alerts else None
    from cxhealth.tasks.runtime import breaker_for

    breaker = breaker_for(config)
    history_opening = asyncio.ensure_future(asyncio.to_thread(open_run_history, config))
    recording = asyncio.Lock()  # one target at a time into the store, in the order the checks end
    history_warnings: list[dict[str, str]] = []

    async def check_and_record(target: Any) -> dict[str, Any]:
        doc = (await check_target(target, breaker, env)).to_dict()
        store = await history_opening
        if store is not None:
            async with recording:
                history_warnings.extend(await asyncio.to_thread(record_run, config, [doc], store=store))
        return doc

    try:
        docs = list(await asyncio.gather(*(check_and_record(t) for t in selected)))
    except BaseException:  # cancelled: the store opened meanwhile is closed once it is open
        history_opening.add_done_callback(_close_opened)
        raise
    finally:
        breaker.close()
    # The alert store lives in the breaker's file: opened now, not during the checks, whose
    # breaker writes its schema transaction would make wait (SQLite's busy handler backs off).
    alerts_opening = asyncio.ensure_future(asyncio.to_thread(open_run_alert_store, config)) if settings else None
    history = await history_opening  # open already, unless no target got as far as its check
    broken = [config_error_report(name, error).to_dict() for name, error in errors.items()]
    if history is None:  # the store did not open: recorded (tried again, and why not said) as before
        history_warnings = await asyncio.to_thread(record_run, config, docs + broken)
    elif broken:
        history_warnings.extend(await asyncio.to_thread(record_run, config, broken, store=history))
    docs += broken
    if history is not None:
        _close_later(history)
    report = await _announce(docs, history_warnings, logger)
    if alerts_opening is not None:
        alert_store = await alerts_opening
        try:
            report["alerts"] = await asyncio.to_thread(deliver_alerts, config, settings, docs, store=alert_store)
        finally:
            if alert_store is not None:
                _close_later(alert_store)
    for d in docs:
        log_target(logger, d)
    try:  # the transitions went out above: a failed artifact costs only the artifact (issue 14)
        await _publish_artifacts(report, docs, detailed=False)
    except Exception as exc:  # noqa: BLE001 - the verdict and the transitions stand
        logger.warning("the report artifact could not be written (%s); events and Slack alerts went out",
                       type(exc).__name__)
        report.setdefault("warnings", []).append(f"report artifact not written ({type(exc).__name__})")
    return report


def _close_later(store: Any) -> None:
    """Close a store off the gate's path: what it holds is committed; closing SQLite's last
    connection checkpoints its WAL (an fsync, ~10 ms on a busy disk). A non-daemon thread:
    the process does not exit before it is done."""
    import threading

    def close() -> None:
        try:
            store.close()
        except Exception:  # noqa: BLE001 - everything it held is committed
            pass

    threading.Thread(target=close, name="cxhealth-store-close", daemon=False).start()


def _close_opened(opening: "asyncio.Future[Any]") -> None:
    if not opening.cancelled() and opening.exception() is None and opening.result() is not None:
        try:
            opening.result().close()
        except Exception:  # noqa: BLE001 - closing after a cancelled run
            pass


async def _gate(targets: list[str] | None, targets_file: str | None, alerts: bool) -> dict:
    report = await gate_report(targets, targets_file, alerts)
    if not report["healthy"]:
        raise IntegrationUnhealthy(_failures(report), report)
    return {"healthy": True, "targets": [t["name"] for t in report["targets"]]}


@flow(name="health-gate", description="Returns when the integrations are healthy; raises IntegrationUnhealthy otherwise.")
async def health_gate_flow(targets: list[str] | None = None, targets_file: str | None = None,
                           alerts: bool = True) -> dict:
    """The gate as a flow run of its own: a ``health-gate`` subflow when awaited inside a
    sync flow (where a team wants the gate's checks and report on a run of their own), and
    what :func:`health_gate` runs when it is called outside any flow."""
    return await _gate(targets, targets_file, alerts)


async def health_gate(targets: list[str] | None = None, targets_file: str | None = None, alerts: bool = True) -> dict:
    """Call at the top of a sync flow: the sync never starts against an unhealthy integration.

    Inside a flow run the checks run *in that run* (no subflow, no task runs: the
    gate sits in front of every sync, so its cost matters, bench/bench_gate.py):
    its events, alerts, log lines and — when it fails — the ``cxhealth-gate-report``
    artifact land on the sync's own run. Outside a flow it runs as the
    ``health-gate`` flow.

    Raises:
        IntegrationUnhealthy: naming each unhealthy target, its stage, cause, host and
            first fix; ``exc.held()`` is the state a sync should end in.
    """
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        return await _gate(targets, targets_file, alerts)
    return await health_gate_flow(targets=targets, targets_file=targets_file, alerts=alerts)


def run_flow_sync(targets_file: str, names: Sequence[str] | None, alerts: bool = True,
                  shard: str | None = None) -> dict[str, Any]:
    """Run integration-health as a flow run from the CLI (`cxhealth run --flow`) and return its report."""
    async def go() -> dict[str, Any]:
        state = await integration_health(targets=list(names) if names else None,
                                          targets_file=str(Path(targets_file).resolve()), alerts=alerts,
                                          shard=shard, return_state=True)
        report = state.result(raise_on_failure=False)
        if asyncio.iscoroutine(report):
            report = await report
        if not isinstance(report, dict):
            raise RuntimeError(f"the flow run ended {state.type.value}: {state.message}")
        report["flow_run_id"] = str(state.state_details.flow_run_id)
        return report

    return asyncio.run(go())
