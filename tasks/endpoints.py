"""Prefect task: downstream endpoint checks with the token, per-connection TLS facts."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from cxhealth.tasks.breaker import Breaker
from cxhealth.tasks.checks.oauth import AccessToken
from cxhealth.tasks.health import TargetRun, endpoints_stage
from cxhealth.tasks.targets import Target


@task(name="endpoint-checks", task_run_name="endpoints-{target.name}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
async def endpoint_checks(target: Target, breaker: Breaker, run: TargetRun, token: AccessToken) -> None:
    """GET each configured endpoint; record status, latency, TLS version and cipher.

    Args:
        target: the target.
        breaker: every endpoint host is admitted first; an open breaker skips the stage.
        run: the target's report, filled in (``endpoints``, ``stage``).
        token: from :func:`tasks.oauth.oauth_smoke_test`.
    """
    await endpoints_stage(target, breaker, run, token)
