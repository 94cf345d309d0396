"""Prefect task: the OAuth token smoke test (the curl-equivalent token request).

The token it returns lives only in memory: ``cache_policy=NO_CACHE`` and
``persist_result=False`` keep Prefect from hashing or storing it (prefect-facts.md),
and ``AccessToken`` refuses to be pickled. Retries of 503/504/429 are tenacity's,
inside the check: no Prefect retries on top (never stack them).
"""

from __future__ import annotations

from typing import Mapping

from prefect import task
from prefect.cache_policies import NO_CACHE

from cxhealth.tasks.checks.oauth import AccessToken
from cxhealth.tasks.health import TargetRun, oauth_stage
from cxhealth.tasks.targets import Target


@task(name="oauth-token-smoke-test", task_run_name="oauth-{target.name}", cache_policy=NO_CACHE,
      persist_result=False, retries=0)
async def oauth_smoke_test(target: Target, run: TargetRun, env: Mapping[str, str] | None = None) -> AccessToken | None:
    """Request a token exactly as the integration does, over verified TLS.

    Args:
        target: the target; its profile decides the token URL and grant.
        run: the target's report, filled in (``oauth``, ``stage``).
        env: where secret values are looked up by name (default: the process environment).

    Returns:
        The token for :func:`tasks.endpoints.endpoint_checks`, or None when the test failed.
    """
    return await oauth_stage(target, run, env)
