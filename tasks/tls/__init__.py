"""The TLS diagnosis engine: policy -> probe -> chain analysis -> classify.

Prefect-free by design (architecture.md): usable from the CLI, tests and any
orchestrator. The public entry points are :func:`diagnose` (async) and
:func:`diagnose_sync`.
"""

from .model import Cause, CertInfo, Diagnosis, Endpoint, Finding, WarningCode
from .policy import BASELINE_CIPHERS, PolicyError, TLSPolicy
from .engine import DiagnoseOptions, diagnose, diagnose_many, diagnose_sync

__all__ = [
    "BASELINE_CIPHERS", "Cause", "CertInfo", "Diagnosis", "DiagnoseOptions", "Endpoint",
    "Finding", "PolicyError", "TLSPolicy", "WarningCode", "diagnose", "diagnose_many",
    "diagnose_sync",
]
