"""Incidents: one per (target, cause); what each observation should send.

Pure decisions over a per-target document. The store runs them inside its
atomic update (``BEGIN IMMEDIATE`` / WATCH-MULTI), so when many runs or
processes observe the same failure at once, exactly one of them finds "no open
incident" and queues the root message; the others see it open and queue a
thread update or nothing.

The per-target document::

    {"target": "genesys-prod",
     "open": {"cert_expired": "<incident id>"},          # cause -> open incident
     "incidents": {"<id>": {"id", "cause", "status": "open"|"resolved",
                            "opened_at", "last_seen_at", "last_notified_at",
                            "resolved_at", "occurrences", "fingerprint",
                            "summary", "root": {"ts", "channel"} | null}}}

Resolved incidents are kept for ``KEEP_RESOLVED_S`` so that a resolve still in
the outbox can find its root message's ``ts``.

A breaker transition belongs to the incident of the target whose check caused
it (the result that carries it in ``transitions``): the breaker opening is part
of that incident, not a second one (contract §3: one top-level message per
incident). In bot mode ``opened``/``reopened`` are replies in the incident's
thread; in webhook mode they are updates, held back until the repeat interval
like any other; ``closed`` comes with the check that heals the target, whose
resolve says so. A transition that arrives without a result (the
``plan_transition`` API) is an incident of its own, keyed ``breaker:<host>``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxhealth.tasks.alerts import payload as P
from cxhealth.tasks.alerts.settings import AlertSettings

KEEP_RESOLVED_S = 7 * 24 * 3600.0
BREAKER_CAUSE = "breaker_open"


@dataclass(frozen=True)
class Decision:
    """What one observation did to its target's incidents (for the report)."""

    target: str
    cause: str | None
    outcome: str  # opened | updated | suppressed | resolved | cause_changed | none
    incident_id: str | None = None


def breaker_target(host: str) -> str:
    return f"breaker:{host}"


def _new_id() -> str:
    return uuid.uuid4().hex


def _entry(target: str, incident: Mapping[str, Any], action: str, kind: str, now: float, **extra: Any) -> dict:
    return {
        "id": _new_id(),
        "target": target,
        "incident_id": incident["id"],
        "cause": incident["cause"],
        "action": action,  # post_root | post_reply | update_root | upload_file | post_webhook
        "kind": kind,  # open | update | resolve | attachment
        "created_at": now,
        **extra,
    }


def _empty_doc(target: str) -> dict:
    return {"target": target, "open": {}, "incidents": {}}


def _prune(doc: dict, now: float) -> None:
    for iid in [
        iid
        for iid, inc in doc["incidents"].items()
        if inc["status"] == "resolved" and now - float(inc.get("resolved_at") or now) > KEEP_RESOLVED_S
    ]:
        del doc["incidents"][iid]


