"""Values of the circuit breaker: its policy, its states, and what it answers.

Everything here is a frozen value (style.md): a :class:`Decision` tells one
caller whether it may touch the network, a :class:`Transition` is handed to
exactly one caller so that exactly one alert (or one resolve) is sent per
incident, and a :class:`BreakerStatus` is a read-only snapshot for reports.
Times cross this boundary as timezone-aware UTC datetimes; inside the stores
they are epoch seconds (floats).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

#: The store used when ``[breaker] store`` is not set (contract §2).
DEFAULT_STORE_URL = "sqlite:///~/.cxhealth/breaker.sqlite3"


class BreakerState(str, enum.Enum):
    """The three states of a per-host breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    #: reported only: the store's record of the host cannot be read (never stored)
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class Override(str, enum.Enum):
    """Operator overrides, orthogonal to the state machine.

    ``FORCED_OPEN`` is the kill switch: every caller is rejected, with no reopen
    time, until the override is cleared. ``DISABLED`` switches the breaker off
    for a host: every caller is admitted and failures are not counted.
    """

    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


class TransitionKind(str, enum.Enum):
    OPENED = "opened"      # CLOSED -> OPEN: the incident starts (one alert)
    REOPENED = "reopened"  # HALF_OPEN -> OPEN: the probe failed (next backoff)
    CLOSED = "closed"      # HALF_OPEN -> CLOSED: the probe succeeded (one resolve)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BreakerConfig:
    """The breaker's policy: contract §2 ``[breaker]`` plus the probe lease.

    ``window_s`` is a sliding window over exact failure timestamps: a failure
    counts while ``now - t <= window_s``. The n-th consecutive trip opens the
    breaker for ``min(open_s * 2**(n-1), max_open_s)`` seconds. ``lease_s`` is
    how long the half-open probe (or a cold-start caller's slot) may take
    before another caller may take its place (the prober may have died); it
    should exceed one whole check's worst case (``cxhealth run`` derives it from
    the targets' timeouts). ``wait_poll_s``: how often a caller told to wait
    asks again.
    """

    threshold: int = 2
    window_s: float = 60.0
    open_s: float = 30.0
    max_open_s: float = 300.0
    lease_s: float = 60.0
    wait_poll_s: float = 0.1

    def __post_init__(self) -> None:
        if int(self.threshold) != self.threshold or self.threshold < 1:
            raise ValueError(f"breaker threshold must be an integer >= 1, got {self.threshold!r}")
        for name in ("window_s", "open_s", "max_open_s", "lease_s", "wait_poll_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"breaker {name} must be a number > 0, got {value!r}")
        if self.max_open_s < self.open_s:
            raise ValueError(
                f"breaker max_open_s ({self.max_open_s}) must be >= open_s ({self.open_s})"
            )

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> BreakerConfig:
        """Build from a targets.toml ``[breaker]`` table (``store`` is ignored here)."""
        known = {"threshold", "window_s", "open_s", "max_open_s", "lease_s"}
        unknown = set(table) - known - {"store"}
        if unknown:
            raise ValueError(f"unknown [breaker] key(s): {', '.join(sorted(unknown))}")
        return cls(**{k: table[k] for k in known if k in table})

    def open_duration(self, trips: int) -> float:
        """How long the ``trips``-th consecutive trip keeps the breaker open."""
        exponent = min(max(trips, 1) - 1, 60)  # 2**60 * open_s is past any cap
        return min(self.open_s * (2.0 ** exponent), self.max_open_s)


def to_datetime(epoch: float | None) -> datetime | None:
    """Epoch seconds -> aware UTC datetime (None stays None)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def normalize_summary(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The summary exactly as a store keeps it: round-tripped through JSON."""
    if summary is None:
        return None
    return json.loads(encode_summary(summary))


def encode_summary(summary: Mapping[str, Any]) -> str:
    # default=str: a stray datetime or enum in a diagnosis summary must not
    # make the breaker lose a failure.
    return json.dumps(dict(summary), default=str, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Decision:
    """The answer to ``admit(host)``: may this caller touch the network?

    ``is_probe``/``lease``: this caller holds the half-open lease; only its
    ``record_success``/``record_failure`` decides the half-open breaker.
    ``epoch`` is the breaker's incident counter when the caller was admitted, so
    a result reported after the breaker opened and closed again is ignored.
    ``fallback`` is not None when the configured store was unreachable and a
    fallback answered instead (the reason, for reports and logs).
    ``wait``: not admitted *yet* — the host has no recent success and as many
    checks are in flight as failures are still allowed; ask again (the
    :class:`~.breaker.Breaker` does, until ``reopen_at`` at the latest).
    ``note_success``: a success of this caller should be recorded (it frees a
    cold-start slot, or the store's last success is getting old).
    """

    host: str
    admitted: bool
    state: BreakerState
    reopen_at: datetime | None = None
    is_probe: bool = False
    lease: str | None = None
    last_failure: dict[str, Any] | None = None
    fallback: str | None = None
    override: Override | None = None
    override_reason: str | None = None
    epoch: int | None = None
    store: str = ""
    wait: bool = False
    note_success: bool = False

    @property
    def is_rejected(self) -> bool:
        return not self.admitted


@dataclass(frozen=True)
class Transition:
    """A state change, returned to exactly one caller (the one who caused it).

    ``summary`` is the failure summary that opened (or reopened) the breaker;
    for ``closed`` it is the summary of the incident being resolved.
    """

    kind: TransitionKind
    host: str
    at: datetime
    reopen_at: datetime | None
    summary: dict[str, Any] | None
    trips: int = 0
    fallback: str | None = None


@dataclass(frozen=True)
class BreakerStatus:
    """A read-only snapshot of one host's breaker.

    ``state`` is what callers experience (a forced-open host is OPEN, a disabled
    one CLOSED); ``underlying_state`` is the state machine's own state.
    """

    host: str
    state: BreakerState
    underlying_state: BreakerState
    failures_in_window: int
    reopen_at: datetime | None
    trips: int
    override: Override | None
    override_reason: str | None = None
    last_failure: dict[str, Any] | None = None
    probe_lease_expires_at: datetime | None = None
    epoch: int = 0
    fallback: str | None = None
    store: str = ""
