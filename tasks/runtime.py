"""From a loaded configuration to the things a run needs: the breaker, the
Slack settings, alert delivery. Prefect-free; used by `cxhealth run` and the flows.

Errors are :class:`ConfigError` (one line); the CLI turns them into exit 2.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


class ConfigError(ValueError):
    """A configuration that cannot be used (one actionable line)."""


def alert_settings(config: Any, environ: Mapping[str, str] | None = None) -> Any | None:
    """The [slack] table as AlertSettings (None without one). Raises ConfigError."""
    if config.slack is None:
        return None
    from cxhealth.tasks.alerts import AlertConfigError, AlertSettings

    try:
        return AlertSettings.from_slack(config.slack, environ)
    except AlertConfigError as exc:
        raise ConfigError(str(exc)) from None


def breaker_for(config: Any) -> Any:
    from cxhealth.tasks.breaker import BreakerConfig, open_breaker

    b = config.breaker
    try:
        return open_breaker(b.store, BreakerConfig(threshold=b.threshold, window_s=b.window_s, open_s=b.open_s,
                                                   max_open_s=b.max_open_s))
    except ValueError as exc:
        raise ConfigError(f"[breaker] {exc}") from None


def deliver_alerts(config: Any, settings: Any, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Post what this run changed to Slack (incidents, resolves, breaker transitions)."""
    if settings is None:
        return None
    from cxhealth.tasks.alerts import Alerter, open_alert_store

    try:
        store = open_alert_store(config.breaker.store)
    except Exception as exc:  # noqa: BLE001 - the health verdict stands without alerts
        return {"errors": [f"alert store unavailable ({type(exc).__name__})"]}
    # Each run carries its breaker transitions: they go to that target's incident.
    report = Alerter(settings, store).process(runs)
    return report.to_dict()
