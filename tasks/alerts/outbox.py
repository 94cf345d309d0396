"""The outbox: queued Slack calls, delivered in order per incident, each exactly once.

Entries are appended in the same commit as the incident change that caused
them (see :mod:`tasks.alerts.incidents`), so nothing decided is ever lost. One
process at a time drains (a lease in the store); it walks the queue oldest
first and removes each delivered entry in the same commit that records what
Slack answered (the root message's ``ts``).

Order is kept **per incident**: when an entry fails, the later entries of the
same incident wait (a thread reply never overtakes its root), while other
incidents go on — one alert that Slack keeps refusing never holds back the
others. A failed entry is retried on later runs, up to ``max_attempts``; then
it becomes a dead letter: kept in the store, reported (``cxhealth alerts``), and
never sent unless an operator requeues it.

Exactly once, also when Slack's answer is lost (contract §3):

* Before a non-idempotent post, the entry is marked ``sending`` in the store;
  after an outcome that leaves open whether Slack stored it (a timeout, a lost
  connection, an error page), it stays marked ``ambiguous``. A process killed
  mid-delivery leaves ``sending`` behind.
* Bot mode: every post carries the entry id as message metadata; before
  re-sending a marked entry the channel (or the root's thread) is read back and
  a message already there is adopted instead of posted again.
* Webhook mode (Slack offers no read-back): an entry whose request got no answer
  (a timeout, a dropped connection; an error page is an answer) is re-sent at most
  once, visibly marked as a possible repeat; if that re-send is unanswered too,
  it is taken as delivered (unconfirmed) and reported.

A drainer killed with ``kill -9`` leaves its lease behind; a process on the same
machine sees that its holder is dead (pid and start time) and takes the lease
over at once, so the next run neither waits for the lease to run out nor posts
twice (the read-back covers the entry that was in flight).

A resolve in bot mode is two entries (``update_root``, idempotent, then
``post_reply``), so a retry after a partial failure never posts twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxhealth.tasks.alerts.delivery import DeliveryOutcome
from cxhealth.tasks.alerts.payload import SlackMessage
from cxhealth.tasks.alerts.store import AlertStore

log = logging.getLogger("cxhealth.alerts")

#: Failures that say Slack cannot be reached at all (not this entry's fault).
_UNREACHABLE = frozenset({"timeout", "connection", "refused"})
#: Outcomes of a request that got no answer: it may have reached Slack.
_NO_ANSWER = frozenset({"timeout", "connection"})
#: Failures after which nothing else will go either during this run.
_STOP_ALL = frozenset({"ratelimited", "rate_limited", "http_429"})
POSSIBLE_REPEAT_NOTE = ("Possible repeat: Slack did not confirm an earlier send of this alert "
                        "(its answer was lost or late), so it may already be above.")


class Deliverer(Protocol):
    def post(self, message: Any, thread_ts: str | None = None, channel: str | None = None,
             key: str | None = None) -> DeliveryOutcome: ...


@dataclass
class DrainResult:
    """What one drain did (mutable while draining, then read by the alerter)."""

    delivered: list[dict] = field(default_factory=list)  # {id, target, cause, kind, action, ts}
    dropped: list[str] = field(default_factory=list)  # safe descriptions
    transient: list[str] = field(default_factory=list)
    config_errors: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)  # entries that became dead letters in this drain
    adopted: int = 0  # posts found already in Slack by the read-back
    unconfirmed: list[str] = field(default_factory=list)  # webhook re-sends Slack never confirmed
    skipped_lease: bool = False


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def default_owner() -> str:
    """``host:pid:start-time:random`` — enough to tell later that this process is gone."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '-'}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` (from :func:`default_owner`) was a process of this machine that is
    gone (or whose pid now belongs to another process). Other machines' holders: False."""
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid, started = int(parts[1]), parts[2]
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    now_started = _start_time(pid)
    return started != "-" and now_started is not None and now_started != started


def possible_repeat(message: dict) -> dict:
    """The webhook re-send of an alert whose first send may have arrived: said so, visibly."""
    out = dict(message)
    out["text"] = "(possible repeat) " + str(message.get("text") or "")
    blocks = list(message.get("blocks") or ())
    if blocks:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": POSSIBLE_REPEAT_NOTE}]})
        out["blocks"] = blocks
    return out


