"""From a checked target's report to observations in the store, and back into the report.

One function, :func:`record_target_observations`, is called once per checked
target (by :func:`record_reports`, from ``cxhealth run`` and the flows alike). It
reads only the report's plain values (contract §2's JSON), so it never sees a
secret, and adds what the history knows to the target: ``drift`` (what first
appeared in this check) and, when unhealthy, ``persistence`` and
``persistence_since``. Recording never fails a check: a store error is a
warning in the report.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, MutableMapping, Sequence
from urllib.parse import urlsplit

from .model import CheckOutcome, HistoryPolicy, Observation, iso, utcnow
from .persistence import judge_persistence

Clock = Callable[[], datetime]


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return None


def chain_facts(chain: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What an observation keeps of a chain (contract §1 ``chain`` items): public facts only."""
    if not chain:
        return {}
    leaf, top = chain[0], chain[-1]
    not_afters = [t for t in (_time(c.get("not_after")) for c in chain) if t is not None]
    return {
        "chain": tuple(str(c.get("sha256") or "") for c in chain),
        "issuer": leaf.get("issuer"),
        # The root it validated to: the last certificate when it is a root, else the one it names.
        "root": top.get("subject") if top.get("self_issued") else top.get("issuer"),
        "not_after": min(not_afters) if not_afters else None,
        "leaf_not_after": _time(leaf.get("not_after")),
        "leaf_key": leaf.get("spki_pin"),
    }


def observation_from_diagnosis(d: Mapping[str, Any], *, at: datetime, target: str, stage: str,
                               host: str | None = None, port: int | None = None) -> Observation:
    """One observation from a diagnosis (contract §1 JSON) or a per-address entry of one."""
    where = d.get("target") or {}
    return Observation(
        at=at, target=target, host=str(host or where.get("host") or "").lower(), port=int(port or where.get("port") or 443),
        address=d.get("address", where.get("address")), proxy=where.get("proxy"),
        protocol=d.get("protocol"), cipher=d.get("cipher"), handshake_ms=d.get("handshake_ms"),
        cause=str(d.get("cause") or "ok"), stage=stage, **chain_facts(d.get("chain") or ()))


def observations_from_report(doc: Mapping[str, Any], at: datetime) -> list[Observation]:
    """Every TLS connection a target's check made: the token host (each address it
    connected to) and each other API host. A check the breaker turned away made none.

    *at* is the check's time (when it is recorded, to the microsecond: the report's
    ``started_at`` is to the second, and two checks may start within one)."""
    name = str(doc["name"])
    out: list[Observation] = []
    hs = doc.get("handshake")
    token_host: tuple[str, int] | None = None
    if isinstance(hs, Mapping) and hs:
        where = hs.get("target") or {}
        token_host = (str(where.get("host") or "").lower(), int(where.get("port") or 443))
        per_address = (hs.get("evidence") or {}).get("addresses") or []
        if per_address:
            for entry in per_address:
                out.append(observation_from_diagnosis({**entry, "target": where}, at=at, target=name,
                                                      stage="handshake", host=token_host[0], port=token_host[1]))
        else:
            out.append(observation_from_diagnosis(hs, at=at, target=name, stage="handshake"))
    seen: set[tuple[str, int]] = {token_host} if token_host else set()
    by_host: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for e in doc.get("endpoints") or []:
        if not isinstance(e, Mapping) or e.get("skipped") or e.get("cause") is None:
            continue
        parts = urlsplit(str(e.get("url") or ""))
        host = str(e.get("host") or parts.hostname or "").lower()
        try:
            port = parts.port or 443
        except ValueError:
            port = 443
        if host and (host, port) not in seen:
            by_host.setdefault((host, port), []).append(e)
    for (host, port), items in by_host.items():
        diagnosed = [e for e in items if isinstance(e.get("diagnosis"), Mapping) and e.get("diagnosis")]
        if diagnosed:
            out.append(observation_from_diagnosis(diagnosed[0]["diagnosis"], at=at, target=name, stage="endpoints",
                                                  host=host, port=port))
            continue
        # The request that opened the host's connection carries its handshake (``tls``); the others reused it.
        e = next((e for e in items if isinstance(e.get("tls"), Mapping)), items[0])
        tls = e.get("tls") if isinstance(e.get("tls"), Mapping) else {}
        out.append(Observation(at=at, target=name, host=host, port=port, proxy=e.get("proxy"),
                               address=tls.get("address"), protocol=e.get("protocol"), cipher=e.get("cipher"),
                               handshake_ms=tls.get("handshake_ms"), cause=str(e.get("cause") or "ok"),
                               stage="endpoints", **chain_facts(tls.get("chain") or ())))
    return out


