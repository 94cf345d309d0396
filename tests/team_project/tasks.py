"""The team's own tasks module (same top-level name as cxhealth's repository folder ``tasks/``)."""

from prefect import task


@task
def load_rows(rows: list[dict]) -> int:
    return len(rows)


TEAM_MARKER = "team-tasks"
