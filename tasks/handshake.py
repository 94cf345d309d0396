"""Prefect task: handshake diagnostics of a target's token host, under the breaker.

Thin wrapper over :func:`tasks.health.handshake_stage` (the engine stays Prefect-free).
Never retried: a TLS handshake failure is not transient (the guide's last trap).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from cxhealth.tasks.breaker import Breaker
from cxhealth.tasks.health import TargetRun, handshake_stage
from cxhealth.tasks.targets import Target


@task(name="handshake-diagnostics", task_run_name="handshake-{target.name}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
async def handshake_diagnostics(target: Target, breaker: Breaker, run: TargetRun) -> bool:
    """Diagnose the TLS handshake of the first host the target contacts.

    Args:
        target: the target (secrets are referenced by name only).
        breaker: the shared breaker; an open breaker means no socket is opened.
        run: the target's report, filled in (``handshake``, ``breaker``, ``stage``).

    Returns:
        True when the handshake is healthy and the next stage may send credentials.

    Example:
        ``ok = await handshake_diagnostics(target, breaker, run)``
    """
    return await handshake_stage(target, breaker, run)
