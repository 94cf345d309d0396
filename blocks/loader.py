"""Prefect blocks → the run's :class:`~cxhealth.tasks.targets.TargetsConfig`.

One API client for every block a configuration needs; each block's factory
method (``to_target``, ``to_settings``) builds the one model it stands for, so
a configuration from blocks is the same value as one from targets.toml.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect.blocks.core import Block

from cxhealth.blocks.base import DEFAULT_SETTINGS_BLOCK, BLOCK_NAME, BlockConfigError, block_name_for, first_line
from cxhealth.blocks.breaker import CxBreakerSettings
from cxhealth.blocks.secrets import BlockSecrets, synthetic_env_name
from cxhealth.blocks.slack import CxSlackSettings
from cxhealth.blocks.target import CxTarget
from cxhealth.tasks.targets import BreakerSettings, TargetConfigError, TargetsConfig


class BlockReader:
    """One API client for every block a configuration needs, and the secret
    values found on the way (by synthetic name)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.values: dict[str, str] = {}

    async def load(self, block_cls: type[Block], name: str, *, what: str = "") -> Any:
        """``block_cls.aload(name)`` with a one-line error naming a missing block."""
        try:
            return await block_cls.aload(name, client=self.client)
        except ValueError as exc:
            if "Unable to find block document" in str(exc) or "not found" in str(exc).lower():
                raise BlockConfigError(
                    f"no {block_cls.get_block_type_name()} block named {name!r}{f' ({what})' if what else ''}; "
                    f"create it in the UI or with python -m cxhealth.blocks.import_toml") from None
            raise BlockConfigError(f"block {block_cls.get_block_type_slug()}/{name}: {first_line(exc)}") from None

    async def names(self, block_cls: type[Block]) -> list[str]:
        """Names of every saved document of this block type ([] when the type is unknown)."""
        from prefect.exceptions import ObjectNotFound

        try:
            docs = await self.client.read_block_documents_by_type(block_cls.get_block_type_slug(),
                                                                  include_secrets=False)
        except ObjectNotFound:
            return []
        except Exception as exc:  # an unregistered type: the API's 404 as an HTTP status error
            if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                return []
            raise
        return sorted(d.name for d in docs if d.name and not d.is_anonymous)

    async def optional_settings(self, block_cls: type[Block], name: str | None, *, what: str) -> Any | None:
        """The named block (must exist), or the ``default`` one if it exists, or None."""
        if name is not None:
            return await self.load(block_cls, name, what=what)
        if DEFAULT_SETTINGS_BLOCK in await self.names(block_cls):
            return await self.load(block_cls, DEFAULT_SETTINGS_BLOCK, what=what)
        return None

    def hold(self, kind: str, block_name: str, label: str, value: str, *, what: str) -> str:
        """Keep a block-held secret under its synthetic name; return the name."""
        if not value:
            raise BlockConfigError(f"{what}: the {label.lower().replace('_', ' ')} is empty")
        name = synthetic_env_name(kind, block_name, label)
        self.values[name] = value
        return name


async def block_names(block_cls: type[Block]) -> list[str]:
    """Names of every saved document of this block type (for import_toml)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await BlockReader(client).names(block_cls)


async def aload_config_from_blocks(
    names: list[str] | None = None,
    *,
    slack: str | None = None,
    breaker: str | None = None,
    errors: dict[str, str] | None = None,
) -> tuple[TargetsConfig, BlockSecrets]:
    """Build the run's configuration from Prefect blocks (async; use it in async flows).

    With *errors* (a dict to fill), one target block that is missing or invalid
    does not stop the others: its error goes into ``errors[target name]`` (an
    unknown name's error lists the CxHealth Target blocks there are) and the
    returned config holds the targets that loaded. The flows pass it, so such a
    target is reported unhealthy with its error while the rest are checked.

    Args:
        names: target names or ``CxHealth Target`` block names; ``None`` means
            every ``CxHealth Target`` block. A name may be a block name, or a
            target name whose block is :func:`block_name_for` of it.
        slack: the ``CxHealth Slack Settings`` block to use; ``None`` means the
            block named ``default`` if there is one, else no Slack.
        breaker: the ``CxHealth Breaker Settings`` block; ``None`` means
            ``default`` if there is one, else the contract's defaults.

    Returns:
        ``(config, env)``: ``config`` holds only names (safe to log and to pass
        around); ``env`` is a :class:`BlockSecrets` to pass to
        ``target.client_secret(env)``, ``target.access_key_secret(env)`` and the
        alert settings. Keep ``env`` in memory: never a parameter, log or result.

    Raises:
        BlockConfigError: a named block is missing (the message names it), no
            target blocks exist, or a block's values are invalid.
    """
    if names is not None and not names:
        raise BlockConfigError("no target names given (pass None for every CxHealth Target block)")
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        reader = BlockReader(client)
        if names is None:
            found = await reader.names(CxTarget)
            if not found:
                raise BlockConfigError("no CxHealth Target blocks on this Prefect server; create them in the UI "
                                       "or with python -m cxhealth.blocks.import_toml targets.toml")
            wanted: list[tuple[str, str | None]] = [(n, None) for n in found]
        else:
            wanted = [(n if BLOCK_NAME.match(n) else block_name_for(n), n) for n in names]
        async def one(block_name: str, asked: str | None) -> Any:
            block = await reader.load(CxTarget, block_name, what="" if asked in (None, block_name)
                                      else f"for target {asked!r}")
            target = await block.to_target(block_name, reader)
            if asked is not None and asked not in (block_name, target.name):
                raise BlockConfigError(f"no CxHealth Target block for target {asked!r} (block {block_name!r} "
                                       f"is target {target.name!r})")
            return target

        loaded = await asyncio.gather(*(one(b, asked) for b, asked in wanted), return_exceptions=errors is not None)
        targets = []
        known: list[str] | None = None
        for (block_name, asked), target in zip(wanted, loaded):
            if isinstance(target, BaseException):
                if not isinstance(target, (BlockConfigError, TargetConfigError, ValueError)) or errors is None:
                    raise target
                message = f"prefect blocks: {first_line(target)}"
                if asked is not None and "no " in message and " block named " in message:
                    known = known if known is not None else await reader.names(CxTarget)
                    message += f" (CxHealth Target blocks: {', '.join(known) or 'none'})"
                errors[asked or block_name] = message
                continue
            targets.append(target)
        seen: set[str] = set()
        for t in targets:
            if t.name in seen:
                raise BlockConfigError(f"target {t.name!r}: name: used by two CxHealth Target blocks")
            seen.add(t.name)
        slack_block = await reader.optional_settings(CxSlackSettings, slack, what="slack settings")
        slack_settings = None
        if slack_block is not None:
            slack_settings = await slack_block.to_settings(slack or DEFAULT_SETTINGS_BLOCK, reader)
        breaker_block = await reader.optional_settings(CxBreakerSettings, breaker, what="breaker settings")
    breaker_settings = breaker_block.to_settings() if breaker_block is not None else BreakerSettings()
    config = TargetsConfig(targets=tuple(targets), slack=slack_settings, breaker=breaker_settings,
                           source="prefect blocks")
    return config, BlockSecrets(reader.values)


def load_config_from_blocks(
    names: list[str] | None = None,
    *,
    slack: str | None = None,
    breaker: str | None = None,
) -> tuple[TargetsConfig, BlockSecrets]:
    """Synchronous :func:`aload_config_from_blocks` (for scripts, the CLI and sync
    flows; in an async flow ``await aload_config_from_blocks(...)`` instead)."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(aload_config_from_blocks(names, slack=slack, breaker=breaker))
