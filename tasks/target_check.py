"""Prefect task: one target's whole check (breaker -> handshake -> token -> endpoints).

The health gate's hot path: one task run per target instead of three, because
the gate sits in front of every sync and each task run costs Prefect API work.
The integration-health flow shows the three stages as separate tasks
(tasks/handshake.py, oauth.py, endpoints.py); both run the same engine code.
"""

from __future__ import annotations

from typing import Mapping

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.breaker import Breaker
from tasks.health import TargetRun, check_target
from tasks.targets import Target


@task(name="target-health-check", task_run_name="check-{target.name}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
async def target_health_check(target: Target, breaker: Breaker, env: Mapping[str, str] | None = None) -> TargetRun:
    """Run every stage of one target's check; the token never leaves this task.

    Returns:
        The target's report (contract §2 item via ``.to_dict()``); never a secret.
    """
    return await check_target(target, breaker, env)
