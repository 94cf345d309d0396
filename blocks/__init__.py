"""Prefect blocks for cxhealth: targets, TLS policies, Slack and breaker settings.

Register them once per Prefect server::

    prefect block register -m cxhealth.blocks

and fill them from a targets.toml with ``python -m cxhealth.blocks.import_toml``.

There is ONE model per table of targets.toml, in :mod:`cxhealth.tasks.targets`
(``Target``, ``SlackSettings``, ``BreakerSettings``). Blocks are only another
place to store those values: each block's fields *are* its model's keys (a
subclass of the model, or of its all-optional twin ``TargetKeys`` /
``TLSPolicyKeys`` / ``SlackKeys``), with the same rules, plus where a secret
comes from; each has one factory method that builds the model's value.
:func:`aload_config_from_blocks` / :func:`load_config_from_blocks` call them and
return the same :class:`TargetsConfig` the TOML loader does.

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

Modules: ``target`` (CxTarget, CxTLSPolicy), ``slack`` (CxSlackSettings),
``breaker`` (CxBreakerSettings), ``secrets`` (BlockSecrets), ``loader``
(blocks → TargetsConfig), ``import_toml`` (targets.toml → blocks).
"""

from __future__ import annotations

from cxhealth.blocks.base import DEFAULT_SETTINGS_BLOCK, BlockConfigError, block_name_for
from cxhealth.blocks.breaker import CxBreakerSettings
from cxhealth.blocks.loader import aload_config_from_blocks, load_config_from_blocks
from cxhealth.blocks.secrets import BlockSecrets, synthetic_env_name
from cxhealth.blocks.slack import CxSlackSettings
from cxhealth.blocks.target import CxTarget, CxTLSPolicy

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
