"""``cxhealth metrics [--targets FILE] [--listen 127.0.0.1:9466]`` (contract §4).

The latest observation per target and host in Prometheus' text format, made by
``prometheus_client`` (not by hand): blackbox_exporter's names where they exist,
``cxhealth_*`` for the rest, labels ``target`` and ``host`` on every series.
Read from the history store at every scrape (a collector, not cached gauges).
Prefect-free.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterator, Sequence

from .errors import UsageError

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
DRIFT_CODES = ("protocol_changed", "cipher_changed", "issuer_changed", "cert_renewed", "key_changed",
               "split_pool", "latency_regression")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not host or not 0 <= number <= 65535:
        raise UsageError(f"--listen {text!r}: write ADDRESS:PORT, e.g. 127.0.0.1:9466")
    return host, number


class HistoryCollector:
    """A prometheus_client collector over the history store (and the breaker's, for its state)."""

    def __init__(self, store_factory: Any, targets: Sequence[str] | None, breaker_factory: Any = None) -> None:
        self.store_factory, self.targets, self.breaker_factory = store_factory, targets, breaker_factory
        self._lock = threading.Lock()

    def describe(self) -> list:  # no describe-time store read
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily  # noqa: F401

        with self._lock:
            store = self.store_factory()
            try:
                latest = store.latest(self.targets) if store is not None else []
                drift = store.drift_counts(self.targets) if store is not None else {}
            finally:
                if store is not None:
                    store.close()
        labels = ["target", "host"]
        success = GaugeMetricFamily("probe_success", "Whether the latest check's TLS connections to the host all succeeded", labels=labels)
        expiry = GaugeMetricFamily("probe_ssl_earliest_cert_expiry", "Earliest not_after in the host's chain (Unix time)", labels=labels)
        leaf_expiry = GaugeMetricFamily("probe_ssl_last_chain_expiry_timestamp_seconds", "The leaf's not_after (Unix time)", labels=labels)
        version = GaugeMetricFamily("probe_tls_version_info", "The TLS version negotiated", labels=labels + ["version"])
        duration = GaugeMetricFamily("probe_duration_seconds", "The TLS handshake's duration (the slowest address)", labels=labels)
        chain = GaugeMetricFamily("probe_ssl_last_chain_info", "The leaf certificate presented", labels=labels + ["fingerprint_sha256", "issuer"])
        cause = GaugeMetricFamily("cxhealth_cause_info", "The diagnosed cause (ok when healthy)", labels=labels + ["cause"])
        addresses = GaugeMetricFamily("cxhealth_addresses", "Addresses of the host the latest check connected to", labels=labels)
        failing = GaugeMetricFamily("cxhealth_addresses_failing", "Of those, how many failed", labels=labels)
        seen = GaugeMetricFamily("cxhealth_last_observation_timestamp_seconds", "When the host was last checked (Unix time)", labels=labels)
        breaker = GaugeMetricFamily("cxhealth_breaker_state", "The host's circuit breaker: 0 closed, 1 half_open, 2 open", labels=labels)
        drifts = CounterMetricFamily("cxhealth_drift", "Drift events within retention, by code", labels=labels + ["code"])
        groups: dict[tuple[str, str], list[Any]] = {}
        for o in latest:
            groups.setdefault((o.target, o.host), []).append(o)
        states = self._breaker_states({h for _, h in groups})
        for (target, host), rows in sorted(groups.items()):
            key = [target, host]
            bad = [o for o in rows if not o.ok]
            success.add_metric(key, 0.0 if bad else 1.0)
            not_afters = [o.not_after.timestamp() for o in rows if o.not_after is not None]
            if not_afters:
                expiry.add_metric(key, min(not_afters))
            leaves = [o for o in rows if o.leaf_not_after is not None]
            if leaves:
                leaf_expiry.add_metric(key, min(o.leaf_not_after.timestamp() for o in leaves))
                chain.add_metric(key + [leaves[0].leaf or "", leaves[0].issuer or ""], 1.0)
            for v in sorted({o.protocol for o in rows if o.protocol}):
                version.add_metric(key + [v], 1.0)
            times = [o.handshake_ms for o in rows if o.handshake_ms is not None]
            if times:
                duration.add_metric(key, max(times) / 1000.0)
            cause.add_metric(key + [bad[0].cause if bad else "ok"], 1.0)
            addresses.add_metric(key, float(len({o.address or "" for o in rows})))
            failing.add_metric(key, float(len({o.address or "" for o in bad})))
            seen.add_metric(key, max(o.at.timestamp() for o in rows))
            if host in states:
                breaker.add_metric(key, float(states[host]))
            for code in DRIFT_CODES:
                drifts.add_metric(key + [code], float(drift.get((target, host, code), 0)))
        yield from (success, expiry, leaf_expiry, version, duration, chain, cause, addresses, failing, seen,
                    breaker, drifts)

    def _breaker_states(self, hosts: set[str]) -> dict[str, int]:
        if self.breaker_factory is None or not hosts:
            return {}
        try:
            breaker = self.breaker_factory()
        except Exception:  # noqa: BLE001 - the TLS facts stand without the breaker's state
            return {}
        try:
            out = {}
            for host in hosts:
                try:
                    out[host] = BREAKER_STATES.get(str(breaker.status(host).state), 0)
                except Exception:  # noqa: BLE001 - one unreadable record: that host has no state series
                    continue
            return out
        finally:
            breaker.close()


def build_registry(targets_file: str | None) -> Any:
    from prometheus_client import CollectorRegistry

    from cxhealth.tasks.runtime import breaker_for
    from cxhealth.tasks.targets import BreakerSettings, TargetConfigError, load_targets

    from .history import history_source, open_store

    settings, targets = history_source(targets_file)
    if targets_file is not None:
        try:
            config = load_targets(targets_file)
        except TargetConfigError as exc:
            raise UsageError(str(exc)) from None
    else:
        config = type("Config", (), {"breaker": BreakerSettings()})()
    first = open_store(settings)  # a store that cannot be opened is exit 2 now, not an error at every scrape
    if first is not None:
        first.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HistoryCollector(lambda: open_store(settings), targets, lambda: breaker_for(config)))
    return registry


def run_metrics(args: Any) -> int:
    from prometheus_client import generate_latest

    registry = build_registry(args.targets)
    if not args.listen:
        sys.stdout.write(generate_latest(registry).decode())
        return 0
    from prometheus_client import start_http_server

    host, port = parse_listen(args.listen)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: cannot listen ({exc.strerror or exc})") from None
    bound = server.server_address[1]
    print(f"serving http://{host}:{bound}/metrics (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        thread.join()
    finally:
        server.shutdown()
    return 0
