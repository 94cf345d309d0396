"""Secret values loaded from blocks, kept out of every configuration value.

A block may hold its secret encrypted (a ``SecretStr`` field) or name a Prefect
``Secret`` / prefect-slack block that does. The loader puts such a value in a
:class:`BlockSecrets` mapping under a synthetic variable name and gives the
``Target`` (or ``SlackSettings``) that *name*; the checks resolve it at use time
exactly as they resolve an environment variable.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping


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
