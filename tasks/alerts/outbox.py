"""The outbox: queued Slack calls, delivered in order, each exactly once.

Entries are appended in the same commit as the incident change that caused
them (see :mod:`tasks.alerts.incidents`), so nothing decided is ever lost. One
process at a time drains (a lease in the store); it delivers the oldest entry,
and removes it in the same commit that records what Slack answered (the root
message's ``ts``). On a transient failure it stops, leaving that entry and all
later ones for the next run — order is kept, so a thread reply never overtakes
its root message.

Each entry is one Slack call, and at most one non-idempotent one: a resolve in
bot mode is two entries (``update_root``, idempotent, then ``post_reply``), so
a retry after a partial failure never posts twice.

What a delivered entry can still do twice: if Slack accepted a post but its
answer was lost (a timeout after the write), the entry is retried. Slack's
``chat.postMessage`` has no idempotency key; we choose "no loss" over "no
duplicate" for that one ambiguous case.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxhealth.tasks.alerts.delivery import DeliveryOutcome
from cxhealth.tasks.alerts.payload import SlackMessage
from cxhealth.tasks.alerts.store import AlertStore

log = logging.getLogger("cxhealth.alerts")


class Deliverer(Protocol):
    def post(self, message: Any, thread_ts: str | None = None, channel: str | None = None) -> DeliveryOutcome: ...


@dataclass
class DrainResult:
    """What one drain did (mutable while draining, then read by the alerter)."""

    delivered: list[dict] = field(default_factory=list)  # {id, target, cause, kind, action, ts}
    dropped: list[str] = field(default_factory=list)  # safe descriptions
    transient: list[str] = field(default_factory=list)
    config_errors: list[str] = field(default_factory=list)
    skipped_lease: bool = False


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OutboxDrainer:
    """Delivers outbox entries in order with a bot or webhook deliverer."""

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
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.mode = mode
        self.clock = clock
        self.lease_s = lease_s
        self.owner = owner or default_owner()
        self.max_entries = max_entries

    def drain(self) -> DrainResult:
        result = DrainResult()
        # Re-check after releasing: an entry appended while we held the lease, by a
        # process that then found the lease taken, must not wait for the next run.
        for _ in range(3):
            if not self.store.acquire_lease(self.owner, self.lease_s, self.clock()):
                result.skipped_lease = True
                return result
            try:
                stopped = self._drain_locked(result)
            finally:
                self.store.release_lease(self.owner)
            if stopped or self.store.outbox_size() == 0:
                break
        return result

    def _drain_locked(self, result: DrainResult) -> bool:
        """Deliver until empty; True when stopped early by a failure."""
        for _ in range(self.max_entries):
            if not self.store.acquire_lease(self.owner, self.lease_s, self.clock()):  # renew
                return True
            head = self.store.outbox_head(1)
            if not head:
                return False
            entry = head[0]
            outcome = self._deliver(entry)
            label = f"{entry['target']}/{entry['cause']} {entry['kind']} ({entry['action']})"
            if outcome is None:  # nothing to do for this entry any more
                self.store.outbox_ack(entry["id"])
                result.dropped.append(f"{label}: its root message was never delivered")
                continue
            if outcome.is_delivered:
                self._record_delivered(entry, outcome)
                result.delivered.append(
                    {
                        "id": entry["id"], "target": entry["target"], "cause": entry["cause"],
                        "kind": entry["kind"], "action": entry["action"], "ts": outcome.ts,
                    }
                )
                log.info("slack alert delivered: %s", label)
                continue
            self.store.outbox_note_failure(entry["id"], outcome.describe())
            if outcome.status == "transient":
                result.transient.append(f"{label}: {outcome.describe()}")
                log.warning("slack alert queued for the next run: %s: %s", label, outcome.describe())
                return True
            if outcome.status == "config_error":
                result.config_errors.append(f"slack: {outcome.describe()}")
                log.error("slack configuration error, alerts stay queued: %s", outcome.describe())
                return True
            # payload_error after the text-only retry, or rejected: this entry cannot go.
            self.store.outbox_ack(entry["id"])
            result.dropped.append(f"{label}: slack refused it ({outcome.describe()})")
            log.error("slack alert dropped: %s: %s", label, outcome.describe())
        return True

    # -- one entry -----------------------------------------------------------------

    def _root_of(self, entry: dict) -> dict | None:
        doc = self.store.get_target(entry["target"]) or {}
        inc = (doc.get("incidents") or {}).get(entry["incident_id"]) or {}
        return inc.get("root")

    def _deliver(self, entry: dict) -> DeliveryOutcome | None:
        action = entry["action"]
        message = entry.get("message")
        if self.mode == "webhook":
            # A bot-mode entry left over from before a switch to webhook mode.
            if action in ("update_root", "upload_file"):
                return None
            return self._with_smaller_retry(lambda m: self.deliverer.post(m), message)
        if action in ("post_root", "post_webhook"):
            return self._with_smaller_retry(lambda m: self.deliverer.post(m), message)
        root = self._root_of(entry)
        if not root or not root.get("ts"):
            return None
        if action == "post_reply":
            return self._with_smaller_retry(
                lambda m: self.deliverer.post(m, thread_ts=root["ts"], channel=root.get("channel")), message
            )
        if action == "update_root":
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
