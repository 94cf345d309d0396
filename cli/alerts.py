"""``cxhealth alerts``: the alert outbox of a targets.toml's store — what waits, what is dead.

    cxhealth alerts status --targets targets.toml [--json]   # queued entries and dead letters
    cxhealth alerts retry  --targets targets.toml ENTRY_ID   # a dead letter back into the queue
    cxhealth alerts drop   --targets targets.toml ENTRY_ID   # forget an entry (queued or dead)

A dead letter is an alert Slack kept refusing past ``[slack] max_attempts``
(default 10) or refused outright; it never blocks other alerts and is never sent
unless retried here. Prefect-free; nothing is sent to Slack by this command.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import UsageError


def _entry_doc(e: dict[str, Any], state: str) -> dict[str, Any]:
    meta = e.get("meta") or {}
    return {"id": e.get("id"), "state": state, "target": e.get("target"), "cause": e.get("cause"),
            "kind": e.get("kind"), "action": e.get("action"), "attempts": e.get("attempts", 0),
            "last_error": e.get("last_error"), "created_at": e.get("created_at"),
            "unconfirmed_send": bool(meta.get("sending") or meta.get("ambiguous"))}


def run_alerts(args: Any) -> int:
    from cxhealth.tasks.alerts import open_alert_store
    from cxhealth.tasks.targets import TargetConfigError, load_targets

    try:
        config = load_targets(args.targets)
    except TargetConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.action != "status" and len(args.ids) != 1:
        raise UsageError(f"alerts {args.action} takes exactly one ENTRY_ID (see 'cxhealth alerts status')")
    try:
        store = open_alert_store(config.breaker.store)
    except Exception as exc:  # noqa: BLE001 - one line, the store's own words have no secret
        raise UsageError(f"the alert store of {args.targets} cannot be opened ({type(exc).__name__})") from None
    try:
        if args.action == "retry":
            if not store.outbox_requeue(args.ids[0]):
                raise UsageError(f"no dead letter {args.ids[0]!r} (see 'cxhealth alerts status')")
            print(f"{args.ids[0]}: queued again; the next run delivers it")
            return 0
        if args.action == "drop":
            if not store.outbox_ack(args.ids[0]):
                raise UsageError(f"no outbox entry {args.ids[0]!r} (see 'cxhealth alerts status')")
            print(f"{args.ids[0]}: dropped")
            return 0
        docs = ([_entry_doc(e, "queued") for e in store.outbox_head(1000)]
                + [_entry_doc(e, "dead") for e in store.outbox_dead(1000)])
    finally:
        store.close()
    if args.json:
        print(json.dumps(docs))
        return 0
    if not docs:
        print("outbox empty: nothing queued, no dead letters")
        return 0
    webhook = bool(config.slack is not None and config.slack.webhook_url_env)
    unconfirmed = (" (may already be in Slack: webhook mode cannot read back; re-sent once, marked as a "
                   "possible repeat)" if webhook else " (may already be in Slack: read back before any re-send)")
    for d in docs:
        flag = unconfirmed if d["unconfirmed_send"] else ""
        print(f"{d['state']:6} {d['id']}  {d['target']}/{d['cause']} {d['kind']} ({d['action']}), "
              f"{d['attempts']} attempt(s), last error: {d['last_error'] or 'none'}{flag}")
    return 0
