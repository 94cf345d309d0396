"""A circuit breaker per host, shared by every process that shares its store.

Two handshake failures to a host within 60 s open its breaker; from then on
every caller is rejected without touching the network until the open time
passes, and then exactly one caller probes. See :mod:`.machine` for the rules
and issue 4 for the why. Prefect-free by design (architecture.md).

Example::

    breaker = open_breaker("sqlite:////tmp/x.sqlite3", BreakerConfig())
    decision = breaker.admit(host)
    if decision.admitted:
        ...  # handshake
        transition = breaker.record_failure(host, {"cause": "cert_expired"}, decision=decision)
"""

from .breaker import Breaker, normalize_host, open_breaker, sqlite_path
from .memory_store import MemoryStore
from .model import (
    DEFAULT_STORE_URL,
    BreakerConfig,
    BreakerState,
    BreakerStatus,
    Decision,
    Override,
    Transition,
    TransitionKind,
)
from .store import BreakerStore, StoreMisconfigured, StoreUnavailable
from .url import check_store_url, redact_url

__all__ = [
    "DEFAULT_STORE_URL", "Breaker", "BreakerConfig", "BreakerState", "BreakerStatus",
    "BreakerStore", "Decision", "MemoryStore", "Override", "StoreMisconfigured", "StoreUnavailable", "Transition",
    "TransitionKind", "check_store_url", "normalize_host", "open_breaker", "redact_url", "sqlite_path",
]
