"""``CxTarget`` and ``CxTLSPolicy``: a ``[[target]]`` and ``[defaults]``' TLS keys as blocks.

Their plain fields are the :class:`~cxhealth.tasks.targets.Target` model's keys
(:data:`~cxhealth.tasks.targets.TargetKeys`, each optional: None means "not set
here"), with the same rules; a ``CxTarget`` adds only where its secrets come
from and which policy it shares. :meth:`CxTarget.to_target` is the factory: it
builds the one ``Target`` (whose constructor checks the keys together).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import ConfigDict, Field, SecretStr, model_validator

from prefect.blocks.core import Block

from cxhealth.blocks.base import BlockConfigError, CachedSchema, set_values
from cxhealth.tasks import rules
from cxhealth.tasks.targets import TLS_POLICY_KEYS, Target, TargetKeys, TLSPolicyKeys

if TYPE_CHECKING:
    from cxhealth.blocks.loader import BlockReader

# The keys a CxTarget takes from its own fields (name and the secrets are handled apart).
_SECRET_ENV_KEYS = ("client_secret_env", "access_key_secret_env")
_OWN_KEYS = tuple(k for k in TargetKeys.model_fields if k not in ("name", *_SECRET_ENV_KEYS))


class CxTLSPolicy(CachedSchema, Block, TLSPolicyKeys):  # type: ignore[misc, valid-type]
    """A client TLS policy shared by several targets (what ``[defaults]`` does in
    targets.toml). A target's own non-empty value wins over the policy's.

    Example:
        ```python
        from cxhealth.blocks import CxTLSPolicy

        policy = CxTLSPolicy.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "CxHealth TLS Policy"
    _block_type_slug = "cxhealth-tls-policy"
    _description = "Client TLS policy (versions, ciphers, trust store, pins) shared by cxhealth targets."

    def values(self) -> dict[str, Any]:
        """The keys this policy sets (None fields are left out)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in set_values(self, TLS_POLICY_KEYS).items()}


class CxTarget(CachedSchema, Block, TargetKeys):  # type: ignore[misc, valid-type]
    """One integration to check: every key of a ``[[target]]`` in targets.toml.

    The client secret (and, for the password grant, the access key secret) is
    given in exactly one way: ``client_secret`` (stored encrypted),
    ``client_secret_block`` (the name of a Prefect ``Secret`` block) or
    ``client_secret_env`` (an environment variable on the worker).

    Example:
        ```python
        from cxhealth.blocks import CxTarget

        target_block = CxTarget.load("BLOCK_NAME")
        ```
    """

    # A validation error must not echo the input: it holds the plain secret.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "CxHealth Target"
    _block_type_slug = "cxhealth-target"
    _description = "A contact-center API integration checked by cxhealth (targets.toml [[target]])."

    name: Optional[str] = Field(
        default=None, description="Target name in alerts and breaker keys (default: this block's name).")
    platform: Literal["genesys", "nice", "generic"] = Field(default=..., description="genesys, nice or generic.")
    client_id: str = Field(default=..., description="The OAuth client id.")
    client_secret: Optional[SecretStr] = Field(default=None, description="The OAuth client secret (encrypted).")
    client_secret_block: Optional[str] = Field(
        default=None, description="Or: name of a Prefect Secret block holding the client secret.")
    access_key_secret: Optional[SecretStr] = Field(
        default=None, description="NICE: the access key secret (encrypted).")
    access_key_secret_block: Optional[str] = Field(
        default=None, description="Or: name of a Prefect Secret block holding the access key secret.")
    tls_policy: Optional[str] = Field(
        default=None, description="Name of a CxHealth TLS Policy block; this block's own TLS keys win.")

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> "CxTarget":
        for key, required in (("client_secret", True), ("access_key_secret", False)):
            given = [s for s in (key, f"{key}_block", f"{key}_env") if getattr(self, s) is not None]
            if len(given) > 1:
                raise ValueError(f"{key}: set only one of {key}, {key}_block, {key}_env (got {', '.join(given)})")
            if required and not given:
                raise ValueError(f"{key}: set one of {key} (encrypted), {key}_block (a Secret block) or {key}_env")
        return self

    async def to_target(self, block_name: str, reader: "BlockReader") -> Target:
        """The factory: the one :class:`Target` this block (and its policy) describes.

        A secret held by the block, or by a Secret block it names, goes into the
        reader's :class:`~cxhealth.blocks.secrets.BlockSecrets` under a synthetic
        name, and the Target gets that name.
        """
        source = f"block {self.get_block_type_slug()}/{block_name}"
        values: dict[str, Any] = {}
        if self.tls_policy:
            policy = await reader.load(CxTLSPolicy, self.tls_policy, what=f"tls_policy of {source}")
            values.update(policy.values())
        values.update(set_values(self, _OWN_KEYS))  # the target's own value wins over its policy's
        values["name"] = self.name or block_name
        for key, label in (("client_secret", "CLIENT_SECRET"), ("access_key_secret", "ACCESS_KEY_SECRET")):
            env = await self._secret_env(key, reader, block_name=block_name, label=label, what=source)
            if env is not None:
                values[f"{key}_env"] = env
        return Target.from_values(values, where=source)

    async def _secret_env(self, key: str, reader: "BlockReader", *, block_name: str, label: str,
                          what: str) -> str | None:
        from prefect.blocks.system import Secret

        inline: SecretStr | None = getattr(self, key)
        ref: str | None = getattr(self, f"{key}_block")
        env: str | None = getattr(self, f"{key}_env")
        if env is not None:
            return rules.env_name(env)
        if inline is not None:
            value = inline.get_secret_value()
        elif ref is not None:
            secret = await reader.load(Secret, ref, what=f"{key}_block of {what}")
            # Not Secret.get(): it json-decodes strings, turning a numeric secret into an int.
            value = secret.value.get_secret_value()
            if not isinstance(value, str):
                raise BlockConfigError(f"Secret block {ref!r} ({key}_block of {what}) must hold a string")
        else:
            return None
        return reader.hold("TARGET", block_name, label, value, what=what)