class IncidentPlanner:
    """Turns results and breaker transitions into store updates (pure, retry-safe)."""

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings

    # -- messages per mode --------------------------------------------------------

    def _open_entries(self, target: str, inc: dict, message: P.SlackMessage, full_json: str | None, now: float) -> list[dict]:
        if self.settings.mode == "webhook":
            return [_entry(target, inc, "post_webhook", "open", now, message=message.to_dict())]
        entries = [_entry(target, inc, "post_root", "open", now, message=message.to_dict())]
        if full_json is not None and message.truncated and self.settings.attach_full_json:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target)
            entries.append(
                _entry(
                    target, inc, "upload_file", "attachment", now,
                    file={
                        "filename": f"cxhealth-{safe}-{inc['cause']}.json",
                        "title": f"Full diagnosis: {target} — {inc['cause']}",
                        "content": full_json,
                    },
                )
            )
        return entries

    def _resolve_entries(self, target: str, inc: dict, now: float, note: str | None) -> list[dict]:
        resolve = P.build_resolve_message(
            target, inc["cause"], opened_at=inc["opened_at"], resolved_at=now, note=note
        )
        if self.settings.mode == "webhook":
            return [_entry(target, inc, "post_webhook", "resolve", now, message=resolve.to_dict())]
        root = P.build_resolved_root(
            target, inc["cause"], summary=inc.get("summary") or "", opened_at=inc["opened_at"], resolved_at=now
        )
        # update_root is idempotent and goes first; the one non-idempotent post goes last.
        return [
            _entry(target, inc, "update_root", "resolve", now, message=root.to_dict()),
            _entry(target, inc, "post_reply", "resolve", now, message=resolve.to_dict()),
        ]

    def _is_update_due(self, inc: Mapping[str, Any], fingerprint: str, now: float) -> bool:
        elapsed = now - float(inc.get("last_notified_at") or 0.0)
        if elapsed >= self.settings.repeat_interval_s:
            return True
        # Bot replies go to the thread, so a material change is worth one at once.
        return self.settings.mode == "bot" and inc.get("fingerprint") != fingerprint

    def _open(self, doc: dict, target: str, cause: str, fingerprint: str, summary: str, now: float) -> dict:
        inc = {
            "id": _new_id(),
            "cause": cause,
            "status": "open",
            "opened_at": now,
            "last_seen_at": now,
            "last_notified_at": now,
            "resolved_at": None,
            "occurrences": 1,
            "fingerprint": fingerprint,
            "summary": summary[:500],
            "root": None,
        }
        doc["incidents"][inc["id"]] = inc
        doc["open"][cause] = inc["id"]
        return inc

    def _resolve(self, doc: dict, cause: str, now: float) -> dict:
        iid = doc["open"].pop(cause)
        inc = doc["incidents"][iid]
        inc["status"] = "resolved"
        inc["resolved_at"] = now
        return inc

    # -- observations -------------------------------------------------------------

    def plan_result(self, doc: dict | None, result: Mapping[str, Any], now: float) -> tuple[dict | None, list[dict], list[Decision]]:
        """One target result (contract §2 report item) against its target's doc."""
        target = str(result["name"])
        doc = copy.deepcopy(doc) if doc else _empty_doc(target)
        _prune(doc, now)
        entries: list[dict] = []
        decisions: list[Decision] = []

        transitions = [t for t in result.get("transitions") or () if isinstance(t, Mapping)]
        closed = [t for t in transitions if t.get("kind") == "closed"]
        note = f"The circuit breaker for {closed[0].get('host')} closed." if closed else None
        if result.get("healthy"):
            for cause in list(doc["open"]):
                inc = self._resolve(doc, cause, now)
                entries += self._resolve_entries(target, inc, now, note)
                decisions.append(Decision(target, cause, "resolved", inc["id"]))
            if not decisions:
                decisions.append(Decision(target, None, "none"))
            return (doc if doc["incidents"] else None), entries, decisions

        cause = P.derive_cause(result)
        breaker_state = str((result.get("breaker") or {}).get("state") or "")
        if cause == BREAKER_CAUSE and doc["open"]:
            # The breaker skipped this run; the open incident's cause still stands.
            cause = next(iter(doc["open"]))
            fingerprint = f"{cause}|breaker_open|{breaker_state}"
        else:
            fingerprint = f"{cause}|{P.summarize(result, cause)}|{breaker_state}"

        # A different cause ends the old incident: a resolve that says why.
        for old in [c for c in doc["open"] if c != cause]:
            inc = self._resolve(doc, old, now)
            entries += self._resolve_entries(target, inc, now, f"The cause changed to {cause}.")
            decisions.append(Decision(target, old, "cause_changed", inc["id"]))

        if cause not in doc["open"]:
            summary = P.summarize(result, cause)
            inc = self._open(doc, target, cause, fingerprint, summary, now)
            message = P.build_incident_message(
                result, cause=cause, occurrences=1, now=now,
                budget=self.settings.message_budget_chars,
                evidence_chars=self.settings.evidence_excerpt_chars,
            )
            entries += self._open_entries(target, inc, message, P.full_diagnosis_json(result), now)
            entries += self._transition_replies(target, inc, transitions, now)
            decisions.append(Decision(target, cause, "opened", inc["id"]))
            return doc, entries, decisions

        inc = doc["incidents"][doc["open"][cause]]
        inc["occurrences"] += 1
        inc["last_seen_at"] = now
        replies = self._transition_replies(target, inc, transitions, now)
        if replies:  # the breaker's news is this observation's update (bot mode)
            entries += replies
            inc["last_notified_at"] = now
            inc["fingerprint"] = fingerprint
            decisions.append(Decision(target, cause, "updated", inc["id"]))
        elif self._is_update_due(inc, fingerprint, now):
            if self.settings.mode == "webhook":
                message = P.build_incident_message(
                    result, cause=cause, occurrences=inc["occurrences"], now=now,
                    budget=self.settings.message_budget_chars,
                    evidence_chars=self.settings.evidence_excerpt_chars, repeat=True,
                )
                entries.append(_entry(target, inc, "post_webhook", "update", now, message=message.to_dict()))
            else:
                message = P.build_update_message(result, cause=cause, occurrences=inc["occurrences"], now=now)
                entries.append(_entry(target, inc, "post_reply", "update", now, message=message.to_dict()))
            inc["last_notified_at"] = now
            inc["fingerprint"] = fingerprint
            decisions.append(Decision(target, cause, "updated", inc["id"]))
        else:
            decisions.append(Decision(target, cause, "suppressed", inc["id"]))
        return doc, entries, decisions

    def _transition_replies(self, target: str, inc: dict, transitions: list[Mapping[str, Any]], now: float) -> list[dict]:
        """Bot mode: each opened/reopened transition of this check as a reply in the incident's thread."""
        if self.settings.mode != "bot":
            return []
        out = []
        for t in transitions:
            if t.get("kind") in ("opened", "reopened"):
                message = P.build_breaker_message(t, occurrences=inc["occurrences"], now=now)
                out.append(_entry(target, inc, "post_reply", "update", now, message=message.to_dict()))
        return out

    def plan_transition(self, doc: dict | None, transition: Mapping[str, Any], now: float) -> tuple[dict | None, list[dict], list[Decision]]:
        """A breaker transition ``{"kind", "host", "at", "reopen_at", "summary"}`` that came without
        a target result (a caller of the API): an incident of its own, keyed ``breaker:<host>``."""
        host = str(transition.get("host") or "?")
        kind = str(transition.get("kind") or "")
        target = breaker_target(host)
        doc = copy.deepcopy(doc) if doc else _empty_doc(target)
        _prune(doc, now)
        cause = BREAKER_CAUSE
        is_open = cause in doc["open"]
        fingerprint = f"{kind}|{transition.get('reopen_at')}"

        if kind == "closed":
            if not is_open:
                return (doc if doc["incidents"] else None), [], [Decision(target, cause, "none")]
            inc = self._resolve(doc, cause, now)
            return doc, self._resolve_entries(target, inc, now, "The breaker closed."), [
                Decision(target, cause, "resolved", inc["id"])
            ]
        if kind not in ("opened", "reopened"):
            return (doc if doc["incidents"] else None), [], [Decision(target, cause, "none")]

        if not is_open:
            summary = f"Circuit breaker {kind} for {host}"
            inc = self._open(doc, target, cause, fingerprint, summary, now)
            message = P.build_breaker_message(transition, occurrences=1, now=now)
            return doc, self._open_entries(target, inc, message, None, now), [
                Decision(target, cause, "opened", inc["id"])
            ]

        inc = doc["incidents"][doc["open"][cause]]
        if inc.get("fingerprint") == fingerprint:  # the same transition, seen by another run
            return doc, [], [Decision(target, cause, "suppressed", inc["id"])]
        inc["occurrences"] += 1
        inc["last_seen_at"] = now
        if kind == "reopened" and self._is_update_due(inc, fingerprint, now):
            if self.settings.mode == "webhook":
                msg = P.build_breaker_message(transition, occurrences=inc["occurrences"], now=now, repeat=True)
                entry = _entry(target, inc, "post_webhook", "update", now, message=msg.to_dict())
            else:
                note = "Probe failed; breaker reopened" + (
                    f" until {transition.get('reopen_at')}." if transition.get("reopen_at") else "."
                )
                msg = P.SlackMessage(text=f"breaker:{host} — {note}", blocks=())
                entry = _entry(target, inc, "post_reply", "update", now, message=msg.to_dict())
            inc["last_notified_at"] = now
            inc["fingerprint"] = fingerprint
            return doc, [entry], [Decision(target, cause, "updated", inc["id"])]
        inc["fingerprint"] = fingerprint
        return doc, [], [Decision(target, cause, "suppressed", inc["id"])]


