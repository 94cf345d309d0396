"""An example gated WFM sync: the health gate, then schedules into SQLite in one transaction.

What a data team writes: call :func:`cxhealth.health_gate` first, for the targets
the sync depends on, so the sync never starts against an unhealthy integration;
when it holds the sync, end in the gate's named state (``Cancelled(name="Held")``,
its message: which targets, why, when the breaker lets a probe through) instead
of crashing with a traceback; the gate's report is an artifact of this run.
Then fetch and write. Nothing is written when the gate fails or the fetch breaks
midway: all pages are fetched before one transaction replaces the week's rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cxhealth.flows.integration_health import IntegrationUnhealthy, health_gate, label_flow_run, load_config
from cxhealth.tasks.checks.endpoints import endpoint_url
from cxhealth.tasks.checks.http import client_for
from cxhealth.tasks.checks.oauth import check_token

SCHEDULES = "/api/v2/workforcemanagement/businessunits/{bu}/weeks/{week}/schedules"


class SyncFetchError(RuntimeError):
    """The schedules could not be fetched completely: nothing was written."""


@task(name="fetch-wfm-schedules", cache_policy=NO_CACHE, persist_result=False, retries=0)
async def fetch_schedules(target: Any, env: Any, business_unit: str, week: str, page_size: int = 2) -> list[dict]:
    """Every page of the week's schedules, or an error (a partial fetch is never returned)."""
    async with client_for(target) as client:
        token_check = await check_token(target, client=client, env=env)
        if token_check.token is None:
            raise SyncFetchError(f"token request failed: {token_check.result.error or token_check.result.status}")
        headers = {"Authorization": token_check.token.authorization()}
        base = target.profile().api_base or ""
        url = endpoint_url(base, SCHEDULES.format(bu=business_unit, week=week))
        rows: list[dict] = []
        page, pages = 1, 1
        while page <= pages:
            response = await client.get(url, headers=headers, params={"pageNumber": page, "pageSize": page_size})
            if response.status_code != 200:
                raise SyncFetchError(f"page {page} of {pages}: HTTP {response.status_code}; nothing was written")
            body = response.json()
            rows.extend(body.get("entities") or [])
            pages = int(body.get("pageCount") or 1)
            page += 1
        return rows


@task(name="write-wfm-schedules", cache_policy=NO_CACHE, persist_result=False, retries=0)
def write_schedules(db_path: str, business_unit: str, week: str, rows: list[dict]) -> int:
    """Replace the week's rows in one transaction."""
    Path(db_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(Path(db_path).expanduser()) as db:  # commits on success, rolls back on error
        db.execute("""CREATE TABLE IF NOT EXISTS schedules (business_unit TEXT, week TEXT, user_id TEXT,
                      date TEXT, activity TEXT, start_time TEXT, length_minutes INTEGER)""")
        db.execute("DELETE FROM schedules WHERE business_unit = ? AND week = ?", (business_unit, week))
        db.executemany("INSERT INTO schedules VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(business_unit, week, r.get("userId"), r.get("date"), r.get("activity"),
                         r.get("startTime"), r.get("lengthMinutes")) for r in rows])
    return len(rows)


def _sync_run_name() -> str:
    from prefect.runtime import flow_run

    names = (flow_run.parameters or {}).get("targets")
    return "wfm-sync " + (", ".join(names) if names else "all targets")


@flow(name="gated-wfm-sync", flow_run_name=_sync_run_name,
      description="Health gate, then the week's WFM schedules into SQLite in one transaction.")
async def gated_wfm_sync(targets: list[str] | None = None, targets_file: str | None = None,
                         db_path: str = "~/.cxhealth/wfm.sqlite3", business_unit: str = "bu-lab-1",
                         week: str = "2024-05-06") -> Any:
    """Gate, fetch, write. Returns the number of rows written.

    Args:
        targets: the targets this sync depends on (the gate checks only these; the
            deployment names them). The first one is the platform the sync reads.

    Ends ``Cancelled(name="Held")`` when the gate holds it (nothing fetched or written).

    Raises:
        SyncFetchError: the fetch broke; nothing was written.
    """
    logger = get_run_logger()
    try:
        await health_gate(targets=targets, targets_file=targets_file)
    except IntegrationUnhealthy as exc:
        logger.warning("%s", exc.held().message)
        await label_flow_run(None, ["held"] + [f"held-by:{f['name']}" for f in exc.failures])
        return exc.held()
    config, selected, env = await load_config(targets_file, targets)
    rows = await fetch_schedules(selected[0], env, business_unit, week)
    count = write_schedules(db_path, business_unit, week, rows)
    logger.info("wrote %d schedule rows for %s week %s", count, business_unit, week)
    return count
