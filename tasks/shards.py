"""The sharding rule: which targets a run checks when a fleet splits them over runs.

A shard is ``"k/n"`` (1 <= k <= n <= 1000): the run checks the targets whose
*stable hash* modulo ``n`` is ``k - 1``. The hash is the first 8 bytes of
SHA-256 of the target's name (UTF-8), read big-endian — the same on every
machine, process and Python version (Python's ``hash()`` of a string is salted
per process, so it is never used). Hence:

* the shards ``1/n … n/n`` partition the targets: each target is in exactly one;
* a target stays in its shard when other targets are added or removed (only
  ``n`` moves it);
* an explicit ``targets`` list is sharded by the same rule (a name lands in the
  shard its hash picks, whether or not it is known).

Pure and Prefect-free: the flow, the CLI and a scheduler outside this package
can all compute it (deployments/FLEET.md, "Sharding").
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable, TypeVar

MAX_SHARDS = 1000  # no more shards than a targets.toml may hold targets

_SPEC = re.compile(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*")

T = TypeVar("T")


class ShardSpecError(ValueError):
    """A shard spec that is not ``k/n`` with 1 <= k <= n <= 1000 (one-line message)."""


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"2/4"`` -> ``(2, 4)``; ``None`` or ``""`` -> None (every target). Raises :class:`ShardSpecError`."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    m = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if not m:
        raise ShardSpecError(f"shard {spec!r}: expected 'k/n' (this run's shard k of n), e.g. '2/4'")
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= n <= MAX_SHARDS:
        raise ShardSpecError(f"shard {spec!r}: n must be between 1 and {MAX_SHARDS}")
    if not 1 <= k <= n:
        raise ShardSpecError(f"shard {spec!r}: k must be between 1 and n ({n}); shards are numbered from 1")
    return k, n


def shard_index(name: str, n: int) -> int:
    """The 0-based shard of a target name among ``n``: sha256(name)[:8] big-endian mod n."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % n


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    k, n = shard
    return shard_index(name, n) == k - 1


def select(items: Iterable[T], shard: tuple[int, int] | None, name=lambda t: t.name) -> list[T]:
    """The items (targets, or names with ``name=str``) that belong to ``shard``, in their order."""
    return [t for t in items if in_shard(name(t), shard)]
