"""``CxSlackSettings``: targets.toml's ``[slack]`` as a block.

Its plain fields are the :class:`~cxhealth.tasks.targets.SlackSettings` model's
keys (:data:`~cxhealth.tasks.targets.SlackKeys`, each optional: None means the
model's default); the block adds the mode and where the webhook URL or bot
token comes from. :meth:`CxSlackSettings.to_settings` is the factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

from pydantic import ConfigDict, Field, SecretStr, model_validator

from prefect.blocks.core import Block

from cxhealth.blocks.base import CachedSchema, set_values
from cxhealth.tasks.targets import SlackKeys, SlackSettings

if TYPE_CHECKING:
    from cxhealth.blocks.loader import BlockReader

_SOURCES = {"webhook": ("webhook_block", "webhook_url", "webhook_url_env"),
            "bot": ("credentials_block", "bot_token", "bot_token_env")}
_PLAIN_KEYS = tuple(k for k in SlackKeys.model_fields if k not in ("webhook_url_env", "bot_token_env"))


class CxSlackSettings(CachedSchema, Block, SlackKeys):  # type: ignore[misc, valid-type]
    """Where alerts go (targets.toml ``[slack]``).

    Webhook mode: one of ``webhook_block`` (a prefect-slack *Slack Incoming
    Webhook* block), ``webhook_url`` (encrypted) or ``webhook_url_env``.
    Bot mode: one of ``credentials_block`` (a prefect-slack *Slack Credentials*
    block), ``bot_token`` (encrypted) or ``bot_token_env``; and ``channel``.

    Example:
        ```python
        from cxhealth.blocks import CxSlackSettings

        slack = CxSlackSettings.load("BLOCK_NAME")
        ```
    """

    # A validation error must not echo the input: it holds the plain secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "CxHealth Slack Settings"
    _block_type_slug = "cxhealth-slack-settings"
    _description = "Slack alert settings for cxhealth (webhook or bot mode)."

    mode: Literal["webhook", "bot"] = Field(default="webhook", description="webhook or bot.")
    webhook_block: Optional[str] = Field(default=None, description="Name of a Slack Incoming Webhook block.")
    webhook_url: Optional[SecretStr] = Field(default=None, description="Incoming webhook URL (encrypted).")
    credentials_block: Optional[str] = Field(default=None, description="Name of a Slack Credentials block.")
    bot_token: Optional[SecretStr] = Field(default=None, description="Bot token xoxb-... (encrypted).")

    @model_validator(mode="after")
    def _one_source(self) -> "CxSlackSettings":
        other = "bot" if self.mode == "webhook" else "webhook"
        if self.mode == "bot" and not self.channel:
            raise ValueError("bot mode needs channel")
        given = [k for k in _SOURCES[self.mode] if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"{self.mode} mode: set exactly one of {', '.join(_SOURCES[self.mode])}")
        stray = [k for k in _SOURCES[other] if getattr(self, k) is not None]
        if self.mode == "webhook" and self.channel is not None:
            stray.append("channel")
        if stray:
            raise ValueError(f"{self.mode} mode: {', '.join(stray)} belong to the other mode")
        return self

    async def to_settings(self, block_name: str, reader: "BlockReader") -> SlackSettings:
        """The factory: the one :class:`SlackSettings` this block describes; a URL or
        token it holds (or a prefect-slack block it names holds) is kept in the
        reader's secrets under a synthetic name."""
        source = f"block {self.get_block_type_slug()}/{block_name}"
        values = set_values(self, _PLAIN_KEYS)
        key = "webhook_url_env" if self.mode == "webhook" else "bot_token_env"
        if getattr(self, key):
            values[key] = getattr(self, key)
        elif self.mode == "webhook":
            if self.webhook_block:
                from prefect_slack import SlackWebhook

                hook = await reader.load(SlackWebhook, self.webhook_block, what=f"webhook_block of {source}")
                value = hook.url.get_secret_value()
            else:
                value = self.webhook_url.get_secret_value()  # type: ignore[union-attr]
            values[key] = reader.hold("SLACK", block_name, "WEBHOOK_URL", value, what=source)
        else:
            if self.credentials_block:
                from prefect_slack import SlackCredentials

                creds = await reader.load(SlackCredentials, self.credentials_block,
                                          what=f"credentials_block of {source}")
                value = creds.token.get_secret_value()
            else:
                value = self.bot_token.get_secret_value()  # type: ignore[union-attr]
            values[key] = reader.hold("SLACK", block_name, "BOT_TOKEN", value, what=source)
        return SlackSettings.from_values(values, where=source)
