"""Delivery to Slack with slack-sdk: a bot token (Web API) or an incoming webhook.

Every call returns a :class:`DeliveryOutcome` value; nothing here raises on a
Slack or network failure. One table (:func:`classify_slack_error`) turns Slack
error codes and HTTP statuses into what the outbox should do:

* ``delivered`` — done;
* ``transient`` — 5xx, timeout, connection error, 429 past the budget: keep the
  entry, try on the next run;
* ``config_error`` — ``invalid_auth``, ``channel_not_found``…: the settings are
  wrong; keep the entry (it goes out once they are fixed) and report it;
* ``payload_error`` — ``msg_too_long``, ``invalid_blocks``: resend smaller;
* ``rejected`` — anything else Slack refused: drop the entry, report it.

Retries: only slack-sdk's ``RateLimitErrorRetryHandler`` (subclassed to spend
a per-run budget and to take an injected ``sleep``). No connection-error retry
handler: a post is not idempotent, and a retry after a timeout may duplicate a
message that did arrive; the outbox retries on the next run instead.

Deadlines: every call runs under a TOTAL deadline — ``timeout_s`` per attempt
(plus any Retry-After the budget allowed) — not only urllib's per-read timeout:
an answer trickling one byte a second is given up at the deadline, as a
``timeout`` (an ambiguous outcome: Slack may have stored the message).

Exactly once: every post carries its outbox entry id as Slack message
``metadata`` (``event_type`` ``cxhealth_alert``), so that :meth:`BotDelivery.find`
can read the channel (or the thread) back and adopt a message whose answer was
lost, instead of posting it twice. :attr:`DeliveryOutcome.ambiguous` says when
an outcome leaves that question open.

Secrets: the token and webhook URL are revealed only to the slack-sdk client.
Its logger is a private one that drops DEBUG (where slack-sdk prints the webhook
URL) and scrubs both values from anything it does log; outcome texts are built
here from error codes, never from exception strings.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from cxhealth.tasks.alerts.settings import AlertSettings

log = logging.getLogger("cxhealth.alerts")

CONFIG_ERRORS = frozenset(
    {
        # Web API (docs.slack.dev/reference/methods/chat.postMessage#errors)
        "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
        "no_permission", "missing_scope", "channel_not_found", "not_in_channel", "is_archived",
        "team_access_not_granted", "ekm_access_denied", "org_login_required", "not_allowed_token_type",
        "restricted_action", "posting_to_general_channel_denied", "access_denied",
        # incoming webhooks (docs.slack.dev/messaging/sending-messages-using-incoming-webhooks)
        "invalid_token", "no_service", "no_service_id", "no_team", "team_disabled",
        "no_active_hooks", "channel_is_archived", "action_prohibited", "user_not_found",
    }
)
PAYLOAD_ERRORS = frozenset(
    {"msg_too_long", "invalid_blocks", "invalid_blocks_format", "too_many_attachments",
     "invalid_payload", "no_text", "invalid_attachments", "invalid_arguments"}
)
TRANSIENT_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})

HINTS = {
    "invalid_auth": "the bot token is not valid: check the variable [slack] bot_token_env names",
    "not_authed": "no bot token was sent: check [slack] bot_token_env",
    "token_revoked": "the bot token was revoked: issue a new one",
    "channel_not_found": "the channel does not exist or the bot cannot see it: check [slack] channel (or invite the bot)",
    "not_in_channel": "the bot is not a member of the channel: invite it",
    "is_archived": "the channel is archived",
    "missing_scope": "the bot token lacks a scope (chat:write, files:write)",
    "invalid_token": "the webhook URL is not valid: check the variable [slack] webhook_url_env names",
    "no_service": "the webhook URL is disabled or wrong: check [slack] webhook_url_env",
    "channel_is_archived": "the webhook's channel is archived",
}


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one Slack call, as a value (no secrets, no exception text)."""

    status: str  # delivered | transient | config_error | payload_error | rejected
    code: str = "ok"  # Slack error code, or: timeout | connection | http_<status> | upload_failed
    ts: str | None = None
    channel: str | None = None

    @property
    def is_delivered(self) -> bool:
        return self.status == "delivered"

    @property
    def ambiguous(self) -> bool:
        """Slack may have acted on the request although we saw no success: the
        request may have reached it and the answer was lost, late or an error page."""
        return self.status == "transient" and self.code not in ("refused", "ratelimited", "rate_limited", "http_429")

    def describe(self) -> str:
        hint = HINTS.get(self.code)
        return f"{self.code} ({hint})" if hint else self.code


