"""Values of the history: observations, drift events, persistence, the policy.

Frozen values in, frozen values out (the engine's style): the store turns rows
into :class:`Observation` and back; :mod:`.drift` and :mod:`.persistence` are
pure functions over them with the clock passed in.

An observation never holds a secret: it is what any client of the host sees
(the negotiated version and cipher, public certificates' fingerprints, times).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds") if when is not None else None


class DriftCode(str, enum.Enum):
    """Contract §4 "Drift": what changed on a host since its recent healthy observations."""

    PROTOCOL_CHANGED = "protocol_changed"
    CIPHER_CHANGED = "cipher_changed"
    ISSUER_CHANGED = "issuer_changed"
    CERT_RENEWED = "cert_renewed"
    KEY_CHANGED = "key_changed"
    SPLIT_POOL = "split_pool"
    LATENCY_REGRESSION = "latency_regression"

    def __str__(self) -> str:
        return self.value


class PersistenceKind(str, enum.Enum):
    """Contract §4 "Persistence" of an unhealthy target."""

    TRANSIENT = "transient"
    INTERMITTENT = "intermittent"
    PERSISTENT = "persistent"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class HistoryPolicy:
    """The thresholds of drift and persistence, as a value (contract §4's numbers are the defaults).

    latency_recent: how many newest observations form the "recent" median.
    latency_baseline_min: how many healthy observations before them are needed at least.
    latency_baseline_max: how many of them at most (the recent past, not last month).
    latency_factor: recent median / baseline median that is a regression.
    latency_min_delta_ms: and by at least this much (a noise floor: on a fast path a
        few milliseconds of scheduling jitter would otherwise triple a 3 ms handshake).
    persistence_checks: how many of a target's last checks persistence is judged over.
    raw_window: per (target, host, port, address), how many newest observations are kept
        as they are; healthy ones older than that are merged into one row per UTC day
        with identical facts (see store.py: compaction).
    max_addresses: the most addresses of one host a check connects to.
    """

    latency_recent: int = 5
    latency_baseline_min: int = 5
    latency_baseline_max: int = 15
    latency_factor: float = 3.0
    latency_min_delta_ms: float = 50.0
    persistence_checks: int = 10
    raw_window: int = 50
    max_addresses: int = 8

    @property
    def lookback(self) -> int:
        """Rows per address the drift detector needs to see."""
        return self.latency_recent + self.latency_baseline_max + 1


@dataclass(frozen=True)
class Observation:
    """One TLS connection a check made (contract §4), failed ones included.

    ``at`` is the time of the *check* (every observation of one target's check
    shares it, so a check can be told from the next). ``chain`` holds the SHA-256
    fingerprints of the certificates the server sent, leaf first; ``root`` the
    name of the root the chain validated to (or ends at); ``not_after`` the
    earliest expiry in the chain. ``count``/``until``: a compacted row stands
    for ``count`` identical healthy observations from ``at`` to ``until``.
    """

    at: datetime
    target: str
    host: str
    port: int
    address: str | None = None
    proxy: str | None = None
    protocol: str | None = None
    cipher: str | None = None
    chain: tuple[str, ...] = ()
    root: str | None = None
    issuer: str | None = None
    not_after: datetime | None = None
    leaf_not_after: datetime | None = None
    leaf_key: str | None = None
    handshake_ms: float | None = None
    cause: str = "ok"
    stage: str = "handshake"
    count: int = 1
    until: datetime | None = None
    check_ok: bool | None = None   # the whole check's verdict (a token refused after a good handshake: False)

    @property
    def ok(self) -> bool:
        return self.cause == "ok"

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.target, self.host, self.port, self.address or "")

    @property
    def host_key(self) -> tuple[str, str, int]:
        return (self.target, self.host, self.port)

    @property
    def leaf(self) -> str | None:
        return self.chain[0] if self.chain else None

    @property
    def issuers(self) -> tuple[Any, ...]:
        """What names the CA side of the chain: the intermediates sent, the leaf's issuer, the root."""
        return (self.chain[1:], self.issuer, self.root)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "observation", "at": iso(self.at), "target": self.target, "host": self.host,
            "port": self.port, "address": self.address, "proxy": self.proxy, "protocol": self.protocol,
            "cipher": self.cipher, "chain": list(self.chain), "root": self.root, "issuer": self.issuer,
            "not_after": iso(self.not_after), "handshake_ms": self.handshake_ms, "cause": self.cause,
            "stage": self.stage,
        }
        if self.count > 1 or self.until is not None:
            out["count"] = self.count
            out["until"] = iso(self.until)
        return out


@dataclass(frozen=True)
class DriftEvent:
    """A change, reported once, on the check where it first appeared."""

    code: DriftCode
    target: str
    host: str
    port: int
    address: str | None
    from_: str | None
    to: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "drift", "code": str(self.code), "target": self.target, "host": self.host,
                "port": self.port, "address": self.address, "from": self.from_, "to": self.to,
                "at": iso(self.at)}


@dataclass(frozen=True)
class CheckOutcome:
    """One check of a target as persistence sees it.

    failed: some connection of the check failed. split: some addresses of a
    host failed while others of the same host did not.
    """

    at: datetime
    failed: bool
    split: bool = False


@dataclass(frozen=True)
class Persistence:
    kind: PersistenceKind
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"persistence": str(self.kind), "persistence_since": iso(self.since)}
