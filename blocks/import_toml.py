"""Import a targets.toml into Prefect blocks.

    python -m cxhealth.blocks.import_toml targets.toml [--overwrite] [--keep-env-refs]

Every ``[[target]]`` becomes a *CxHealth Target* block named
:func:`cxhealth.blocks.block_name_for` of the target's name; the TLS keys of
``[defaults]`` become one *CxHealth TLS Policy* block (``--policy-name``) that
those targets reference; ``[slack]`` and ``[breaker]`` become the ``default``
*CxHealth Slack Settings* / *CxHealth Breaker Settings* blocks. The file is
validated by the same loader as ``cxhealth run`` first, and nothing is saved
unless every block can be.

Secrets: by default the environment variables the file names are read now and
stored encrypted in the blocks (``SecretStr``), so workers need no environment;
``--keep-env-refs`` stores the variable names instead. Values are never printed.

Exit status: 0 imported; 2 bad input (unreadable or invalid file, unset
variable, block exists without ``--overwrite``) with one line on stderr; 1 the
Prefect API failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ImportTomlError(ValueError):
    """Bad input for the import; one line."""


@dataclass
class ImportPlan:
    """The blocks an import will save, by (block class, name)."""

    policy: tuple[str, Any] | None = None
    targets: list[tuple[str, Any]] = field(default_factory=list)
    slack: tuple[str, Any] | None = None
    breaker: tuple[str, Any] | None = None

    def items(self) -> list[tuple[str, Any]]:
        out = [self.policy] if self.policy else []
        out += self.targets
        out += [x for x in (self.slack, self.breaker) if x]
        return out


def _env_value(var: str, where: str, environ: Mapping[str, str]) -> str:
    value = environ.get(var)
    if not value:
        raise ImportTomlError(f"{where}: environment variable {var} is {'empty' if var in environ else 'not set'}; "
                              f"export it to store the secret "
                              f"in the block, or pass --keep-env-refs to store the variable's name")
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def plan_import(path: str | os.PathLike[str], *, keep_env_refs: bool = False, policy_name: str = "defaults",
                settings_name: str = "default", environ: Mapping[str, str] | None = None) -> ImportPlan:
    """Validate the file and build (unsaved) blocks for it.

    Walks the models' fields (``TargetKeys``, ``SlackKeys``, ``BreakerSettings``),
    so a key added to targets.toml's models is imported with no change here.

    Raises:
        ImportTomlError: invalid file, unset secret variable, or two targets that
            would share a block name (one line).
    """
    from pydantic import SecretStr

    from cxhealth.blocks import CxBreakerSettings, CxSlackSettings, CxTarget, CxTLSPolicy, block_name_for
    from cxhealth.tasks.targets import (TLS_POLICY_KEYS, SlackKeys, TargetConfigError, TargetKeys, TLSPolicyKeys,
                                        load_targets)

    env = os.environ if environ is None else environ
    try:
        config = load_targets(path)
    except TargetConfigError as exc:
        raise ImportTomlError(str(exc)) from None
    p = Path(path).expanduser()
    raw = tomllib.loads(p.read_text(encoding="utf-8"))  # already validated by load_targets
    defaults = raw.get("defaults", {})
    raw_targets = {t["name"]: t for t in raw.get("target", [])}
    plan = ImportPlan()

    # [defaults]' TLS keys become one policy block (the same rules as every target's keys).
    tls_defaults = {k: defaults[k] for k in TLS_POLICY_KEYS if k in defaults}
    if isinstance(tls_defaults.get("ca_bundle"), str):
        tls_defaults["ca_bundle"] = str(Path(p.parent, Path(tls_defaults["ca_bundle"]).expanduser()))
    policy_values = {k: _plain(v) for k, v in TLSPolicyKeys.model_validate(tls_defaults)
                     if v is not None}
    if policy_values:
        plan.policy = (policy_name, CxTLSPolicy(**policy_values))

    names: dict[str, str] = {}
    secret_keys = ("name", "client_secret_env", "access_key_secret_env")
    for target in config.targets:
        block_name = block_name_for(target.name)
        if block_name in names:
            raise ImportTomlError(f"{p}: targets {names[block_name]!r} and {target.name!r} would both be block "
                               f"{block_name!r} (block names are lowercase letters, digits and dashes); rename one")
        names[block_name] = target.name
        where = f"{p}: target {target.name!r}"
        own = raw_targets[target.name]
        values: dict[str, Any] = {}
        if block_name != target.name:
            values["name"] = target.name
        for key in TargetKeys.model_fields:
            if key in secret_keys:
                continue
            if key in TLS_POLICY_KEYS and key not in own:
                continue  # the policy block (from [defaults]) or the Target default
            value = getattr(target, key)
            if value is not None and value != ():
                values[key] = _plain(value)
        if policy_values:
            values["tls_policy"] = policy_name
        if keep_env_refs:
            values["client_secret_env"] = target.client_secret_env
            if target.access_key_secret_env:
                values["access_key_secret_env"] = target.access_key_secret_env
        else:
            values["client_secret"] = SecretStr(_env_value(target.client_secret_env, where, env))
            if target.access_key_secret_env:
                values["access_key_secret"] = SecretStr(_env_value(target.access_key_secret_env, where, env))
        plan.targets.append((block_name, CxTarget(**values)))

    if config.slack is not None:
        s = config.slack
        values = {k: getattr(s, k) for k in SlackKeys.model_fields
                  if k in s.model_fields_set and k not in ("webhook_url_env", "bot_token_env")}
        where = f"{p}: [slack]"
        values["mode"] = s.mode
        if s.mode == "bot":
            if keep_env_refs:
                values["bot_token_env"] = s.bot_token_env
            else:
                values["bot_token"] = SecretStr(_env_value(s.bot_token_env or "", where, env))
        else:
            if keep_env_refs:
                values["webhook_url_env"] = s.webhook_url_env
            else:
                values["webhook_url"] = SecretStr(_env_value(s.webhook_url_env or "", where, env))
        plan.slack = (settings_name, CxSlackSettings(**values))

    if "breaker" in raw:
        plan.breaker = (settings_name, CxBreakerSettings(**config.breaker.model_dump()))
    return plan


async def save_plan(plan: ImportPlan, *, overwrite: bool = False) -> list[str]:
    """Save every block of *plan*; refuse (before saving anything) if one exists
    and *overwrite* is false. Returns ``type-slug/name`` of each saved block."""
    from cxhealth.blocks.loader import block_names

    if not overwrite:
        existing: list[str] = []
        for cls in {type(block) for _, block in plan.items()}:
            present = set(await block_names(cls))
            existing += [f"{cls.get_block_type_slug()}/{n}" for n, b in plan.items()
                         if type(b) is cls and n in present]
        if existing:
            raise ImportTomlError(f"block {sorted(existing)[0]} already exists"
                               f"{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}; "
                               f"pass --overwrite to replace")
    saved = []
    for name, block in plan.items():
        await block.asave(name, overwrite=overwrite)
        saved.append(f"{block.get_block_type_slug()}/{name}")
    return saved


def _describe(name: str, block: Any) -> str:
    kinds = []
    for key in ("client_secret", "access_key_secret", "webhook_url", "bot_token"):
        if getattr(block, key, None) is not None:
            kinds.append(f"{key}: encrypted in the block")
        elif getattr(block, f"{key}_env", None):
            kinds.append(f"{key}: env {getattr(block, f'{key}_env')}")
    return f"{block.get_block_type_slug()}/{name}" + (f" ({'; '.join(kinds)})" if kinds else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxhealth.blocks.import_toml",
                                     description="Import a cxhealth targets.toml into Prefect blocks.")
    parser.add_argument("targets_file", help="the targets.toml to import")
    parser.add_argument("--overwrite", action="store_true", help="replace blocks that already exist")
    parser.add_argument("--keep-env-refs", action="store_true",
                        help="store the environment variable names, not the secrets' values")
    parser.add_argument("--policy-name", default="defaults",
                        help="name of the TLS policy block made from [defaults] (default: defaults)")
    parser.add_argument("--settings-name", default="default",
                        help="name of the Slack and breaker settings blocks (default: default)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed one usage line; bad input is 2
        return 2 if exc.code else 0
    from cxhealth.blocks.base import BLOCK_NAME

    for option, value in (("--policy-name", args.policy_name), ("--settings-name", args.settings_name)):
        if not BLOCK_NAME.match(value):
            print(f"error: {option} {value!r}: block names are lowercase letters, digits and dashes",
                  file=sys.stderr)
            return 2
    try:
        plan = plan_import(args.targets_file, keep_env_refs=args.keep_env_refs, policy_name=args.policy_name,
                           settings_name=args.settings_name)
        saved = asyncio.run(save_plan(plan, overwrite=args.overwrite))
    except ImportTomlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the API being down is one line, not a traceback
        # Only the type and first line: a pydantic or HTTP error never carries a secret value
        # here (the blocks hide their input in errors), but keep it short anyway.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: saving blocks failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    for (name, block), _ in zip(plan.items(), saved):
        print(f"saved {_describe(name, block)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
