"""cxhealth: integration health for cloud contact-center APIs, as Prefect tasks and flows.

The public API — what a team's own flow imports, stable across minor versions::

    from cxhealth import health_gate, IntegrationUnhealthy

    @flow
    async def my_wfm_sync():
        await health_gate(targets=["genesys-prod"])   # raises IntegrationUnhealthy: the sync never starts
        ...

Flows: :func:`integration_health` (the full report, Completed/Failed) and
:func:`health_gate` (returns when healthy, raises :class:`IntegrationUnhealthy`; inside a
flow it checks in that flow's run), :func:`health_gate_flow` (the same gate as a flow run
of its own: a subflow where a team wants one).
Engine: :func:`diagnose` (async; one TLS endpoint, one :class:`Diagnosis`),
:func:`diagnose_sync`, :class:`Endpoint`, :class:`TLSPolicy`, :class:`DiagnoseOptions`,
:class:`Cause`. Configuration: :func:`load_targets`, :class:`Target`,
:class:`TargetsConfig`. Blocks: :class:`CxTarget`, :class:`CxTLSPolicy`,
:class:`CxSlackSettings`, :class:`CxBreakerSettings` (``prefect block register -m cxhealth.blocks``).

Names are imported on first use (PEP 562), so ``import cxhealth`` and the
``cxhealth diagnose`` command stay light: only the flows and the blocks import Prefect.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "integration_health": "cxhealth.flows.integration_health",
    "health_gate": "cxhealth.flows.integration_health",
    "health_gate_flow": "cxhealth.flows.integration_health",
    "IntegrationUnhealthy": "cxhealth.flows.integration_health",
    "diagnose": "cxhealth.tasks.tls",
    "diagnose_sync": "cxhealth.tasks.tls",
    "diagnose_many": "cxhealth.tasks.tls",
    "Diagnosis": "cxhealth.tasks.tls",
    "DiagnoseOptions": "cxhealth.tasks.tls",
    "Endpoint": "cxhealth.tasks.tls",
    "TLSPolicy": "cxhealth.tasks.tls",
    "Cause": "cxhealth.tasks.tls",
    "load_targets": "cxhealth.tasks.targets",
    "Target": "cxhealth.tasks.targets",
    "TargetsConfig": "cxhealth.tasks.targets",
    "TargetConfigError": "cxhealth.tasks.targets",
    "CxTarget": "cxhealth.blocks",
    "CxTLSPolicy": "cxhealth.blocks",
    "CxSlackSettings": "cxhealth.blocks",
    "CxBreakerSettings": "cxhealth.blocks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cxhealth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
