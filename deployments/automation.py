"""Create the Automations that hold the WFM sync while a breaker is open.

    python deployments/automation.py [--pool cxhealth-pool] [--queue wfm-sync] [--no-create]

Two Automations, created or updated in place (run it as often as you like):

* ``cxhealth: pause <queue> when a breaker opens`` — on any
  ``cxhealth.breaker.opened`` event, pause the work queue the gated WFM sync
  deployment runs on;
* ``cxhealth: resume <queue> when a breaker closes`` — on any
  ``cxhealth.breaker.closed`` event, resume it.

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


def automation_names(queue: str) -> tuple[str, str]:
    return (f"cxhealth: pause {queue} when a breaker opens", f"cxhealth: resume {queue} when a breaker closes")


def desired_automations(queue: str, work_queue_id: UUID) -> list[Any]:
    """The two Automations, as values (not yet on the server)."""
    from prefect.automations import Automation, EventTrigger, PauseWorkQueue, ResumeWorkQueue

    pause_name, resume_name = automation_names(queue)

    def on(event: str) -> EventTrigger:
        # Reactive, threshold 1: act on the first matching event, from any resource
        # (the event's resource names the target; every target's breaker counts).
        return EventTrigger(expect={event}, posture="Reactive", threshold=1, within=timedelta(0))

    return [
        Automation(name=pause_name, description=f"Pause work queue {queue!r} (the gated WFM sync) when any "
                   f"cxhealth breaker opens.", trigger=on(BREAKER_OPENED),
                   actions=[PauseWorkQueue(source="selected", work_queue_id=work_queue_id)],
                   tags=["cxhealth"]),
        Automation(name=resume_name, description=f"Resume work queue {queue!r} when a cxhealth breaker closes.",
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
                             create: bool = True) -> tuple[list[AutomationResult], list[str]]:
    """Create or update the pause/resume Automations. Idempotent: an existing
    Automation of the same name is updated in place (duplicates are deleted)."""
    from prefect.client.orchestration import get_client

    queue_id, made = await ensure_work_queue(pool, queue, create=create)
    results: list[AutomationResult] = []
    async with get_client() as client:
        for automation in desired_automations(queue, queue_id):
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
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help=f"the WFM sync's work queue (default {DEFAULT_QUEUE})")
    parser.add_argument("--no-create", dest="create", action="store_false",
                        help="fail instead of creating a missing work pool or queue")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        results, made = asyncio.run(ensure_automations(args.pool, args.queue, create=args.create))
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
        print(f"{r.action} automation {r.name!r} ({r.id}): on {r.event} -> {r.action_type} {args.pool}/{args.queue}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