def record_target_observations(doc: MutableMapping[str, Any], store: Any, clock: Clock = utcnow,
                               policy: HistoryPolicy = HistoryPolicy()) -> str | None:
    """Record one checked target and add ``drift`` (+ ``persistence``/``persistence_since``
    when unhealthy) to its report *doc*. Returns a warning text when the store failed."""
    doc["drift"] = []
    unhealthy = not doc.get("healthy", True)
    if unhealthy:
        doc["persistence"], doc["persistence_since"] = None, None
    at = clock()
    try:
        observations = [replace(o, check_ok=not unhealthy) for o in observations_from_report(doc, at)]
        events = store.record(observations, now=at) if observations else []
        doc["drift"] = [e.to_dict() for e in events]
        doc["trend"] = {"handshake_ms": [{"at": iso(when), "ms": ms} for when, ms in store.trend(str(doc["name"]))],
                        "changes": [e.to_dict() for e in store.drift_events(targets=[str(doc["name"])], limit=5)]}
        if unhealthy:
            checks, started = store.checks(str(doc["name"]), now=at)
            if not observations:  # turned away by the breaker: still a failed check
                checks = [CheckOutcome(at, failed=True), *checks]
            judged = judge_persistence(checks, streak_started=started, policy=policy)
            if judged is not None:
                doc["persistence"], doc["persistence_since"] = str(judged.kind), iso(judged.since)
    except Exception as exc:  # noqa: BLE001 - recording never fails a check
        from .store import HistoryError

        text = str(exc) if isinstance(exc, HistoryError) else f"{type(exc).__name__}: {str(exc)[:200]}"
        return f"history not recorded for {doc.get('name')}: {text}"
    return None


def _history_settings(config: Any) -> Any:
    settings = getattr(config, "history", None)
    if settings is None:
        from cxhealth.tasks.targets import HistorySettings

        settings = HistorySettings()
    return settings


def record_run(config: Any, docs: Sequence[MutableMapping[str, Any]], clock: Clock = utcnow,
               store: Any = None) -> list[dict[str, str]]:
    """:func:`record_reports` with a loaded configuration's ``[history]`` (the defaults without one).

    *store*: one :func:`open_run_history` opened beforehand (the gate opens it while its
    checks run, and records each target as soon as its check is done); the caller closes it.
    None: opened and closed here."""
    return record_reports(_history_settings(config), docs, clock, store=store)


def open_run_history(config: Any, policy: HistoryPolicy = HistoryPolicy()) -> Any | None:
    """The configuration's history store, opened and migrated; None when it cannot be
    (:func:`record_run` then tries once more and reports why)."""
    from .store import open_history_store

    settings = _history_settings(config)
    try:
        return open_history_store(settings.store, settings.retention_days, policy)
    except Exception:  # noqa: BLE001 - record_run says why, as a warning of the report
        return None


def record_reports(settings: Any, docs: Sequence[MutableMapping[str, Any]], clock: Clock = utcnow,
                   policy: HistoryPolicy = HistoryPolicy(), store: Any = None) -> list[dict[str, str]]:
    """Record every checked target of one run in the ``[history]`` store *settings* names
    (or in *store*, already open: it stays open, its opener closes it).

    Returns the report's warnings (``{code: "history_unavailable", message}``), empty when all went in.
    """
    from .store import open_history_store

    warnings: list[dict[str, str]] = []
    owned = store is None
    try:
        if owned:
            store = open_history_store(settings.store, settings.retention_days, policy)
    except Exception as exc:  # noqa: BLE001 - the checks' verdict stands without history
        for doc in docs:
            doc["drift"] = []
            if not doc.get("healthy", True):
                doc["persistence"], doc["persistence_since"] = None, None
        return [{"code": "history_unavailable", "message": f"history not recorded: {str(exc)[:300]}"}]
    try:
        for doc in docs:
            problem = record_target_observations(doc, store, clock, policy)
            if problem:
                warnings.append({"code": "history_unavailable", "message": problem[:400]})
    finally:
        if owned:
            try:
                store.close()
            except Exception:  # noqa: BLE001
                pass
    return warnings