def _is_error_code(text: str) -> bool:
    """Slack error codes are short snake_case words; anything else is a body, not a code."""
    return 0 < len(text) <= 64 and all(c.islower() or c.isdigit() or c == "_" for c in text)


def classify_slack_error(code: str | None, http_status: int | None) -> str:
    """The one place a Slack answer becomes an outbox decision."""
    if http_status == 429 or code in ("ratelimited", "rate_limited"):
        return "transient"
    if code in CONFIG_ERRORS:
        return "config_error"
    if code in PAYLOAD_ERRORS:
        return "payload_error"
    if code in TRANSIENT_ERRORS or (http_status is not None and http_status >= 500):
        return "transient"
    if http_status in (401, 403, 404, 410) and not code:
        return "config_error"
    return "rejected"


def classify_exception(exc: BaseException) -> DeliveryOutcome:
    """Network-level failures: all transient (the entry stays in the outbox)."""
    if isinstance(exc, HTTPError):
        return DeliveryOutcome(classify_slack_error(None, exc.code), f"http_{exc.code}")
    reason = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return DeliveryOutcome("transient", "timeout")
    if isinstance(reason, ConnectionRefusedError):  # nothing reached Slack: not ambiguous
        return DeliveryOutcome("transient", "refused")
    if isinstance(exc, SlackRequestError):
        return DeliveryOutcome("transient", "upload_failed")
    return DeliveryOutcome("transient", "connection")


# ---------------------------------------------------------------- 429 budget


class RateLimitBudget:
    """Seconds of Retry-After waiting one run may spend, shared by all its requests."""

    def __init__(self, seconds: float) -> None:
        self.remaining = float(seconds)
        self.spent = 0.0
        self.exhausted = False

    def try_spend(self, seconds: float) -> bool:
        if seconds > self.remaining:
            self.exhausted = True
            return False
        self.remaining -= seconds
        self.spent += seconds
        return True


def _retry_after(response: Any) -> float:
    headers = getattr(response, "headers", None) or {}
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, (list, tuple)) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return 1.0
    return 1.0


class BudgetedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, honouring Retry-After within a run's budget.

    slack-sdk 3.48's ``RateLimitErrorRetryHandler.prepare_for_next_attempt``
    calls ``time.sleep(int(Retry-After) + random())`` directly, with no way to
    inject the sleep or bound the total wait; this subclass keeps its retry
    decision (``_can_retry``: status 429) and replaces only the waiting.
    """

    def __init__(self, budget: RateLimitBudget, sleep: Callable[[float], None], max_retry_count: int = 3) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.budget = budget
        self._sleep = sleep
        self.waits: list[float] = []

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        return self.budget.try_spend(_retry_after(response))

    def prepare_for_next_attempt(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> None:
        wait = _retry_after(response)
        state.next_attempt_requested = True
        self.waits.append(wait)
        self._sleep(wait)
        state.increment_current_attempt()


# ---------------------------------------------------------------- secret-safe logger


class _ScrubFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string must not break delivery
            text = str(record.msg)
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        record.msg, record.args = text, None
        record.exc_info = record.exc_text = None
        return True


def _sdk_logger(secrets: Iterable[str]) -> logging.Logger:
    """A private logger for slack-sdk: CRITICAL only, secrets scrubbed, then ``cxhealth.alerts``.

    Its level must be set explicitly: slack-sdk prints URLs and bodies when
    ``logger.level <= DEBUG``, which a NOTSET (0) logger satisfies. It logs every failed
    request at ERROR ("Failed to send a request to Slack API server: ...", "Failed to decode
    Slack API response: <html>..."), each followed by the alerter's own line saying what
    happened to the alert and why (``http_500``, ``connection``, ``timeout``): on a command's
    stderr that was two lines per failure, one of them a server's HTML.
    """
    logger = logging.Logger("cxhealth.alerts.slack_sdk", level=logging.CRITICAL)
    logger.parent = log
    logger.addFilter(_ScrubFilter(secrets))
    return logger


# ---------------------------------------------------------------- total deadline


METADATA_EVENT_TYPE = "cxhealth_alert"


def call_with_deadline(fn: Callable[[], Any], timeout_s: float, handler: BudgetedRateLimitRetryHandler) -> Any:
    """Run ``fn`` (one slack-sdk call) under a total deadline.

    The deadline is ``timeout_s`` per attempt plus the Retry-After waits the
    handler spent inside the call (each within the run's 429 budget). Past it,
    :class:`TimeoutError` is raised and the call is abandoned in its daemon
    thread (its socket closes when it ends; it cannot hold the run).
    """
    box: dict[str, Any] = {}
    waits_before = len(handler.waits)

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    start = time.monotonic()
    worker = threading.Thread(target=target, name="cxhealth-slack-call", daemon=True)
    worker.start()
    while True:
        spent = handler.waits[waits_before:]
        deadline = start + timeout_s * (1 + len(spent)) + sum(spent)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        worker.join(min(left, 0.25))
        if not worker.is_alive():
            break
    if worker.is_alive():
        raise TimeoutError(f"slack call past its {timeout_s:g} s deadline")
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ---------------------------------------------------------------- clients


class BotDelivery:
    """Web API delivery with a bot token: posts, thread replies, updates, files."""

    def __init__(self, settings: AlertSettings, budget: RateLimitBudget, sleep: Callable[[float], None] = time.sleep) -> None:
        if settings.bot_token is None:
            raise ValueError("bot delivery needs a bot token")
        token = settings.bot_token.reveal()
        self.channel = settings.channel
        self.timeout_s = settings.timeout_s
        self._channel_id: str | None = None
        self.handler = BudgetedRateLimitRetryHandler(budget, sleep, settings.max_rate_limit_retries)
        self._client = WebClient(
            token=token,
            base_url=settings.api_base,
            timeout=settings.timeout_s,  # type: ignore[arg-type]  # urllib takes a float
            retry_handlers=[self.handler],
            logger=_sdk_logger([token]),
        )

    def __repr__(self) -> str:
        return f"BotDelivery(channel={self.channel!r})"

    def _call(self, fn: Callable[[], Any], timeout_s: float | None = None) -> DeliveryOutcome:
        try:
            response = call_with_deadline(fn, timeout_s or self.timeout_s, self.handler)
        except SlackApiError as exc:
            raw = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            # A non-JSON answer (an HTML 500 page) arrives as a long "error" text: not a code.
            code = raw if isinstance(raw, str) and _is_error_code(raw) else None
            status = exc.response.status_code
            return DeliveryOutcome(classify_slack_error(code, status), code or f"http_{status}")
        except (SlackClientError, OSError, ValueError) as exc:  # URLError, timeouts, resets, bad JSON
            return classify_exception(exc)
        data = response.data if isinstance(response.data, dict) else {}
        self._last_data = data
        return DeliveryOutcome("delivered", "ok", ts=data.get("ts"), channel=data.get("channel"))

    def post(self, message: Mapping[str, Any], thread_ts: str | None = None, channel: str | None = None,
             key: str | None = None) -> DeliveryOutcome:
        metadata = {"event_type": METADATA_EVENT_TYPE, "event_payload": {"key": key}} if key else None
        return self._call(
            lambda: self._client.chat_postMessage(
                channel=channel or self.channel,
                text=message["text"],
                blocks=list(message.get("blocks") or ()) or None,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                metadata=metadata,
            )
        )

    def _channel_for_reading(self, channel: str | None) -> str | None:
        """conversations.* need a channel ID; a name (``#alerts``) is looked up once."""
        chosen = channel or self.channel
        if not chosen:
            return None
        bare = chosen.lstrip("#")
        if chosen == bare and bare[:1] in "CGD" and bare.isalnum() and bare.isupper():
            return chosen
        if self._channel_id is not None:
            return self._channel_id
        cursor = None
        for _ in range(20):
            outcome = self._call(lambda: self._client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=200, cursor=cursor))
            data = self._last_data
            if not outcome.is_delivered:
                return chosen  # let the history call say what is wrong
            for ch in data.get("channels") or ():
                if ch.get("name") == bare:
                    self._channel_id = str(ch.get("id"))
                    return self._channel_id
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return chosen

    _last_data: dict = {}

    def find(self, key: str, *, thread_ts: str | None = None, channel: str | None = None,
             oldest: float | None = None, pages: int = 10) -> DeliveryOutcome:
        """Read back: the message posted with ``key`` in its metadata, if Slack has it.

        Returns ``delivered`` with its ``ts`` when found, ``rejected`` with code
        ``not_found`` when it is certainly not there, or a failure of the read.
        Top-level messages are read with conversations.history (from ``oldest``),
        thread replies with conversations.replies of ``thread_ts``.
        """
        cid = self._channel_for_reading(channel)
        cursor = None
        for _ in range(pages):
            if thread_ts:
                fn = lambda: self._client.conversations_replies(  # noqa: E731
                    channel=cid, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor)
            else:
                fn = lambda: self._client.conversations_history(  # noqa: E731
                    channel=cid, include_all_metadata=True, limit=200, cursor=cursor,
                    oldest=f"{oldest:.6f}" if oldest else None)
            outcome = self._call(fn)
            if not outcome.is_delivered:
                return outcome
            data = self._last_data
            for m in data.get("messages") or ():
                meta = m.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT_TYPE and (meta.get("event_payload") or {}).get("key") == key:
                    return DeliveryOutcome("delivered", "adopted", ts=m.get("ts"), channel=cid)
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not data.get("has_more") or not cursor:
                break
        return DeliveryOutcome("rejected", "not_found")

    def update(self, channel: str, ts: str, message: Mapping[str, Any]) -> DeliveryOutcome:
        return self._call(
            lambda: self._client.chat_update(
                channel=channel, ts=ts, text=message["text"], blocks=list(message.get("blocks") or ())
            )
        )

    def upload(self, channel: str, thread_ts: str, file: Mapping[str, Any]) -> DeliveryOutcome:
        outcome = self._call(
            lambda: self._client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                content=file["content"],
                filename=file["filename"],
                title=file.get("title") or file["filename"],
            ),
            3 * self.timeout_s,  # three requests: the upload URL, the bytes, the completion
        )
        return DeliveryOutcome(outcome.status, outcome.code, ts=thread_ts, channel=channel) if outcome.is_delivered else outcome


class WebhookDelivery:
    """Incoming-webhook delivery: top-level posts only (no threads, no updates)."""

    def __init__(self, settings: AlertSettings, budget: RateLimitBudget, sleep: Callable[[float], None] = time.sleep) -> None:
        if settings.webhook_url is None:
            raise ValueError("webhook delivery needs a webhook URL")
        url = settings.webhook_url.reveal()
        self.timeout_s = settings.timeout_s
        self.handler = BudgetedRateLimitRetryHandler(budget, sleep, settings.max_rate_limit_retries)
        self._client = WebhookClient(
            url=url,
            timeout=settings.timeout_s,  # type: ignore[arg-type]
            retry_handlers=[self.handler],
            logger=_sdk_logger([url]),
        )

    def __repr__(self) -> str:
        return "WebhookDelivery(url='********')"

    def post(self, message: Mapping[str, Any], thread_ts: str | None = None, channel: str | None = None,
             key: str | None = None) -> DeliveryOutcome:
        try:
            response = call_with_deadline(lambda: self._client.send(
                text=message["text"],
                blocks=list(message.get("blocks") or ()) or None,
                unfurl_links=False,
                unfurl_media=False,
            ), self.timeout_s, self.handler)
        except (SlackClientError, OSError, ValueError) as exc:
            return classify_exception(exc)
        if response.status_code == 200:
            return DeliveryOutcome("delivered", "ok")
        code = (response.body or "").strip()
        code = code if _is_error_code(code) else ""
        return DeliveryOutcome(classify_slack_error(code or None, response.status_code), code or f"http_{response.status_code}")
