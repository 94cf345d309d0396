"""Drift: what changed on a host, as a pure function over observations.

``detect_drift(check, earlier, policy)`` compares the observations of one new
check with the earlier observations of the same hosts (the store hands over the
last ``policy.lookback`` rows of each address and the latest healthy one) and
returns each change *once*: a change is compared with the latest healthy
observation before it, so on the next check the new value is the baseline and
nothing is reported again. Latency and split pools, which are conditions over
several observations, are reported when the condition becomes true (it was not
true one observation earlier).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Iterable, Sequence

from .model import DriftCode, DriftEvent, HistoryPolicy, Observation


def _short(fingerprint: str | None) -> str:
    return (fingerprint or "?")[:16]


def _issuer_text(o: Observation) -> str:
    ca = o.chain[1] if len(o.chain) > 1 else None
    name = o.issuer or o.root or "unknown issuer"
    return f"{name} ({_short(ca)})" if ca else name


def _date(o: Observation) -> str:
    return o.leaf_not_after.date().isoformat() if o.leaf_not_after else "?"


def _newest_first(rows: Iterable[Observation]) -> list[Observation]:
    return sorted(rows, key=lambda o: o.at, reverse=True)


def _baseline(o: Observation, key_rows: Sequence[Observation], host_rows: Sequence[Observation]) -> Observation | None:
    """The latest healthy observation before *o* of its address, else of its host (a new address)."""
    for rows in (key_rows, host_rows):
        for e in rows:
            if e.ok and e.at < o.at:
                return e
    return None


def _changes(o: Observation, base: Observation) -> list[DriftEvent]:
    out: list[DriftEvent] = []

    def event(code: DriftCode, from_: str | None, to: str | None) -> None:
        out.append(DriftEvent(code, o.target, o.host, o.port, o.address, from_, to, o.at))

    if o.protocol and base.protocol and o.protocol != base.protocol:
        event(DriftCode.PROTOCOL_CHANGED, base.protocol, o.protocol)
    elif o.cipher and base.cipher and o.cipher != base.cipher:
        # A new version brings new suites: the cipher is news only within one version.
        event(DriftCode.CIPHER_CHANGED, base.cipher, o.cipher)
    if o.chain and base.chain:
        if o.issuers != base.issuers:
            event(DriftCode.ISSUER_CHANGED, _issuer_text(base), _issuer_text(o))
        elif o.leaf != base.leaf:
            later = (o.leaf_not_after is not None and base.leaf_not_after is not None
                     and o.leaf_not_after > base.leaf_not_after)
            if later:
                event(DriftCode.CERT_RENEWED, f"{_short(base.leaf)} until {_date(base)}",
                      f"{_short(o.leaf)} until {_date(o)}")
            elif o.leaf_key != base.leaf_key:
                event(DriftCode.KEY_CHANGED, base.leaf_key, o.leaf_key)
    return out


def _latency_regressed(ms_newest_first: Sequence[float], policy: HistoryPolicy) -> tuple[float, float] | None:
    """(baseline median, recent median) when the recent median is >= factor x the one before it."""
    n = policy.latency_recent
    recent, before = ms_newest_first[:n], ms_newest_first[n:n + policy.latency_baseline_max]
    if len(recent) < n or len(before) < policy.latency_baseline_min:
        return None
    now_median, base_median = statistics.median(recent), statistics.median(before)
    if (base_median > 0 and now_median >= policy.latency_factor * base_median
            and now_median - base_median >= policy.latency_min_delta_ms):
        return base_median, now_median
    return None


def _latency(o: Observation, key_rows: Sequence[Observation], policy: HistoryPolicy) -> DriftEvent | None:
    if o.handshake_ms is None:
        return None
    earlier = [e.handshake_ms for e in key_rows if e.at < o.at and e.handshake_ms is not None and e.ok]
    now = _latency_regressed([o.handshake_ms, *earlier], policy)
    if now is None or _latency_regressed(earlier, policy) is not None:
        return None
    base_ms, now_ms = now
    return DriftEvent(DriftCode.LATENCY_REGRESSION, o.target, o.host, o.port, o.address,
                      f"{base_ms:.1f} ms", f"{now_ms:.1f} ms", o.at)


def behaviour(o: Observation) -> str:
    """What a client notices about one address: its failure, or the version it negotiates."""
    return o.protocol or "ok" if o.ok else o.cause


def split_signature(rows: Sequence[Observation]) -> frozenset[str] | None:
    """The distinct behaviours of a host's addresses in one check; None when they agree."""
    by_address = {o.address or "": behaviour(o) for o in rows}
    kinds = frozenset(by_address.values())
    return kinds if len(by_address) > 1 and len(kinds) > 1 else None


def _split(rows: Sequence[Observation], earlier_host: Sequence[Observation]) -> DriftEvent | None:
    signature = split_signature(rows)
    if signature is None:
        return None
    at = rows[0].at
    before = [e for e in earlier_host if e.at < at]
    if before:
        last_at = max(e.at for e in before)
        if split_signature([e for e in before if e.at == last_at]) == signature:
            return None  # the same split as the previous check: already reported
    groups: dict[str, list[str]] = defaultdict(list)
    for o in sorted(rows, key=lambda o: o.address or ""):
        groups[behaviour(o)].append(o.address or "?")
    # The majority (then the healthy, then the name) is "from"; the others are what differs.
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0] not in ("TLSv1.3", "TLSv1.2", "ok"), kv[0]))
    (main, main_addrs), rest = ordered[0], ordered[1:]
    first = rows[0]
    return DriftEvent(DriftCode.SPLIT_POOL, first.target, first.host, first.port,
                      ",".join(a for _, addrs in rest for a in addrs),
                      f"{main} at {','.join(main_addrs)}",
                      "; ".join(f"{b} at {','.join(addrs)}" for b, addrs in rest), at)


def detect_drift(check: Sequence[Observation], earlier: Sequence[Observation],
                 policy: HistoryPolicy = HistoryPolicy()) -> list[DriftEvent]:
    """The drift events the observations of one check show, compared with *earlier*.

    Args:
        check: the observations of one check (one target; they share ``at``).
        earlier: earlier observations of the same hosts (any order; more is harmless).
        policy: the thresholds.

    Returns:
        The events, in a stable order (host, address, code).
    """
    by_key: dict[tuple, list[Observation]] = defaultdict(list)
    by_host: dict[tuple, list[Observation]] = defaultdict(list)
    for e in earlier:
        by_key[e.key].append(e)
        by_host[e.host_key].append(e)
    by_key = {k: _newest_first(v) for k, v in by_key.items()}
    by_host = {k: _newest_first(v) for k, v in by_host.items()}
    events: list[DriftEvent] = []
    seen_hosts: dict[tuple, list[Observation]] = defaultdict(list)
    for o in check:
        seen_hosts[o.host_key].append(o)
        if not o.ok:
            continue
        key_rows, host_rows = by_key.get(o.key, []), by_host.get(o.host_key, [])
        base = _baseline(o, key_rows, host_rows)
        if base is not None:
            events += _changes(o, base)
        late = _latency(o, key_rows, policy)
        if late is not None:
            events.append(late)
    for host_key, rows in seen_hosts.items():
        split = _split(rows, by_host.get(host_key, []))
        if split is not None:
            events.append(split)
    return sorted(events, key=lambda d: (d.host, d.port, d.address or "", d.code.value))
