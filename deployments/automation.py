"""Create the Automations that hold the WFM sync while a breaker it depends on is open.

    python deployments/automation.py [--sync hourly | --targets NAME ...] [--pool cxhealth-pool]
                                     [--queue wfm-sync] [--prefect-file deployments/prefect.yaml] [--no-create]

A pair of Automations per sync, created or updated in place (run it as often as you like):

* ``cxhealth: pause <queue> when a breaker of <sync> opens`` — on a
  ``cxhealth.breaker.opened`` event *related to one of the sync's targets*, pause
  the work queue the sync deployment runs on;
* ``cxhealth: resume <queue> when a breaker of <sync> closes`` — on the matching
  ``cxhealth.breaker.closed`` event, resume it.

``--sync NAME`` reads the deployment NAME of ``--prefect-file``: its ``targets``
parameter (the targets the sync depends on) and its work queue. ``--targets``
names them directly. Each breaker event names, as related resources
(``cxhealth.target.<name>``, role ``target``), every target of the run that uses
that host, so a sync is held by exactly its own targets' breakers — one partner's
proxy does not stop a sync that reads only from a healthy Genesys org. Without
``--sync`` or ``--targets`` the pair reacts to every breaker (names without a sync).

A paused work queue holds scheduled *and* manual runs (a paused deployment would
still take manual runs). The queue is a second line of defence: the sync's own
``health_gate`` still stops it when a target is unhealthy. With several targets,
one breaker closing resumes the queue while another may still be open; the gate
then stops the run.

The PauseWorkQueue / ResumeWorkQueue actions need the queue's id, so the pool and
queue must exist: they are created (a ``process`` pool) unless ``--no-create``.
Talks to whichever Prefect API is configured (``PREFECT_API_URL``).

Exit status: 0 done; 2 bad input (e.g. the queue is missing with ``--no-create``);
1 the Prefect API failed. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence
from uuid import UUID

BREAKER_OPENED = "cxhealth.breaker.opened"
BREAKER_CLOSED = "cxhealth.breaker.closed"
DEFAULT_POOL = "cxhealth-pool"
DEFAULT_QUEUE = "wfm-sync"


class SetupError(ValueError):
    """Bad input (a missing pool or queue with --no-create); one line."""


@dataclass(frozen=True)
class AutomationResult:
    name: str
    id: UUID
    action: str  # "created" | "updated"
    event: str
    action_type: str


def automation_names(queue: str, sync: str | None = None) -> tuple[str, str]:
    if sync is None:
        return (f"cxhealth: pause {queue} when a breaker opens", f"cxhealth: resume {queue} when a breaker closes")
    return (f"cxhealth: pause {queue} when a breaker of {sync} opens",
            f"cxhealth: resume {queue} when a breaker of {sync} closes")


def sync_from_prefect_yaml(path: str, name: str) -> tuple[list[str] | None, str | None]:
    """(targets, work queue) of deployment *name* in a prefect.yaml (None: not given there)."""
    import yaml

    try:
        spec = yaml.safe_load(open(path, encoding="utf-8").read()) or {}
    except OSError as exc:
        raise SetupError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    found = [d for d in spec.get("deployments") or [] if d.get("name") == name
             or f"{d.get('flow_name')}/{d.get('name')}" == name]
    if not found:
        known = ", ".join(f"{d.get('flow_name')}/{d.get('name')}" for d in spec.get("deployments") or [])
        raise SetupError(f"{path}: no deployment named {name!r}; deployments: {known}")
    d = found[0]
    targets = (d.get("parameters") or {}).get("targets")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)):
        raise SetupError(f"{path}: deployment {name!r}: parameters.targets must be a list of target names")
    return targets, (d.get("work_pool") or {}).get("work_queue_name")


def desired_automations(queue: str, work_queue_id: UUID, targets: list[str] | None = None,
                        sync: str | None = None) -> list[Any]:
    """The two Automations, as values (not yet on the server)."""
    from prefect.automations import Automation, EventTrigger, PauseWorkQueue, ResumeWorkQueue

    pause_name, resume_name = automation_names(queue, sync)
    related = ({"prefect.resource.role": "target",
                "prefect.resource.id": [f"cxhealth.target.{t}" for t in targets]} if targets else {})
    scope = f"a breaker of {', '.join(targets)}" if targets else "any cxhealth breaker"

    def on(event: str) -> EventTrigger:
        # Reactive, threshold 1: act on the first matching event; with targets, only
        # events related to one of them (every target of the run that uses the host).
        return EventTrigger(expect={event}, match_related=related, posture="Reactive", threshold=1,
                            within=timedelta(0))

    return [
        Automation(name=pause_name, description=f"Pause work queue {queue!r} ({sync or 'the gated WFM sync'}) when "
                   f"{scope} opens.", trigger=on(BREAKER_OPENED),
                   actions=[PauseWorkQueue(source="selected", work_queue_id=work_queue_id)],
                   tags=["cxhealth"]),
        Automation(name=resume_name, description=f"Resume work queue {queue!r} when {scope} closes.",
                   trigger=on(BREAKER_CLOSED),
                   actions=[ResumeWorkQueue(source="selected", work_queue_id=work_queue_id)],
                   tags=["cxhealth"]),
    ]


async def ensure_work_queue(pool: str, queue: str, *, create: bool = True) -> tuple[UUID, list[str]]:
    """The queue's id; creates a process pool and the queue when missing (if *create*)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    made: list[str] = []
    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            if not create:
                raise SetupError(f"work pool {pool!r} does not exist; create it with "
                                 f"`prefect work-pool create {pool} --type process`") from None
            from prefect.workers.process import ProcessWorker

            try:
                await client.create_work_pool(WorkPoolCreate(
                    name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
                made.append(f"work pool {pool} (process)")
            except ObjectAlreadyExists:  # created concurrently
                pass
        try:
            wq = await client.read_work_queue_by_name(queue, work_pool_name=pool)
        except ObjectNotFound:
            if not create:
                raise SetupError(f"work queue {queue!r} does not exist in pool {pool!r}; `prefect deploy` "
                                 f"creates it, or run without --no-create") from None
            try:
                wq = await client.create_work_queue(queue, work_pool_name=pool,
                                                    description="gated WFM sync (paused while a breaker is open)")
                made.append(f"work queue {queue} in {pool}")
            except ObjectAlreadyExists:
                wq = await client.read_work_queue_by_name(queue, work_pool_name=pool)
    return wq.id, made


async def ensure_automations(pool: str = DEFAULT_POOL, queue: str = DEFAULT_QUEUE, *,
                             create: bool = True, targets: list[str] | None = None,
                             sync: str | None = None) -> tuple[list[AutomationResult], list[str]]:
    """Create or update the pause/resume Automations. Idempotent: an existing
    Automation of the same name is updated in place (duplicates are deleted)."""
    from prefect.client.orchestration import get_client

    queue_id, made = await ensure_work_queue(pool, queue, create=create)
    results: list[AutomationResult] = []
    async with get_client() as client:
        for automation in desired_automations(queue, queue_id, targets, sync):
            existing = await client.read_automations_by_name(automation.name)
            if existing:
                automation.id = existing[0].id
                await automation.aupdate()
                for extra in existing[1:]:
                    await client.delete_automation(extra.id)
                action = "updated"
            else:
                await automation.acreate()
                action = "created"
            automation_id = automation.id
            results.append(AutomationResult(name=automation.name, id=automation_id, action=action,
                                            event=next(iter(automation.trigger.expect)),
                                            action_type=automation.actions[0].type))
    return results, made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deployments/automation.py",
                                     description="Pause the WFM sync's work queue while a cxhealth breaker is open.")
    parser.add_argument("--pool", default=DEFAULT_POOL, help=f"work pool (default {DEFAULT_POOL})")
    parser.add_argument("--queue", default=None, help=f"the WFM sync's work queue (default: the --sync deployment's, "
                        f"else {DEFAULT_QUEUE})")
    parser.add_argument("--sync", metavar="DEPLOYMENT", default=None,
                        help="the sync deployment in --prefect-file (e.g. hourly): its targets parameter scopes the pair")
    parser.add_argument("--targets", metavar="NAME", nargs="+", default=None,
                        help="the targets the sync depends on (instead of --sync)")
    parser.add_argument("--prefect-file", default="deployments/prefect.yaml",
                        help="where --sync is looked up (default deployments/prefect.yaml)")
    parser.add_argument("--no-create", dest="create", action="store_false",
                        help="fail instead of creating a missing work pool or queue")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        targets, queue, sync = args.targets, args.queue, None
        if args.sync is not None:
            sync = args.sync
            listed, yaml_queue = sync_from_prefect_yaml(args.prefect_file, args.sync)
            targets = targets or listed
            queue = queue or yaml_queue
        queue = queue or DEFAULT_QUEUE
        if targets is not None and sync is None:
            sync = ",".join(targets)
        results, made = asyncio.run(ensure_automations(args.pool, queue, create=args.create, targets=targets,
                                                       sync=sync))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - an unreachable API is one line, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: Prefect API: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    for line in made:
        print(f"created {line}")
    for r in results:
        print(f"{r.action} automation {r.name!r} ({r.id}): on {r.event}"
              f"{' of ' + ', '.join(targets) if targets else ''} -> {r.action_type} {args.pool}/{queue}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
