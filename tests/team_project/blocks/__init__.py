"""The team's own blocks package."""

from prefect.blocks.core import Block


class TeamWarehouse(Block):
    dsn: str = "sqlite:///team.db"
