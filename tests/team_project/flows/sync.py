"""The team's WFM sync, gated on cxhealth: the README's example, as a team writes it."""

from prefect import flow

from cxhealth import IntegrationUnhealthy, health_gate

from flows.report import summarize
from tasks import load_rows


@flow(name="team-wfm-sync")
async def team_wfm_sync(targets: list[str], targets_file: str) -> str:
    try:
        await health_gate(targets=targets, targets_file=targets_file, alerts=False)
    except IntegrationUnhealthy as exc:
        return f"held: {exc.failures[0]['name']} {exc.failures[0]['cause']}"
    rows = load_rows([{"agent": "a1"}, {"agent": "a2"}])
    return summarize(rows)