def drift_target(target: str) -> str:
    return f"drift:{target}"


DRIFT_SEEN_KEPT = 200


def plan_drift(doc: dict | None, target: str, events: list[Mapping[str, Any]], now: float,
               mode: str) -> tuple[dict | None, list[dict], list[Decision]]:
    """The drift a target's check showed (contract §4): one low-severity post per event, never
    repeated (the doc keyed ``drift:<target>`` remembers what was queued; the history already
    reports a change only on the check where it appears). Each post is its own tiny incident so
    one that Slack refuses holds back no other."""
    key = drift_target(target)
    doc = copy.deepcopy(doc) if doc else {"target": key, "open": {}, "incidents": {}, "seen": []}
    seen = list(doc.get("seen") or [])
    entries: list[dict] = []
    decisions: list[Decision] = []
    for event in events:
        mark = "|".join(str(event.get(k)) for k in ("code", "host", "address", "from", "to", "at"))
        if mark in seen:
            decisions.append(Decision(key, str(event.get("code")), "suppressed"))
            continue
        seen.append(mark)
        inc = {"id": _new_id(), "cause": str(event.get("code") or "drift")}
        message = P.build_drift_message(target, event).to_dict()
        entries.append(_entry(key, inc, "post_webhook" if mode == "webhook" else "post_root", "drift", now,
                              message=message))
        decisions.append(Decision(key, inc["cause"], "drift", inc["id"]))
    doc["seen"] = seen[-DRIFT_SEEN_KEPT:]
    return doc, entries, decisions
