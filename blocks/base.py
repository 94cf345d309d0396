"""What every cxhealth block shares: the schema cache, the error type, block names."""

from __future__ import annotations

import copy
import re
from typing import Any

from cxhealth.tasks.targets import TargetConfigError

# Name of the CxSlackSettings / CxBreakerSettings block used when none is named.
DEFAULT_SETTINGS_BLOCK = "default"

BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")  # Prefect: lowercase letters, numbers and dashes


class BlockConfigError(TargetConfigError):
    """Blocks that cannot be turned into a TargetsConfig; one actionable line.

    A :class:`TargetConfigError`, so callers that treat a bad targets file as bad
    input treat bad blocks the same way.
    """


def block_name_for(target_name: str) -> str:
    """The block name ``import_toml`` gives a target (Prefect block names are
    lowercase letters, digits and dashes; target names also allow ``.`` and ``_``)."""
    return re.sub(r"[^a-z0-9-]", "-", target_name.lower())


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class CachedSchema:
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
        cached = CachedSchema._schema_cache.get(key)
        if cached is None:
            cached = CachedSchema._schema_cache[key] = super().model_json_schema(*args, **kwargs)  # type: ignore[misc]
        return copy.deepcopy(cached)


def set_values(block: Any, keys: Any) -> dict[str, Any]:
    """The fields among *keys* this block sets (None: not set here)."""
    return {k: getattr(block, k) for k in keys if getattr(block, k) is not None}
