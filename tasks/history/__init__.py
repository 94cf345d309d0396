"""What the checks remember (contract §4): observations, drift, persistence, metrics.

Prefect-free (the engine's rule): the store, the pure drift and persistence
functions, and the recording step used by ``cxhealth run`` and the flows alike.
"""

from .drift import detect_drift
from .model import (CheckOutcome, DriftCode, DriftEvent, HistoryPolicy, Observation, Persistence,
                    PersistenceKind)
from .persistence import judge_persistence
from .publish import drift_event_specs, sparkline, trend_markdown
from .recording import (observations_from_report, open_run_history, record_reports, record_run,
                        record_target_observations)
from .store import DEFAULT_STORE, HistoryError, open_history_store

__all__ = [
    "CheckOutcome", "DEFAULT_STORE", "DriftCode", "DriftEvent", "HistoryError", "HistoryPolicy", "Observation",
    "Persistence", "PersistenceKind", "detect_drift", "judge_persistence", "observations_from_report",
    "drift_event_specs", "open_history_store", "open_run_history", "record_reports", "record_run",
    "record_target_observations", "sparkline", "trend_markdown",
]
