"""Block Kit payloads from a target result or a breaker transition.

Pure functions: a plain JSON-able result dict in (contract §2 report shape), a
:class:`SlackMessage` out, built and validated with ``slack_sdk.models.blocks``.
Every text is cut to Slack's limits (150 chars per header, 3000 per section,
2000 per field, 10 fields, 50 blocks) and the whole message to a budget well
under Slack's ~12k cap: oversize input is truncated, never an error. When
anything had to be cut, ``truncated`` says so and the bot delivers the full
diagnostic JSON as a file in the incident's thread.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from cxhealth.tasks.tls.model import Cause

# Slack's documented limits (api.slack.com/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_TEXT = 3000  # Slack truncates `text` at 40k; a notification line needs far less.
ELLIPSIS = "…"

# Causes of the handshake stage: the engine's one list (contract §1), plus the ones the flow adds.
HANDSHAKE_CAUSES = tuple(c.value for c in Cause if c is not Cause.OK)
FLOW_CAUSES = ("oauth_failed", "endpoint_failed", "breaker_open", "unhealthy")

SEVERITY_EMOJI = {"critical": ":red_circle:", "major": ":large_orange_circle:", "resolved": ":white_check_mark:"}


@dataclass(frozen=True)
class SlackMessage:
    """What one Slack post carries: fallback ``text`` and validated ``blocks``."""

    text: str
    blocks: tuple[Mapping[str, Any], ...] = ()
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": [dict(b) for b in self.blocks]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlackMessage:
        return cls(text=data["text"], blocks=tuple(data.get("blocks") or ()))

    @property
    def size(self) -> int:
        return len(json.dumps(self.to_dict(), ensure_ascii=False))

    def text_only(self) -> SlackMessage:
        """The last-resort form (after ``msg_too_long``): the fallback line alone."""
        return SlackMessage(text=_cut(self.text, 1000), blocks=(), truncated=True)


# ---------------------------------------------------------------- cause & severity


def derive_cause(result: Mapping[str, Any]) -> str:
    """The target's cause code: the one the flow gave, else from the failed stage."""
    explicit = result.get("cause")
    if explicit and explicit != "ok":
        return str(explicit)
    stage = result.get("stage")
    if stage == "handshake":
        return str(_get(result, "handshake", "cause") or "unhealthy")
    if stage == "oauth":
        return "oauth_failed"
    if stage == "endpoints":
        for ep in result.get("endpoints") or ():
            if isinstance(ep, Mapping) and not ep.get("ok") and ep.get("cause") in HANDSHAKE_CAUSES:
                return str(ep["cause"])
        return "endpoint_failed"
    if stage == "breaker_open":
        return "breaker_open"
    return "unhealthy"


def severity_of(cause: str, stage: str | None) -> str:
    """Critical when the integration cannot connect or authenticate; major otherwise."""
    if stage == "endpoints" or cause == "endpoint_failed":
        return "major"
    return "critical"


# ---------------------------------------------------------------- text helpers


