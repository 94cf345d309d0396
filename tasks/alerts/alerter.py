"""The alerter: results and breaker transitions in, Slack alerts out, a report back.

Usage from a flow or the CLI (no Prefect needed)::

    settings = AlertSettings.from_config(config["slack"])          # secrets from env
    store = open_alert_store(config["breaker"]["store"])
    report = Alerter(settings, store).process(report_targets)
    # each target result carries its breaker transitions ("transitions"): they are
    # part of that target's incident; process(results, transitions) takes
    # transitions that came without a result as incidents of their own.
    # report.config_errors: show them; they never change the health verdict.

``process`` never raises for Slack or store trouble: it returns an
:class:`AlertReport` that says what was sent, what waits in the outbox, what
was held back, and any configuration errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cxhealth.tasks.alerts.delivery import BotDelivery, RateLimitBudget, WebhookDelivery
from cxhealth.tasks.alerts.incidents import Decision, IncidentPlanner, breaker_target
from cxhealth.tasks.alerts.outbox import OutboxDrainer
from cxhealth.tasks.alerts.settings import AlertSettings
from cxhealth.tasks.alerts.store import AlertStore

log = logging.getLogger("cxhealth.alerts")


@dataclass(frozen=True)
class AlertReport:
    """What one :meth:`Alerter.process` call did. JSON-able via :meth:`to_dict`."""

    decisions: tuple[Decision, ...] = ()
    sent: tuple[Mapping[str, Any], ...] = ()  # {id, target, cause, kind, action, ts}
    queued: int = 0  # entries left in the outbox for the next run
    suppressed: tuple[str, ...] = ()  # "target/cause" repeats held back
    config_errors: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # transient delivery trouble, dropped entries, store errors
    rate_limit_wait_s: float = 0.0
    dead_letters: tuple[str, ...] = ()  # every dead letter in the store (never sent; `cxhealth alerts`)
    adopted: int = 0  # posts a read-back found already in Slack (not posted again)
    unconfirmed: tuple[str, ...] = ()  # webhook re-sends marked as a possible repeat, never confirmed
    fallback: str | None = None  # set when the alerts live in a local fallback store

    @classmethod
    def of(cls, decisions: Sequence[Decision], flushed: "AlertReport", *, sent_before: Sequence[Mapping[str, Any]] = (),
           fallback: str | None = None) -> "AlertReport":
        """The report of a run: its decisions and what the outbox flush did (plus what an earlier
        flush of the same run, e.g. the local fallback outbox's, already sent)."""
        return cls(
            decisions=tuple(decisions),
            sent=tuple(sent_before) + tuple(flushed.sent),
            queued=flushed.queued,
            suppressed=tuple(f"{d.target}/{d.cause}" for d in decisions if d.outcome == "suppressed"),
            config_errors=flushed.config_errors,
            errors=flushed.errors,
            rate_limit_wait_s=flushed.rate_limit_wait_s,
            dead_letters=flushed.dead_letters,
            adopted=flushed.adopted,
            unconfirmed=flushed.unconfirmed,
            fallback=fallback,
        )

    @property
    def ok(self) -> bool:
        return not self.config_errors and not self.errors and self.queued == 0 and not self.dead_letters

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decisions"] = [asdict(d) for d in self.decisions]
        out["sent"] = [dict(s) for s in self.sent]
        return out


class Alerter:
    """Drives incidents and the outbox for one run.

    Args:
        settings: delivery mode, channel, budgets, and the secret values.
        store: from :func:`~tasks.alerts.store.open_alert_store` (the breaker's URL).
        clock: epoch seconds; injected so tests control repeat intervals.
        sleep: used only to honour 429 Retry-After (within the budget).
        owner: the drain-lease owner id (default: host:pid:random).
    """

    def __init__(
        self,
        settings: AlertSettings,
        store: AlertStore,
        clock: Callable[[], float] = time.time,
        *,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.owner = owner
        self.planner = IncidentPlanner(settings)

    def __repr__(self) -> str:
        return f"Alerter(mode={self.settings.mode!r}, channel={self.settings.channel!r})"

    def record(self, results: Iterable[Mapping[str, Any]] = (), transitions: Iterable[Mapping[str, Any]] = ()) -> list[Decision]:
        """Update incidents and queue what must be sent (no network)."""
        decisions: list[Decision] = []
        for result in results:
            name = str(result["name"])
            now = self.clock()
            out: list[Decision] = []

            def plan(doc: dict | None, result: Mapping[str, Any] = result, now: float = now, out: list = out) -> Any:
                new_doc, entries, ds = self.planner.plan_result(doc, result, now)
                out[:] = ds  # the last (committed) attempt's decisions
                return new_doc, entries

            self.store.update_target(name, plan)
            decisions += out
            drift = [d for d in result.get("drift") or () if isinstance(d, Mapping)]
            if drift:  # contract §4: one low-severity post per drift, queued once
                from .incidents import drift_target, plan_drift

                drift_out: list[Decision] = []

                def plan_d(doc: dict | None, name: str = name, drift: list = drift, now: float = now,
                           out: list = drift_out) -> Any:
                    new_doc, entries, ds = plan_drift(doc, name, drift, now, self.settings.mode)
                    out[:] = ds
                    return new_doc, entries

                self.store.update_target(drift_target(name), plan_d)
                decisions += drift_out
        for transition in transitions:
            host = str(transition.get("host") or "?")
            now = self.clock()
            out = []

            def plan_t(doc: dict | None, t: Mapping[str, Any] = transition, now: float = now, out: list = out) -> Any:
                new_doc, entries, ds = self.planner.plan_transition(doc, t, now)
                out[:] = ds
                return new_doc, entries

            self.store.update_target(breaker_target(host), plan_t)
            decisions += out
        return decisions

    def _lease_s(self) -> float:
        # The lease must outlive one entry's worst case (a file upload is three
        # calls, each up to the timeout, plus the whole 429 budget), or a second
        # drainer could start on the same entry.
        s = self.settings
        return max(s.lease_s, 4 * s.timeout_s * (1 + s.max_rate_limit_retries) + s.rate_limit_budget_s + 10)

    def flush(self) -> AlertReport:
        """Deliver the outbox (this run's alerts and any left from earlier runs)."""
        budget = RateLimitBudget(self.settings.rate_limit_budget_s)
        missing = self.settings.missing_secret
        if missing:
            return AlertReport(
                queued=self.store.outbox_size(),
                config_errors=(f"slack: no {missing.replace('_', ' ')} available (check [slack] in targets.toml and the environment)",),
            )
        deliverer = (
            BotDelivery(self.settings, budget, self.sleep)
            if self.settings.mode == "bot"
            else WebhookDelivery(self.settings, budget, self.sleep)
        )
        drained = OutboxDrainer(
            self.store, deliverer, mode=self.settings.mode, clock=self.clock,
            lease_s=self._lease_s(), owner=self.owner, max_attempts=self.settings.max_attempts,
        ).drain()
        errors = list(drained.transient) + list(drained.dropped)
        if budget.exhausted:
            errors.append("slack: rate limited past this run's budget; the rest is queued")
        return AlertReport(
            sent=tuple(drained.delivered),
            queued=self.store.outbox_size(),
            config_errors=tuple(dict.fromkeys(drained.config_errors)),
            errors=tuple(errors),
            rate_limit_wait_s=budget.spent,
            dead_letters=self.dead_letters(),
            adopted=drained.adopted,
            unconfirmed=tuple(drained.unconfirmed),
        )

    def dead_letters(self) -> tuple[str, ...]:
        """Every dead letter in the store, described (no payload, no secret)."""
        try:
            dead = self.store.outbox_dead(100)
        except Exception:  # noqa: BLE001 - reporting must not fail a run
            return ()
        return tuple(describe_entry(e) for e in dead)

    def process(self, results: Iterable[Mapping[str, Any]] = (), transitions: Iterable[Mapping[str, Any]] = ()) -> AlertReport:
        """Record this run's observations, then deliver. Never raises on Slack or store trouble."""
        try:
            decisions = self.record(list(results), list(transitions))
        except Exception as exc:  # store down: report it, the health verdict stands
            log.error("alert store unavailable: %s", type(exc).__name__)
            return AlertReport(errors=(f"alert store unavailable ({type(exc).__name__})",))
        try:
            flushed = self.flush()
        except Exception as exc:
            log.error("alert delivery failed: %s", type(exc).__name__)
            return AlertReport(decisions=tuple(decisions), errors=(f"alert delivery failed ({type(exc).__name__})",))
        return AlertReport.of(decisions, flushed)


def describe_entry(e: Mapping[str, Any]) -> str:
    """One line for an outbox entry: id, target/cause, kind, action, attempts, last error."""
    return (f"{e.get('id')}: {e.get('target')}/{e.get('cause')} {e.get('kind')} ({e.get('action')}), "
            f"{e.get('attempts', 0)} attempt(s), last error: {e.get('last_error') or 'none'}")
