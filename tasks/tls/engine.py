"""Run a diagnosis: a verified handshake first, then bounded extra probes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

from .model import Diagnosis, Endpoint
from .policy import TLSPolicy


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class DiagnoseOptions:
    """What a diagnosis checks beyond the policy (contract §1 options).

    reference_ca_bundle: PEM of an up-to-date public store; None = certifi's.
    expect_issuers: substrings one of which a chain CA's subject must contain.
    pins: ``sha256/BASE64`` SPKI pins; one chain cert must match one of them.
    aia: fetch missing intermediates from the AIA caIssuers URL.
    now: the clock, injected (validity windows, expiring-soon).
    """

    reference_ca_bundle: str | None = None
    expect_issuers: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()
    aia: bool = True
    expiring_soon_days: int = 14
    now: Callable[[], datetime] = field(default=_utcnow, compare=False)


async def diagnose(endpoint: Endpoint, policy: TLSPolicy = TLSPolicy(),
                   options: DiagnoseOptions = DiagnoseOptions()) -> Diagnosis:
    raise NotImplementedError


async def diagnose_many(endpoints: Sequence[Endpoint], policy: TLSPolicy = TLSPolicy(),
                        options: DiagnoseOptions = DiagnoseOptions(), concurrency: int = 100) -> list[Diagnosis]:
    raise NotImplementedError


def diagnose_sync(endpoint: Endpoint, policy: TLSPolicy = TLSPolicy(),
                  options: DiagnoseOptions = DiagnoseOptions()) -> Diagnosis:
    return asyncio.run(diagnose(endpoint, policy, options))
