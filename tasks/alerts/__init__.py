"""Slack alerts for cxhealth: payloads, incidents, outbox, delivery (Prefect-free).

Public API::

    from cxhealth.tasks.alerts import AlertSettings, Alerter, open_alert_store
    report = Alerter(AlertSettings.from_config(slack_table), open_alert_store(store_url)).process(
        results, transitions)
"""

from __future__ import annotations

from cxhealth.tasks.alerts.alerter import Alerter, AlertReport
from cxhealth.tasks.alerts.delivery import DeliveryOutcome, classify_slack_error
from cxhealth.tasks.alerts.incidents import Decision, IncidentPlanner
from cxhealth.tasks.alerts.payload import (
    SlackMessage,
    build_breaker_message,
    build_incident_message,
    derive_cause,
)
from cxhealth.tasks.alerts.settings import AlertConfigError, AlertSettings, Secret
from cxhealth.tasks.alerts.store import (
    AlertStore,
    AlertStoreError,
    MemoryAlertStore,
    RedisAlertStore,
    SqliteAlertStore,
    open_alert_store,
)

__all__ = [
    "AlertConfigError", "AlertReport", "AlertSettings", "AlertStore", "AlertStoreError", "Alerter",
    "Decision", "DeliveryOutcome", "IncidentPlanner", "MemoryAlertStore", "RedisAlertStore", "Secret",
    "SlackMessage", "SqliteAlertStore", "build_breaker_message", "build_incident_message",
    "classify_slack_error", "derive_cause", "open_alert_store",
]