def escape_mrkdwn(text: str) -> str:
    """Slack mrkdwn needs only &, < and > escaped (api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))].rstrip() + ELLIPSIS


def _fit_mrkdwn(raw: str, limit: int) -> tuple[str, bool]:
    """Escape ``raw`` and cut it so the escaped text fits ``limit`` (never mid-entity)."""
    escaped = escape_mrkdwn(raw)
    if len(escaped) <= limit:
        return escaped, False
    keep = limit
    while keep > 0:
        candidate = escape_mrkdwn(raw[:keep].rstrip()) + ELLIPSIS
        if len(candidate) <= limit:
            return candidate, True
        keep -= max(1, len(candidate) - limit)
    return ELLIPSIS, True


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _fmt_time(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def _fmt_ms(value: Any) -> str:
    if isinstance(value, (int, float)):
        return f"{value:.0f} ms"
    return "—"


def _code_block(raw: str, limit: int) -> tuple[str, bool]:
    # A ``` inside the excerpt would end the fence early; swap it for look-alikes.
    raw = raw.replace("```", "ʼʼʼ")
    body, cut = _fit_mrkdwn(raw, limit - 8)
    return f"```{body}```", cut


# ---------------------------------------------------------------- builder


class _Builder:
    """Collects blocks in priority order and enforces the size budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.items: list[tuple[int, Block]] = []  # (priority: lower is kept longer, block)
        self.truncated = False

    def add(self, priority: int, block: Block) -> None:
        block.validate_json()  # raises SlackObjectFormationError: a bug here, never input size
        self.items.append((priority, block))

    def section(self, priority: int, raw: str, *, limit: int = MAX_SECTION, preformatted: bool = False) -> None:
        if preformatted:
            text, cut = raw, False
        else:
            text, cut = _fit_mrkdwn(raw, limit)
        self.truncated |= cut
        self.add(priority, SectionBlock(text=MarkdownTextObject(text=text)))

    def build(self, text: str) -> SlackMessage:
        items = list(self.items)
        fallback = _cut(text, MAX_FALLBACK_TEXT)

        def size(its: list[tuple[int, Block]]) -> int:
            return len(json.dumps({"text": fallback, "blocks": [b.to_dict() for _, b in its]}, ensure_ascii=False))

        # Drop the least important blocks (highest priority number, latest first) until it fits.
        while (len(items) > MAX_BLOCKS or size(items) > self.budget) and len(items) > 1:
            worst = max(range(len(items)), key=lambda i: (items[i][0], i))
            if items[worst][0] == 0:
                break
            del items[worst]
            self.truncated = True
        blocks = tuple(b.to_dict() for _, b in items)
        message = SlackMessage(text=fallback, blocks=blocks, truncated=self.truncated)
        if message.size > self.budget:  # only the header-level blocks left and still too big
            return SlackMessage(text=_cut(fallback, 500), blocks=blocks[:1], truncated=True)
        return message


def _header(title: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=_cut(title, MAX_HEADER), emoji=True))


def _fields(pairs: Sequence[tuple[str, str]]) -> tuple[SectionBlock, bool]:
    out, cut_any = [], False
    for label, value in list(pairs)[:MAX_FIELDS]:
        text, cut = _fit_mrkdwn(value, MAX_FIELD - len(label) - 4)
        cut_any |= cut
        out.append(MarkdownTextObject(text=f"*{escape_mrkdwn(label)}*\n{text}"))
    return SectionBlock(fields=out), cut_any


def _context(parts: Sequence[str]) -> ContextBlock:
    elements = [MarkdownTextObject(text=_cut(p, MAX_SECTION)) for p in parts if p][:MAX_CONTEXT_ELEMENTS]
    return ContextBlock(elements=elements)


def summarize(result: Mapping[str, Any], cause: str) -> str:
    """The one-line summary: what broke, in the words of the stage that failed."""
    stage = result.get("stage")
    hs = result.get("handshake") if isinstance(result.get("handshake"), Mapping) else {}
    if stage == "breaker_open":
        reopen = _get(result, "breaker", "reopen_at")
        return (
            "Circuit breaker is open for this target's host: no network call was made"
            + (f"; the next probe is allowed after {reopen}." if reopen else ".")
        )
    if stage == "oauth":
        oauth = result.get("oauth") or {}
        status = oauth.get("status")
        err = oauth.get("error") or "token request failed"
        return "OAuth token request failed" + (f" (HTTP {status})" if status else "") + f": {err}"
    if stage == "endpoints":
        bad = [ep for ep in result.get("endpoints") or () if isinstance(ep, Mapping) and not ep.get("ok")]
        listed = ", ".join(
            f"{ep.get('path')} → {ep.get('status') or ep.get('cause') or 'failed'}" for ep in bad[:5]
        )
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        return f"{len(bad)} endpoint check(s) failed: {listed}{more}"
    if hs.get("summary"):
        return str(hs["summary"])
    return f"Target is unhealthy ({cause})."


