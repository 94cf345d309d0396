"""Prefect task: post what the run changed to Slack (incidents, resolves, breaker transitions)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(name="slack-alerts", cache_policy=NO_CACHE, persist_result=False, retries=0)
def send_alerts(config: Any, settings: Any, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Deliver alerts and drain the outbox; slack-sdk's 429 handler does the waiting.

    Returns the alert report (what was sent, queued, suppressed), never a secret.
    """
    from cxhealth.tasks.alerts.run import deliver_alerts

    return deliver_alerts(config, settings, runs)