class OutboxDrainer:
    """Delivers outbox entries, in order per incident, with a bot or webhook deliverer."""

    def __init__(
        self,
        store: AlertStore,
        deliverer: Deliverer,
        *,
        mode: str,
        clock: Callable[[], float],
        lease_s: float = 120.0,
        owner: str | None = None,
        max_entries: int = 500,
        max_attempts: int = 10,
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.mode = mode
        self.clock = clock
        self.lease_s = lease_s
        self.owner = owner or default_owner()
        self.max_entries = max_entries
        self.max_attempts = max_attempts

    def drain(self) -> DrainResult:
        result = DrainResult()
        if not self.store.outbox_size():  # nothing to deliver: no lease (a write) taken; an entry
            return result                 # appended from now on finds the lease free and drains it
        blocked: set[str] = set()  # incidents with an entry that did not go in this drain
        # Re-check after releasing: an entry appended while we held the lease, by a
        # process that then found the lease taken, must not wait for the next run.
        for _ in range(3):
            if not self._lease():
                result.skipped_lease = True
                return result
            try:
                stopped = self._drain_locked(result, blocked)
            finally:
                self.store.release_lease(self.owner)
            if stopped or self.store.outbox_size() <= len(result.transient):
                break
        return result

    def _lease(self) -> bool:
        return self.store.acquire_lease(self.owner, self.lease_s, self.clock(), takeover=owner_is_dead)

    def _drain_locked(self, result: DrainResult, blocked: set[str]) -> bool:
        """Deliver what can go; True when stopped early (a failure that stops everything)."""
        unreachable_in_a_row = 0
        for entry in self.store.outbox_head(self.max_entries):
            incident = str(entry.get("incident_id"))
            if incident in blocked:
                continue
            if not self._lease():  # renew
                return True
            label = f"{entry['target']}/{entry['cause']} {entry['kind']} ({entry['action']})"
            outcome = self._deliver(entry)
            if outcome is None:  # a bot-only entry left over from before a switch to webhook mode
                self.store.outbox_ack(entry["id"])
                result.dropped.append(f"{label}: not applicable in {self.mode} mode")
                continue
            if outcome.code == "no_root":
                self.store.outbox_dead_letter(entry["id"], "its root message was never delivered")
                result.dead.append(f"{label}: its root message was never delivered")
                continue
            if outcome.is_delivered:
                unreachable_in_a_row = 0
                self._record_delivered(entry, outcome)
                if outcome.code == "adopted":
                    result.adopted += 1
                    log.info("slack alert already in the channel, adopted (no second post): %s", label)
                if outcome.code == "unconfirmed":
                    result.unconfirmed.append(f"{label}: re-sent once as a possible repeat; Slack never confirmed it")
                result.delivered.append(
                    {
                        "id": entry["id"], "target": entry["target"], "cause": entry["cause"],
                        "kind": entry["kind"], "action": entry["action"], "ts": outcome.ts,
                        **({"adopted": True} if outcome.code == "adopted" else {}),
                        **({"unconfirmed": True} if outcome.code == "unconfirmed" else {}),
                    }
                )
                log.info("slack alert delivered: %s", label)
                continue
            blocked.add(incident)
            if outcome.status == "config_error":
                self._settle(entry, outcome)
                result.config_errors.append(f"slack: {outcome.describe()}")
                log.error("slack configuration error, alerts stay queued: %s", outcome.describe())
                return True
            self.store.outbox_note_failure(entry["id"], outcome.describe())
            self._settle(entry, outcome)
            attempts = int(entry.get("attempts") or 0) + 1
            if outcome.status == "transient" and outcome.code in _STOP_ALL:
                result.transient.append(f"{label}: {outcome.describe()}")
                log.warning("slack rate limit: the rest stays queued for the next run")
                return True
            if outcome.status != "transient" or attempts >= self.max_attempts:
                why = (f"slack refused it ({outcome.describe()})" if outcome.status != "transient"
                       else f"{attempts} attempts failed, the last: {outcome.describe()}")
                self.store.outbox_dead_letter(entry["id"], why)
                blocked.discard(incident)  # what follows it goes on (or, without a root, dies too)
                result.dead.append(f"{label}: {why}")
                log.error("slack alert is a dead letter (see 'cxhealth alerts'): %s: %s", label, why)
                continue
            result.transient.append(f"{label}: {outcome.describe()}")
            log.warning("slack alert queued for the next run: %s: %s", label, outcome.describe())
            unreachable_in_a_row = unreachable_in_a_row + 1 if outcome.code in _UNREACHABLE else 0
            if unreachable_in_a_row >= 2 and not result.delivered:
                return True  # Slack cannot be reached: do not spend a timeout per incident
        return False

    # -- one entry -----------------------------------------------------------------

    def _root_of(self, entry: dict) -> dict | None:
        doc = self.store.get_target(entry["target"]) or {}
        inc = (doc.get("incidents") or {}).get(entry["incident_id"]) or {}
        return inc.get("root")

    def _settle(self, entry: dict, outcome: DeliveryOutcome) -> None:
        """After a failed attempt: no longer ``sending``; ``ambiguous`` if it may have arrived."""
        meta = dict(entry.get("meta") or {})
        if not meta.pop("sending", False):
            return  # nothing was sent (the read-back failed, or no claim was needed)
        if self._may_have_arrived(outcome):
            meta["ambiguous"] = True
            if meta.pop("repeat_sent", False):
                meta["repeat_unanswered"] = True
        else:
            meta.pop("repeat_sent", None)  # certainly not sent: the one re-send is still to come
        self.store.outbox_set_meta(entry["id"], meta)

    def _may_have_arrived(self, outcome: DeliveryOutcome) -> bool:
        """Bot mode: any outcome that leaves it open (an error page too: Slack says some part
        may have succeeded), since the channel is read back before a re-send. Webhook mode, with
        no read-back and one labelled re-send: only a request whose answer was lost or late (a
        timeout, a dropped connection); an answer, even an error page, says the webhook did not
        post it, so it is sent again on a later run like any undelivered alert (contract §3)."""
        if self.mode == "webhook":
            return outcome.ambiguous and outcome.code in _NO_ANSWER
        return outcome.ambiguous

    def _claim(self, entry: dict, **extra: Any) -> None:
        # ``sent_at``: the wall-clock time of the first send (Slack's ts is wall-clock
        # time too), where a read-back starts looking.
        meta = {**(entry.get("meta") or {}), "sending": True, **extra}
        meta.setdefault("sent_at", time.time())
        entry["meta"] = meta
        self.store.outbox_set_meta(entry["id"], meta)

    def _deliver(self, entry: dict) -> DeliveryOutcome | None:
        action = entry["action"]
        message = entry.get("message")
        meta = entry.get("meta") or {}
        unsure = bool(meta.get("sending") or meta.get("ambiguous"))
        if self.mode == "webhook":
            if action in ("update_root", "upload_file"):
                return None
            if unsure:
                if meta.get("repeat_unanswered") or (meta.get("repeat_sent") and meta.get("sending")):
                    # The one re-send allowed is spent and was never answered either.
                    return DeliveryOutcome("delivered", "unconfirmed")
                message = possible_repeat(message)
                self._claim(entry, repeat_sent=True)
            else:
                self._claim(entry)
            return self._with_smaller_retry(lambda m: self.deliverer.post(m), message)
        if action == "post_root" or action == "post_webhook":
            if unsure:
                sent_at = meta.get("sent_at")
                found = self.deliverer.find(  # type: ignore[attr-defined]
                    entry["id"], oldest=float(sent_at) - 600 if sent_at else None)
                if found.is_delivered or found.code != "not_found":
                    return found  # adopted, or the read-back failed: do not post blind
            self._claim(entry)
            return self._with_smaller_retry(lambda m: self.deliverer.post(m, key=entry["id"]), message)
        root = self._root_of(entry)
        if not root or not root.get("ts"):
            return DeliveryOutcome("rejected", "no_root")
        if action == "post_reply":
            if unsure:
                found = self.deliverer.find(entry["id"], thread_ts=root["ts"], channel=root.get("channel"))  # type: ignore[attr-defined]
                if found.is_delivered or found.code != "not_found":
                    return found
            self._claim(entry)
            return self._with_smaller_retry(
                lambda m: self.deliverer.post(m, thread_ts=root["ts"], channel=root.get("channel"), key=entry["id"]),
                message,
            )
        if action == "update_root":  # idempotent: no claim, no read-back
            return self._with_smaller_retry(
                lambda m: self.deliverer.update(root["channel"], root["ts"], m), message  # type: ignore[attr-defined]
            )
        if action == "upload_file":
            return self.deliverer.upload(root["channel"], root["ts"], entry["file"])  # type: ignore[attr-defined]
        return DeliveryOutcome("rejected", f"unknown_action_{action}")

    @staticmethod
    def _with_smaller_retry(send: Callable[[Any], DeliveryOutcome], message: dict) -> DeliveryOutcome:
        outcome = send(message)
        if outcome.status == "payload_error":  # msg_too_long & co: the fallback line alone
            outcome = send(SlackMessage.from_dict(message).text_only().to_dict())
        return outcome

    def _record_delivered(self, entry: dict, outcome: DeliveryOutcome) -> None:
        if entry["action"] == "post_root" or (entry["action"] == "post_webhook" and entry["kind"] == "open"):
            iid = entry["incident_id"]

            def set_root(doc: dict | None) -> tuple[dict | None, list]:
                if doc and iid in doc.get("incidents", {}):
                    doc["incidents"][iid]["root"] = {"ts": outcome.ts, "channel": outcome.channel}
                return doc, []

            self.store.update_target(entry["target"], set_root, ack=entry["id"])
        else:
            self.store.outbox_ack(entry["id"])