def _host_of(result: Mapping[str, Any]) -> str:
    """The host that failed: the failing endpoint's on the endpoints stage, else the token host's."""
    if result.get("stage") == "endpoints":
        failing = next((e for e in result.get("endpoints") or () if isinstance(e, Mapping) and not e.get("ok")), None)
        if failing and failing.get("host"):
            return str(failing["host"])
    target = _get(result, "handshake", "target") or {}
    host = target.get("host") if isinstance(target, Mapping) else None
    if not host:
        return "—"
    port = target.get("port")
    addr = target.get("address")
    text = f"{host}:{port}" if port else str(host)
    return f"{text} ({addr})" if addr else text


def build_incident_message(
    result: Mapping[str, Any],
    *,
    cause: str | None = None,
    occurrences: int = 1,
    now: float | None = None,
    budget: int = 9000,
    evidence_chars: int = 1200,
    repeat: bool = False,
) -> SlackMessage:
    """The full diagnostic payload for a failing target (root message or webhook repeat)."""
    cause = cause or derive_cause(result)
    stage = result.get("stage")
    severity = severity_of(cause, stage)
    name = str(result.get("name") or "?")
    hs = result.get("handshake") if isinstance(result.get("handshake"), Mapping) else {}
    summary = summarize(result, cause)
    b = _Builder(budget)

    prefix = "Still failing" if repeat else severity.upper()
    b.add(0, _header(f"{SEVERITY_EMOJI.get(severity, '')} {prefix}: {name} — {cause}".strip()))
    b.section(0, summary, limit=1500)

    breaker = result.get("breaker") if isinstance(result.get("breaker"), Mapping) else {}
    breaker_text = str(breaker.get("state") or "—")
    if breaker.get("reopen_at"):
        breaker_text += f" (probe after {breaker['reopen_at']})"
    chain = hs.get("chain") if isinstance(hs.get("chain"), list) else []
    fields, cut = _fields(
        [
            ("Host", _host_of(result)),
            ("Stage", str(stage or "—")),
            ("Protocol", str(hs.get("protocol") or "—")),
            ("Cipher", str(hs.get("cipher") or "—")),
            ("Chain depth", str(len(chain)) if chain else "—"),
            ("Handshake", _fmt_ms(hs.get("handshake_ms"))),
            ("Breaker", breaker_text),
            ("Attempts", f"seen {occurrences}× in this incident" + _persistence_text(result)),
            ("Severity", severity),
            ("OAuth", _oauth_field(result.get("oauth"))),
        ]
    )
    b.truncated |= cut
    b.add(1, fields)

    # The report says what to do (tasks/remedies.py's rule, applied when the report was built);
    # the payload only renders it.
    remediation = [str(r) for r in result.get("remediation") or () if r]
    if remediation:
        lines = "\n".join(f"{i}. {r}" for i, r in enumerate(remediation[:10], 1))
        more = f"\n…and {len(remediation) - 10} more" if len(remediation) > 10 else ""
        text, cut = _fit_mrkdwn(lines + more, MAX_SECTION - 20)
        b.truncated |= cut
        b.section(1, "*What to do*\n" + text, preformatted=True)

    endpoints = [ep for ep in result.get("endpoints") or () if isinstance(ep, Mapping)]
    if endpoints:
        rows = [
            f"{'✓' if ep.get('ok') else '✗'} {ep.get('path')} — {ep.get('status') or '—'}"
            f" {ep.get('protocol') or ''} {'' if ep.get('ok') else (ep.get('cause') or '')} {_fmt_ms(ep.get('ms'))}"
            for ep in endpoints[:15]
        ]
        if len(endpoints) > 15:
            rows.append(f"…and {len(endpoints) - 15} more")
        body, cut = _code_block("\n".join(rows), MAX_SECTION - 20)
        b.truncated |= cut
        b.section(3, "*Endpoints*\n" + body, preformatted=True)

    warnings = [w for w in hs.get("warnings") or () if isinstance(w, Mapping)]
    if warnings:
        lines = "\n".join(f"• {w.get('code')}: {w.get('message')}" for w in warnings[:10])
        text, cut = _fit_mrkdwn(lines, MAX_SECTION - 20)
        b.truncated |= cut
        b.section(4, "*Warnings*\n" + text, preformatted=True)

    if chain:
        rows = []
        for i, cert in enumerate(chain[:5]):
            if isinstance(cert, Mapping):
                rows.append(
                    f"{i}: {cert.get('subject')}\n   issuer {cert.get('issuer')}\n"
                    f"   valid {cert.get('not_before')} → {cert.get('not_after')}"
                )
        if len(chain) > 5:
            rows.append(f"…and {len(chain) - 5} more")
        body, cut = _code_block("\n".join(rows), 1500)
        b.truncated |= cut
        b.section(5, "*Chain (leaf first)*\n" + body, preformatted=True)

    evidence = hs.get("evidence")
    if evidence:
        raw = json.dumps(evidence, indent=1, sort_keys=True, default=str)
        body, cut = _code_block(raw, min(evidence_chars, MAX_SECTION - 40))
        b.truncated |= cut
        b.section(6, "*Evidence*\n" + body, preformatted=True)

    b.add(0, DividerBlock())
    b.add(0, _context(_context_parts(result, now)))
    text = f"[{severity}] {name}: {cause} — {summary}"
    message = b.build(text)
    return message


