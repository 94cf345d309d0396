"""Prefect task: the OAuth token smoke test (the curl-equivalent token request).

The token it returns lives only in memory: ``cache_policy=NO_CACHE`` and
``persist_result=False`` keep Prefect from hashing or storing it (prefect-facts.md),
and ``AccessToken`` refuses to be pickled. Retries of 503/504/429 are tenacity's,
inside the check: no Prefect retries on top (never stack them).
"""

from __future__ import annotations

from typing import Any, Mapping

from prefect import task
from prefect.cache_policies import NO_CACHE

from cxhealth.tasks.health import TokenResult, token_stage
from cxhealth.tasks.targets import Target


@task(name="oauth-token-smoke-test", task_run_name="oauth-{target.name}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
async def oauth_smoke_test(target: Target, env: Mapping[str, str] | None = None, client: Any = None) -> TokenResult:
    """Request a token exactly as the integration does, over verified TLS.

    Args:
        target: the target; its profile decides the token URL and grant.
        env: where secret values are looked up by name (default: the process environment).
        client: an HTTP client from ``client_for(target)`` to share with the endpoint checks
            (default: one built and closed for this request).

    Returns:
        A frozen :class:`~cxhealth.tasks.health.TokenResult`; ``.token`` for
        :func:`cxhealth.tasks.endpoints.endpoint_checks` when ``.ok``.
    """
    if client is not None:
        return await token_stage(target, client, env)
    from cxhealth.tasks.checks.http import client_for

    async with client_for(target) as own:
        return await token_stage(target, own, env)
