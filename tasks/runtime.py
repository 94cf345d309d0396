"""From a loaded configuration to the breaker a run checks under. Prefect-free;
used by `cxhealth run`, `cxhealth breaker`, `cxhealth metrics`, the demo and the flows.

The alerts build themselves from the same configuration (:mod:`cxhealth.tasks.alerts.run`);
nothing here reaches into them (tests/test_layout.py).

Errors are :class:`ConfigError` (one line); the CLI turns them into exit 2.
"""

from __future__ import annotations

from typing import Any

from cxhealth.tasks.targets import ConfigError  # the one root of configuration errors

__all__ = ["ConfigError", "breaker_for"]


def breaker_for(config: Any) -> Any:
    from cxhealth.tasks.breaker import BreakerConfig, open_breaker

    b = config.breaker
    try:
        return open_breaker(b.store, BreakerConfig(threshold=b.threshold, window_s=b.window_s, open_s=b.open_s,
                                                   max_open_s=b.max_open_s, lease_s=float(getattr(b, "lease_s", None) or 60.0)))
    except ValueError as exc:
        raise ConfigError(f"[breaker] {exc}") from None