def _persistence_text(result: Mapping[str, Any]) -> str:
    """The history's judgement of the failure (contract §4), when the report carries it."""
    kind = result.get("persistence")
    if not kind:
        return ""
    since = result.get("persistence_since")
    return f"; {kind}" + (f" since {_fmt_time(since)}" if since else "")


def _oauth_field(oauth: Any) -> str:
    if not isinstance(oauth, Mapping) or oauth.get("ok") is None and not oauth.get("status"):
        return "not reached"
    if oauth.get("ok"):
        return f"ok ({_fmt_ms(oauth.get('ms'))})"
    return f"failed, HTTP {oauth.get('status') or '—'}"


def _context_parts(result: Mapping[str, Any], now: float | None) -> list[str]:
    parts = [f"cxhealth · {_fmt_time(now)}"]
    url = result.get("flow_run_url")
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")) and "|" not in url and ">" not in url:
        parts.append(f"<{url}|Flow run>")
    return parts


def build_update_message(
    result: Mapping[str, Any], *, cause: str, occurrences: int, now: float | None = None, note: str | None = None
) -> SlackMessage:
    """A compact thread reply: the incident continues (bot mode)."""
    name = str(result.get("name") or "?")
    summary = summarize(result, cause)
    breaker = result.get("breaker") if isinstance(result.get("breaker"), Mapping) else {}
    line = f"Still failing (seen {occurrences}×): {summary}"
    if breaker.get("state"):
        line += f"\nBreaker: {breaker['state']}" + (
            f", probe after {breaker['reopen_at']}" if breaker.get("reopen_at") else ""
        )
    if note:
        line += f"\n{note}"
    b = _Builder(4000)
    b.section(0, line, limit=MAX_SECTION)
    b.add(0, _context(_context_parts(result, now)))
    return b.build(f"{name}: {cause} — still failing (seen {occurrences}×)")


def build_resolve_message(
    target: str, cause: str, *, opened_at: float, resolved_at: float, note: str | None = None
) -> SlackMessage:
    """The one resolve: a thread reply (bot) or a new message (webhook)."""
    minutes = max(0.0, resolved_at - opened_at) / 60.0
    took = f"{minutes:.0f} min" if minutes >= 1 else f"{max(0.0, resolved_at - opened_at):.0f} s"
    b = _Builder(4000)
    b.add(0, _header(f"{SEVERITY_EMOJI['resolved']} RESOLVED: {target} — {cause}"))
    body = f"Healthy again after {took} (opened {_fmt_time(opened_at)}, resolved {_fmt_time(resolved_at)})."
    if note:
        body += f" {note}"
    b.section(0, body)
    return b.build(f"[resolved] {target}: {cause} — healthy again after {took}")


