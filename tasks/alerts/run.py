"""The alerts of one run, from its configuration and its report (Prefect-free).

The last stage: it reads the validated ``[slack]`` table (:class:`SlackSettings`)
and the report's dictionaries (contract §2); nothing upstream imports it — the
checks never know the alerts exist (tests/test_layout.py). Used by `cxhealth run`
and by the flows' ``slack-alerts`` task (:mod:`cxhealth.tasks.alerting`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from cxhealth.tasks.targets import ConfigError

__all__ = ["alert_settings", "deliver_alerts", "local_alert_store_path", "open_run_alert_store"]


def alert_settings(config: Any, environ: Mapping[str, str] | None = None) -> Any | None:
    """The [slack] table as AlertSettings (None without one). Raises ConfigError."""
    if config.slack is None:
        return None
    from cxhealth.tasks.alerts import AlertConfigError, AlertSettings

    try:
        return AlertSettings.from_slack(config.slack, environ)
    except AlertConfigError as exc:
        raise ConfigError(str(exc)) from None


def local_alert_store_path(url: str) -> str:
    """The local fallback outbox of the alert store at ``url`` (this machine only)."""
    from cxhealth.tasks.breaker import redact_url
    from cxhealth.tasks.breaker.breaker import fallback_path

    return fallback_path(f"alerts:{redact_url(url)}")


def _merge_local_into(primary: Any, local: Any) -> None:
    """Move what waited in the local outbox while the store was down into the store:
    a target's doc and its queued entries (with their delivery bookkeeping), when the
    store has no open incident of its own for that target. The rest is drained from
    the local store as it is."""
    queued = local.outbox_head(10_000)
    for target in local.targets():
        doc = local.get_target(target)
        entries = [e for e in queued if e.get("target") == target]
        moved: list[bool] = []

        def merge(current: Any, doc: Any = doc, entries: list = entries, moved: list = moved) -> Any:
            moved[:] = []
            if current and current.get("open"):
                return current, []  # both opened an incident: keep them apart
            moved.append(True)
            return doc, [{k: v for k, v in e.items() if k not in ("attempts", "last_error", "meta")} for e in entries]

        primary.update_target(target, merge)
        if not moved:
            continue
        for e in entries:
            if e.get("meta"):
                primary.outbox_set_meta(e["id"], e["meta"])
            local.outbox_ack(e["id"])
        local.update_target(target, lambda current: (None, []))


def open_run_alert_store(config: Any) -> Any | None:
    """The alert store of the configuration's ``[breaker] store``, opened beforehand (the gate
    opens it while its checks run); None when it cannot be (:func:`deliver_alerts` then tries
    once more and falls back as it says)."""
    from cxhealth.tasks.alerts import open_alert_store

    try:
        return open_alert_store(config.breaker.store)
    except Exception:  # noqa: BLE001 - deliver_alerts opens it again and falls back
        return None


def deliver_alerts(config: Any, settings: Any, runs: Sequence[Mapping[str, Any]],
                   store: Any = None) -> dict[str, Any] | None:
    """Post what this run changed to Slack (incidents, resolves, breaker transitions).

    When the store cannot be used, the alerts go to a local SQLite outbox on this
    machine (contract §2: nothing is silently lost) and the report says so
    (``fallback``); once the store answers again, what waited there is moved into
    it (or, for a target that opened an incident there meanwhile, delivered from
    the local outbox) before this run's alerts.

    *store*: the alert store from :func:`open_run_alert_store`, already open (the gate
    opens it while its checks run); it stays open, its opener closes it. None: opened
    and closed here.
    """
    if settings is None:
        return None
    from cxhealth.tasks.alerts import Alerter, SqliteAlertStore, open_alert_store
    from cxhealth.tasks.alerts.alerter import AlertReport

    url = config.breaker.store
    local_path = local_alert_store_path(url)
    fallback: str | None = None
    decisions: list = []
    given = store
    try:
        if store is None:
            store = open_alert_store(url)
        if os.path.exists(local_path):
            local = SqliteAlertStore(local_path)
            try:
                _merge_local_into(store, local)
            finally:
                local.close()
        decisions = Alerter(settings, store).record(runs)
    except Exception as exc:  # noqa: BLE001 - the store is down: the local outbox takes the alerts
        if store is not None and store is not given:
            try:
                store.close()
            except Exception:  # noqa: BLE001
                pass
        fallback = (f"alert store unavailable ({type(exc).__name__}); alerts wait in the local outbox "
                    f"{local_path} (this machine only)")
        try:
            store = SqliteAlertStore(local_path)
            decisions = Alerter(settings, store).record(runs)
        except Exception as exc2:  # noqa: BLE001 - not even locally: say so, the verdict stands
            return {"errors": [f"alert store unavailable ({type(exc).__name__}), and the local outbox too "
                               f"({type(exc2).__name__})"], "fallback": fallback}
    try:
        flushed = Alerter(settings, store).flush()
    except Exception as exc:  # noqa: BLE001
        flushed = AlertReport(errors=(f"alert delivery failed ({type(exc).__name__})",))
    extra_sent: tuple = ()
    if fallback is None and os.path.exists(local_path):
        try:  # a local outbox left from an outage, with incidents the store has separately
            local = SqliteAlertStore(local_path)
            if local.outbox_size():
                extra_sent = Alerter(settings, local).flush().sent
            local.close()
        except Exception:  # noqa: BLE001 - tried again next run
            pass
    report = AlertReport.of(decisions, flushed, sent_before=extra_sent, fallback=fallback)
    if store is not given:
        try:
            store.close()
        except Exception:  # noqa: BLE001
            pass
    return report.to_dict()
