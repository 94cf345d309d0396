"""Prefect blocks for cxhealth: targets, TLS policies, Slack and breaker settings.

Register them once per Prefect server::

    prefect block register -m cxhealth.blocks

and fill them from a targets.toml with ``python -m cxhealth.blocks.import_toml``.

There is ONE model of "what to check": :class:`tasks.targets.Target` and
:class:`tasks.targets.TargetsConfig`. Blocks are only another way to store it;
:func:`aload_config_from_blocks` / :func:`load_config_from_blocks` turn blocks
into exactly those values (the same constructor validates them).

Secrets never enter a ``Target``. A target names its secret by an environment
variable (``client_secret_env``) and the checks resolve it at use time with
``target.client_secret(env)``. A block may hold its secret in three ways:

* a ``SecretStr`` field (stored encrypted by Prefect);
* the name of a Prefect ``Secret`` block;
* the name of an environment variable (as targets.toml does).

For the first two, the loader puts the value in a :class:`BlockSecrets` mapping
under a synthetic name (``CXHEALTH_BLOCK_TARGET_<BLOCK>_CLIENT_SECRET``) and gives the
``Target`` that *name*. So flow parameters, ``Target.to_dict()``, reprs, logs and
events only ever see names; the value leaves the mapping only when a check calls
``Secret.reveal()`` to put it on the wire.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
from typing import Any, Iterator, Literal, Mapping, Optional

from pydantic import ConfigDict, Field, SecretStr, model_validator

from prefect.blocks.core import Block

from cxhealth.tasks.targets import (
    BreakerSettings,
    SlackSettings,
    Target,
    TargetConfigError,
    TargetsConfig,
)

__all__ = [
    "CxTarget",
    "CxTLSPolicy",
    "CxSlackSettings",
    "CxBreakerSettings",
    "BlockConfigError",
    "BlockSecrets",
    "DEFAULT_SETTINGS_BLOCK",
    "aload_config_from_blocks",
    "load_config_from_blocks",
    "block_name_for",
    "synthetic_env_name",
]

# Name of the CxSlackSettings / CxBreakerSettings block used when none is named.
DEFAULT_SETTINGS_BLOCK = "default"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")  # Prefect: lowercase letters, numbers and dashes


class BlockConfigError(TargetConfigError):
    """Blocks that cannot be turned into a TargetsConfig; one actionable line.

    A :class:`TargetConfigError`, so callers that treat a bad targets file as bad
    input treat bad blocks the same way.
    """


def block_name_for(target_name: str) -> str:
    """The block name ``import_toml`` gives a target (Prefect block names are
    lowercase letters, digits and dashes; target names also allow ``.`` and ``_``)."""
    return re.sub(r"[^a-z0-9-]", "-", target_name.lower())


def synthetic_env_name(kind: str, block_name: str, secret: str) -> str:
    """``CXHEALTH_BLOCK_<KIND>_<BLOCK>_<SECRET>``: the name a block-held secret goes by.

    Block names are ``[a-z0-9-]+``, so upper-casing and ``-`` → ``_`` is one-to-one.
    """
    return f"CXHEALTH_BLOCK_{kind}_{block_name.upper().replace('-', '_')}_{secret}".upper()


class BlockSecrets(Mapping[str, str]):
    """Secret values loaded from blocks, by synthetic variable name; falls back to
    the process environment at lookup time (for blocks that name a variable).

    Pass it as ``env`` to ``Target.client_secret(env)`` /
    ``Target.access_key_secret(env)`` and to the Slack settings. Its repr shows
    names only, and it refuses to be pickled (so a Prefect result or a process
    pool cannot write it anywhere). Never pass it as a flow parameter.
    """

    __slots__ = ("_values", "_fallback")

    def __init__(self, values: Mapping[str, str] | None = None,
                 fallback: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        self._fallback = os.environ if fallback is None else fallback

    @property
    def block_names(self) -> tuple[str, ...]:
        """The synthetic names this mapping holds values for (not the environment's)."""
        return tuple(self._values)

    def __getitem__(self, key: str) -> str:
        if key in self._values:
            return self._values[key]
        return self._fallback[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._values
        for key in self._fallback:
            if key not in self._values:
                yield key

    def __len__(self) -> int:
        return len(self._values) + sum(1 for k in self._fallback if k not in self._values)

    def __repr__(self) -> str:
        return f"BlockSecrets({', '.join(f'{k}=***' for k in self._values)})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("BlockSecrets is not picklable: load the blocks where the secrets are used")


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------

class _CachedSchema:
    """Mixin: compute a block's JSON schema once per class.

    Prefect 3.9's ``Block._field_has_secrets`` regenerates the whole schema once
    per field on every save and dump (measured: ~0.8 s to save a CxTarget, nearly
    all of it in ``model_json_schema``). The schema depends only on the class and
    the arguments, so a copy of a cached one is the same value. Not a Block
    itself, so ``prefect block register -m cxhealth.blocks`` does not register it.
    """

    _schema_cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        cached = _CachedSchema._schema_cache.get(key)
        if cached is None:
            cached = _CachedSchema._schema_cache[key] = super().model_json_schema(*args, **kwargs)  # type: ignore[misc]
        return copy.deepcopy(cached)


class CxTLSPolicy(_CachedSchema, Block):
    """A client TLS policy shared by several targets (what ``[defaults]`` does in
    targets.toml). A target's own non-empty value wins over the policy's."""

    _block_type_name = "CxHealth TLS Policy"
    _block_type_slug = "cxhealth-tls-policy"
    _description = "Client TLS policy (versions, ciphers, trust store, pins) shared by cxhealth targets."

    tls_min: Optional[str] = Field(default=None, description='Lowest TLS version, e.g. "1.2"')
    tls_max: Optional[str] = Field(default=None, description='Highest TLS version, e.g. "1.3"')
    ciphers: Optional[str] = Field(default=None, description="OpenSSL TLS 1.2 cipher string (default: baseline)")
    ca_bundle: Optional[str] = Field(default=None, description="PEM trust store path on the worker")
    timeout: Optional[float] = Field(default=None, description="Seconds per network step")
    pins: Optional[list[str]] = Field(default=None, description="SPKI pins, sha256/BASE64")
    expect_issuers: Optional[list[str]] = Field(default=None, description="Expected CA subject substrings")

    def values(self) -> dict[str, Any]:
        """The keys this policy sets (None fields are left out)."""
        return {k: v for k, v in _policy_fields(self).items() if v is not None}


_POLICY_KEYS = ("tls_min", "tls_max", "ciphers", "ca_bundle", "timeout", "pins", "expect_issuers")


def _policy_fields(block: Block) -> dict[str, Any]:
    return {k: getattr(block, k) for k in _POLICY_KEYS}


class CxTarget(_CachedSchema, Block):
    """One integration to check: every key of a ``[[target]]`` in targets.toml.

    The client secret (and, for the password grant, the access key secret) is
    given in exactly one way: ``client_secret`` (stored encrypted),
    ``client_secret_block`` (the name of a Prefect ``Secret`` block) or
    ``client_secret_env`` (an environment variable on the worker).
    """

    # A validation error must not echo the input: it holds the plain secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "CxHealth Target"
    _block_type_slug = "cxhealth-target"
    _description = "A contact-center API integration checked by cxhealth (targets.toml [[target]])."

    name: Optional[str] = Field(
        default=None, description="Target name in alerts and breaker keys (default: this block's name)")
    platform: Literal["genesys", "nice", "generic"] = Field(default=..., description="genesys | nice | generic")
    client_id: str = Field(default=..., description="OAuth client id")
    client_secret: Optional[SecretStr] = Field(default=None, description="OAuth client secret (encrypted)")
    client_secret_block: Optional[str] = Field(
        default=None, description="Or: name of a Prefect Secret block holding the client secret")
    client_secret_env: Optional[str] = Field(
        default=None, description="Or: environment variable holding the client secret on the worker")
    region: Optional[str] = None
    api_base: Optional[str] = None
    token_url: Optional[str] = None
    issuer: Optional[str] = None
    tenant_id: Optional[str] = None
    grant: Optional[Literal["client_credentials", "password"]] = None
    access_key_id: Optional[str] = None
    access_key_secret: Optional[SecretStr] = Field(default=None, description="NICE access key secret (encrypted)")
    access_key_secret_block: Optional[str] = Field(
        default=None, description="Or: name of a Prefect Secret block holding the access key secret")
    access_key_secret_env: Optional[str] = Field(
        default=None, description="Or: environment variable holding the access key secret")
    endpoints: Optional[list[str]] = Field(default=None, description="Paths or https URLs (default: platform's)")
    resolve: Optional[list[str]] = Field(default=None, description="host:port:addr overrides")
    sni: Optional[str] = None
    client_cert: Optional[str] = None
    client_key: Optional[str] = None
    tls_policy: Optional[str] = Field(
        default=None, description="Name of a CxHealth TLS Policy block; this block's own TLS keys win")
    tls_min: Optional[str] = None
    tls_max: Optional[str] = None
    ciphers: Optional[str] = None
    ca_bundle: Optional[str] = None
    timeout: Optional[float] = None
    pins: Optional[list[str]] = None
    expect_issuers: Optional[list[str]] = None

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> "CxTarget":
        _check_secret_sources(self, "client_secret", required=True)
        _check_secret_sources(self, "access_key_secret", required=False)
        return self


def _check_secret_sources(block: Block, key: str, *, required: bool) -> None:
    given = [s for s in (key, f"{key}_block", f"{key}_env") if getattr(block, s) is not None]
    if len(given) > 1:
        raise ValueError(f"{key}: set only one of {key}, {key}_block, {key}_env (got {', '.join(given)})")
    if required and not given:
        raise ValueError(f"{key}: set one of {key} (encrypted), {key}_block (a Secret block) or {key}_env")
    env = getattr(block, f"{key}_env")
    if env is not None and not _ENV_NAME.match(env):
        raise ValueError(f"{key}_env: must be an environment variable name like MY_SECRET")


class CxSlackSettings(_CachedSchema, Block):
    """Where alerts go (targets.toml ``[slack]``).

    Webhook mode: one of ``webhook_block`` (a prefect-slack *Slack Incoming
    Webhook* block), ``webhook_url`` (encrypted) or ``webhook_url_env``.
    Bot mode: one of ``credentials_block`` (a prefect-slack *Slack Credentials*
    block), ``bot_token`` (encrypted) or ``bot_token_env``; and ``channel``.
    """

    # A validation error must not echo the input: it holds the plain secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "CxHealth Slack Settings"
    _block_type_slug = "cxhealth-slack-settings"
    _description = "Slack alert settings for cxhealth (webhook or bot mode)."

    mode: Literal["webhook", "bot"] = "webhook"
    webhook_block: Optional[str] = Field(default=None, description="Name of a Slack Incoming Webhook block")
    webhook_url: Optional[SecretStr] = Field(default=None, description="Incoming webhook URL (encrypted)")
    webhook_url_env: Optional[str] = None
    credentials_block: Optional[str] = Field(default=None, description="Name of a Slack Credentials block")
    bot_token: Optional[SecretStr] = Field(default=None, description="Bot token xoxb-… (encrypted)")
    bot_token_env: Optional[str] = None
    channel: Optional[str] = Field(default=None, description="Channel id or name (bot mode)")
    api_base: Optional[str] = Field(default=None, description="Slack Web API base URL (tests, proxies)")
    repeat_interval_s: Optional[float] = None
    timeout: Optional[float] = None

    @model_validator(mode="after")
    def _one_source(self) -> "CxSlackSettings":
        if self.mode == "webhook":
            sources = {"webhook_block": self.webhook_block, "webhook_url": self.webhook_url,
                       "webhook_url_env": self.webhook_url_env}
            unused = ("credentials_block", "bot_token", "bot_token_env", "channel")
        else:
            sources = {"credentials_block": self.credentials_block, "bot_token": self.bot_token,
                       "bot_token_env": self.bot_token_env}
            unused = ("webhook_block", "webhook_url", "webhook_url_env")
            if not self.channel:
                raise ValueError("bot mode needs channel")
        given = [k for k, v in sources.items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"{self.mode} mode: set exactly one of {', '.join(sources)}")
        stray = [k for k in unused if getattr(self, k) is not None and k != "channel"]
        if stray:
            raise ValueError(f"{self.mode} mode: {', '.join(stray)} belong to the other mode")
        for key in ("webhook_url_env", "bot_token_env"):
            value = getattr(self, key)
            if value is not None and not _ENV_NAME.match(value):
                raise ValueError(f"{key}: must be an environment variable name like SLACK_WEBHOOK_URL")
        if self.api_base is not None and not self.api_base.startswith(("http://", "https://")):
            raise ValueError("api_base: must be an http(s) URL")
        return self


class CxBreakerSettings(_CachedSchema, Block):
    """The shared circuit breaker (targets.toml ``[breaker]``); defaults as the contract."""

    _block_type_name = "CxHealth Breaker Settings"
    _block_type_slug = "cxhealth-breaker-settings"
    _description = "Circuit breaker settings and shared store URL for cxhealth."

    threshold: int = Field(default=2, ge=1, description="Handshake failures that open the breaker")
    window_s: float = Field(default=60.0, gt=0, description="...within this many seconds")
    open_s: float = Field(default=30.0, gt=0, description="First open time; doubles per consecutive trip")
    max_open_s: float = Field(default=300.0, gt=0)
    store: str = Field(default="sqlite:///~/.cxhealth/breaker.sqlite3",
                       description="sqlite:///path or redis://host:port/db (shared by every worker)")

    @model_validator(mode="after")
    def _check(self) -> "CxBreakerSettings":
        from cxhealth.tasks.breaker.url import check_store_url

        check_store_url(self.store)  # ValueError: one line, the password redacted
        if self.max_open_s < self.open_s:
            raise ValueError(f"max_open_s: must be >= open_s ({self.open_s})")
        return self

    def to_settings(self) -> BreakerSettings:
        return BreakerSettings(threshold=self.threshold, window_s=float(self.window_s), open_s=float(self.open_s),
                               max_open_s=float(self.max_open_s), store=self.store)


# ---------------------------------------------------------------------------
# Blocks -> TargetsConfig
# ---------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _BlockReader:
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
            raise BlockConfigError(f"block {block_cls.get_block_type_slug()}/{name}: {_first_line(exc)}") from None

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

    async def secret_env(self, block: Block, key: str, *, block_name: str, label: str, what: str) -> str | None:
        """The variable name a Target should use for *key* (``client_secret`` or
        ``access_key_secret``); a value held by the block (or by a Secret block it
        names) is kept under a synthetic name."""
        from prefect.blocks.system import Secret

        inline: SecretStr | None = getattr(block, key)
        ref: str | None = getattr(block, f"{key}_block")
        env: str | None = getattr(block, f"{key}_env")
        if env is not None:
            return env
        if inline is not None:
            value = inline.get_secret_value()
        elif ref is not None:
            secret = await self.load(Secret, ref, what=f"{key}_block of {what}")
            # Not Secret.get(): it json-decodes strings, turning a numeric secret into an int.
            value = secret.value.get_secret_value()
            if not isinstance(value, str):
                raise BlockConfigError(f"Secret block {ref!r} ({key}_block of {what}) must hold a string")
        else:
            return None
        return self.hold("TARGET", block_name, label, value, what=what)

    async def target(self, block: CxTarget, block_name: str) -> Target:
        source = f"block {CxTarget.get_block_type_slug()}/{block_name}"
        kwargs: dict[str, Any] = {}
        if block.tls_policy:
            policy = await self.load(CxTLSPolicy, block.tls_policy, what=f"tls_policy of {source}")
            kwargs.update(policy.values())
        for key in ("region", "api_base", "token_url", "issuer", "tenant_id", "grant", "access_key_id", "sni",
                    "client_cert", "client_key", "endpoints", "resolve", *_POLICY_KEYS):
            value = getattr(block, key)
            if value is not None:
                kwargs[key] = value  # the target's own value wins over its policy's
        for key in ("endpoints", "resolve", "pins", "expect_issuers"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        kwargs["client_secret_env"] = await self.secret_env(
            block, "client_secret", block_name=block_name, label="CLIENT_SECRET", what=source)
        access_env = await self.secret_env(
            block, "access_key_secret", block_name=block_name, label="ACCESS_KEY_SECRET", what=source)
        if access_env is not None:
            kwargs["access_key_secret_env"] = access_env
        return Target(name=block.name or block_name, platform=block.platform, client_id=block.client_id,
                      source=source, **kwargs)

    async def slack(self, block: CxSlackSettings, block_name: str) -> SlackSettings:
        source = f"block {CxSlackSettings.get_block_type_slug()}/{block_name}"
        extra: dict[str, Any] = {}
        if block.api_base is not None:
            extra["api_base"] = block.api_base
        if block.repeat_interval_s is not None:
            extra["repeat_interval_s"] = float(block.repeat_interval_s)
        if block.timeout is not None:
            extra["timeout"] = float(block.timeout)
        if block.mode == "webhook":
            if block.webhook_url_env:
                return SlackSettings(webhook_url_env=block.webhook_url_env, **extra)
            if block.webhook_block:
                from prefect_slack import SlackWebhook

                hook = await self.load(SlackWebhook, block.webhook_block, what=f"webhook_block of {source}")
                value = hook.url.get_secret_value()
            else:
                value = block.webhook_url.get_secret_value()  # type: ignore[union-attr]
            name = self.hold("SLACK", block_name, "WEBHOOK_URL", value, what=source)
            return SlackSettings(webhook_url_env=name, **extra)
        if block.bot_token_env:
            return SlackSettings(bot_token_env=block.bot_token_env, channel=block.channel, **extra)
        if block.credentials_block:
            from prefect_slack import SlackCredentials

            creds = await self.load(SlackCredentials, block.credentials_block, what=f"credentials_block of {source}")
            value = creds.token.get_secret_value()
        else:
            value = block.bot_token.get_secret_value()  # type: ignore[union-attr]
        name = self.hold("SLACK", block_name, "BOT_TOKEN", value, what=source)
        return SlackSettings(bot_token_env=name, channel=block.channel, **extra)


async def _block_names(block_cls: type[Block]) -> list[str]:
    """Names of every saved document of this block type (for import_toml)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await _BlockReader(client).names(block_cls)


async def aload_config_from_blocks(
    names: list[str] | None = None,
    *,
    slack: str | None = None,
    breaker: str | None = None,
) -> tuple[TargetsConfig, BlockSecrets]:
    """Build the run's configuration from Prefect blocks (async; use it in async flows).

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
        reader = _BlockReader(client)
        if names is None:
            block_names = await reader.names(CxTarget)
            if not block_names:
                raise BlockConfigError("no CxHealth Target blocks on this Prefect server; create them in the UI "
                                       "or with python -m cxhealth.blocks.import_toml targets.toml")
            wanted: list[tuple[str, str | None]] = [(n, None) for n in block_names]
        else:
            wanted = [(n if _BLOCK_NAME.match(n) else block_name_for(n), n) for n in names]
        blocks = await asyncio.gather(*(
            reader.load(CxTarget, b, what="" if asked in (None, b) else f"for target {asked!r}")
            for b, asked in wanted))
        targets = []
        for (block_name, asked), block in zip(wanted, blocks):
            target = await reader.target(block, block_name)
            if asked is not None and asked not in (block_name, target.name):
                raise BlockConfigError(f"no CxHealth Target block for target {asked!r} (block {block_name!r} "
                                       f"is target {target.name!r})")
            targets.append(target)
        seen: set[str] = set()
        for t in targets:
            if t.name in seen:
                raise BlockConfigError(f"target {t.name!r}: name: used by two CxHealth Target blocks")
            seen.add(t.name)
        slack_block = await reader.optional_settings(CxSlackSettings, slack, what="slack settings")
        slack_settings = None
        if slack_block is not None:
            slack_settings = await reader.slack(slack_block, slack or DEFAULT_SETTINGS_BLOCK)
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