def build_resolved_root(
    target: str, cause: str, *, summary: str, opened_at: float, resolved_at: float
) -> SlackMessage:
    """The root message as rewritten by ``chat.update`` when the incident resolves."""
    b = _Builder(4000)
    b.add(0, _header(f"{SEVERITY_EMOJI['resolved']} Resolved: {target} — {cause}"))
    b.section(0, f"~{summary}~" if summary else "Resolved.", limit=1500)
    b.add(0, _context([f"opened {_fmt_time(opened_at)} · resolved {_fmt_time(resolved_at)} · details in thread"]))
    return b.build(f"[resolved] {target}: {cause}")


def build_breaker_message(
    transition: Mapping[str, Any], *, occurrences: int = 1, now: float | None = None, repeat: bool = False
) -> SlackMessage:
    """A breaker transition (``opened``/``reopened``) as an incident payload."""
    host = str(transition.get("host") or "?")
    kind = str(transition.get("kind") or "opened")
    reopen = transition.get("reopen_at")
    summary = (
        f"Circuit breaker {kind} for {host}: every run and worker sharing the store fails fast"
        + (f" until {reopen}, then one probe is let through." if reopen else ".")
    )
    b = _Builder(6000)
    prefix = "Still open" if repeat else "CRITICAL"
    b.add(0, _header(f"{SEVERITY_EMOJI['critical']} {prefix}: breaker {kind} — {host}"))
    b.section(0, summary)
    b.truncated |= _fields_into(
        b,
        [
            ("Host", host),
            ("Transition", kind),
            ("At", _fmt_time(transition.get("at"))),
            ("Probe after", _fmt_time(reopen)),
            ("Attempts", f"seen {occurrences}× in this incident"),
        ],
    )
    details = transition.get("summary")
    if details:
        body, cut = _code_block(json.dumps(details, indent=1, sort_keys=True, default=str), 1500)
        b.truncated |= cut
        b.section(3, "*Breaker state*\n" + body, preformatted=True)
    b.add(0, _context(_context_parts(transition, now)))
    return b.build(f"[critical] breaker {kind} for {host}" + (f", probe after {reopen}" if reopen else ""))


def _fields_into(b: _Builder, pairs: Sequence[tuple[str, str]]) -> bool:
    block, cut = _fields(pairs)
    b.add(1, block)
    return cut


def full_diagnosis_json(result: Mapping[str, Any]) -> str:
    """The whole result as pretty JSON: the file attached when the message had to cut."""
    return json.dumps(result, indent=2, sort_keys=True, default=str, ensure_ascii=False)


# ---------------------------------------------------------------- drift (contract §4): low severity

DRIFT_EMOJI = ":information_source:"


def build_drift_message(target: str, event: Mapping[str, Any]) -> SlackMessage:
    """One drift event (``{code, host, address, from, to, at}``) as a low-severity note:
    no mention, no "critical" — a change to know about, not a page."""
    code = str(event.get("code") or "drift")
    host = str(event.get("host") or "?")
    where = host + (f" ({event['address']})" if event.get("address") else "")
    change = f"{event.get('from') or '?'} → {event.get('to') or '?'}"
    b = _Builder(4000)
    b.add(0, _header(f"{DRIFT_EMOJI} TLS drift: {target} — {code}"))
    b.section(0, f"{escape_mrkdwn(where)}: {escape_mrkdwn(change)}")
    b.add(0, _context([f"seen {_fmt_time(event.get('at'))}", "informational: the checks still decide health",
                       "cxhealth history " + host]))
    return b.build(f"[info] TLS drift on {where} ({target}): {code}, {change}")
