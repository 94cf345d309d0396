"""Prefect task: handshake diagnostics of a target's token host, under the breaker.

Thin wrapper over :func:`cxhealth.tasks.health.handshake_stage` (the engine stays
Prefect-free), for a team that composes its own flow; the integration-health
flow runs the whole check of a target in one task run (``check_target``).
Never retried: a TLS handshake failure is not transient (the guide's last trap).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from cxhealth.tasks.breaker import Breaker
from cxhealth.tasks.health import HandshakeResult, handshake_stage
from cxhealth.tasks.targets import Target


@task(name="handshake-diagnostics", task_run_name="handshake-{target.name}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
async def handshake_diagnostics(target: Target, breaker: Breaker) -> HandshakeResult:
    """Diagnose the TLS handshake of the first host the target contacts.

    Args:
        target: the target (secrets are referenced by name only).
        breaker: the shared breaker; an open breaker means no socket is opened.

    Returns:
        A frozen :class:`~cxhealth.tasks.health.HandshakeResult`; ``.ok`` when the
        next stage may send credentials.

    Example:
        ``hs = await handshake_diagnostics(target, breaker)``
    """
    return await handshake_stage(target, breaker)
