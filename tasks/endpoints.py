"""Prefect task: downstream endpoint checks with the token, per-connection TLS facts."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from cxhealth.tasks.breaker import Breaker
from cxhealth.tasks.checks.oauth import AccessToken
from cxhealth.tasks.health import EndpointsResult, endpoints_stage
from cxhealth.tasks.targets import Target


@task(name="endpoint-checks", task_run_name="endpoints-{target.name}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
async def endpoint_checks(target: Target, breaker: Breaker, token: AccessToken, client: Any = None) -> EndpointsResult:
    """GET each configured endpoint; record status, latency, TLS version and cipher.

    Args:
        target: the target.
        breaker: every endpoint host is admitted first; an open breaker skips its endpoints.
        token: ``.token`` of :func:`cxhealth.tasks.oauth.oauth_smoke_test`'s result.
        client: the token request's client (default: one built and closed here).

    Returns:
        A frozen :class:`~cxhealth.tasks.health.EndpointsResult`.
    """
    if client is not None:
        return await endpoints_stage(target, breaker, token, client)
    from cxhealth.tasks.checks.http import client_for

    async with client_for(target) as own:
        return await endpoints_stage(target, breaker, token, own)
