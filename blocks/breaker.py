"""``CxBreakerSettings``: targets.toml's ``[breaker]`` as a block.

It *is* the :class:`~cxhealth.tasks.targets.BreakerSettings` model (a subclass:
the same keys, defaults and rules), made a block; :meth:`to_settings` is the factory.
"""

from __future__ import annotations

from pydantic import ConfigDict

from prefect.blocks.core import Block

from cxhealth.blocks.base import CachedSchema
from cxhealth.tasks.targets import BreakerSettings


class CxBreakerSettings(CachedSchema, Block, BreakerSettings):
    """The shared circuit breaker (targets.toml ``[breaker]``); defaults as the contract.

    Example:
        ```python
        from cxhealth.blocks import CxBreakerSettings

        breaker = CxBreakerSettings.load("BLOCK_NAME")
        ```
    """

    # A block is edited and saved: not frozen like the settings value it makes.
    model_config = ConfigDict(frozen=False, extra="allow")

    _block_type_name = "CxHealth Breaker Settings"
    _block_type_slug = "cxhealth-breaker-settings"
    _description = "Circuit breaker settings and shared store URL for cxhealth."

    def to_settings(self) -> BreakerSettings:
        """The factory: the plain, frozen :class:`BreakerSettings` value."""
        return BreakerSettings(**self.model_dump(include=set(BreakerSettings.model_fields)))
