"""A fake Slack: the Web API methods cxhealth uses, and incoming webhooks.

A real HTTP server on 127.0.0.1 (random port) in a background thread, used as a
context manager::

    with FakeSlack(token="xoxb-test") as slack:
        settings = AlertSettings(mode="bot", channel="#alerts", api_base=slack.api_base,
                                 bot_token="xoxb-test")
        ...
        slack.top_level()          # the channel's top-level messages
        slack.replies(ts)          # a thread
        slack.requests             # every request: method, path, headers, body

Implements ``chat.postMessage`` (returns ``ts``, ``channel``), ``chat.update``,
the ``files_upload_v2`` sequence of slack-sdk 3.48 (``files.getUploadURLExternal``
→ POST of the bytes to the returned ``upload_url`` → ``files.completeUploadExternal``),
``auth.test``, ``conversations.history`` and ``conversations.replies`` (GET;
a message's ``metadata`` — Slack's event_type/event_payload — is stored and
returned with ``include_all_metadata``), and webhook POSTs under ``/services/…``.

Failures are programmed with :meth:`FakeSlack.fail`: ``"429"`` (with
Retry-After), ``"500"``, ``"hang"`` (no answer until ``hang_s`` or shutdown, so
the client's timeout must fire), ``"invalid_auth"``, ``"channel_not_found"``,
``"msg_too_long"``. A failed request is recorded and changes no state.

Three more are about the *answer* of a request that did succeed (the message is
stored, as Slack does when its answer is lost on the way back): ``"lose"``
(the connection closes without an answer), ``"late"`` (the answer comes after
``hang_s``) and ``"trickle"`` (the answer arrives one byte per ``trickle_s``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

FAILURE_KINDS = ("429", "500", "hang", "invalid_auth", "channel_not_found", "msg_too_long", "lose", "late", "trickle")
#: Failures of the answer only: the request itself succeeds (state changes).
ANSWER_FAILURES = ("lose", "late", "trickle")
WEBHOOK = "webhook"
UPLOAD = "upload"

# What an incoming webhook answers for each programmed failure (status, body).
_WEBHOOK_FAILURES = {
    "invalid_auth": (403, "invalid_token"),
    "channel_not_found": (404, "channel_not_found"),
    "msg_too_long": (400, "msg_too_long"),
}


@dataclass
class RecordedRequest:
    """One HTTP request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # what the fake answered (None: it hung)
    api_method: str | None = None  # "chat.postMessage", "webhook", "upload", ...

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def params(self) -> dict[str, Any]:
        """The body as a dict: JSON, or form fields (single values)."""
        ctype = self.headers.get("content-type", "")
        if "json" in ctype:
            try:
                data = json.loads(self.text or "{}")
                return data if isinstance(data, dict) else {}
            except ValueError:
                return {}
        if "x-www-form-urlencoded" in ctype:
            return {k: v[-1] for k, v in parse_qs(self.text, keep_blank_values=True).items()}
        return {}


@dataclass
class _Failure:
    kind: str
    method: str | None
    remaining: int
    retry_after: float
    match: str | None = None


@dataclass
class _Message:
    ts: str
    channel: str
    text: str
    blocks: list
    thread_ts: str | None = None
    via: str = "api"
    updates: list = field(default_factory=list)
    files: list = field(default_factory=list)
    metadata: dict | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts, "channel": self.channel, "text": self.text, "blocks": self.blocks,
            "thread_ts": self.thread_ts, "via": self.via, "updates": list(self.updates),
            "files": list(self.files), "metadata": self.metadata,
        }


class FakeSlack:
    """The fake Slack server. Thread-safe; inspect it after (or during) a test."""

    def __init__(
        self,
        *,
        token: str | None = None,
        channels: dict[str, str] | None = None,
        webhooks: dict[str, str] | None = None,
        hang_s: float = 30.0,
        max_text: int = 40000,
        trickle_s: float = 1.0,
    ) -> None:
        """
        Args:
            token: the one valid bot token (None: any non-empty token is accepted).
            channels: channel id → name; default ``{"C0ALERTS": "alerts"}``.
            webhooks: webhook path (after ``/services/``) → channel id.
            hang_s: how long a ``"hang"`` failure holds the request.
            max_text: answer ``msg_too_long`` when ``text`` is longer than this.
            trickle_s: the pause between two bytes of a ``"trickle"`` answer.
        """
        self.token = token
        self.channels = dict(channels or {"C0ALERTS": "alerts"})
        self.webhooks = dict(webhooks or {})
        self.hang_s = hang_s
        self.max_text = max_text
        self.trickle_s = trickle_s
        self.requests: list[RecordedRequest] = []
        self._messages: list[_Message] = []
        self._uploads: dict[str, dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._seq = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> FakeSlack:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-slack", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeSlack is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/"

    def add_webhook(self, path: str, channel: str = "C0ALERTS") -> str:
        """Register a webhook path; returns its full URL."""
        path = path.strip("/")
        self.webhooks[path] = channel
        return f"{self.url}/services/{path}"

    # -- programming failures ------------------------------------------------------

    def fail(self, kind: str, *, method: str | None = None, times: int = 1, retry_after: float = 0,
             match: str | None = None) -> None:
        """Answer the next ``times`` matching requests with failure ``kind``.

        ``method`` matches an API method (``"chat.postMessage"``), ``"webhook"``
        or ``"upload"``; None matches any request. ``match``: only requests whose
        body contains this text (one poison message among others). Rules are
        consumed in order.
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure {kind!r}; one of {FAILURE_KINDS}")
        with self._lock:
            self._failures.append(_Failure(kind, method, times, retry_after, match))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, api_method: str, body: bytes = b"") -> _Failure | None:
        with self._lock:
            for f in self._failures:
                if f.match is not None and f.match.encode() not in body:
                    continue
                if f.remaining > 0 and (f.method is None or f.method == api_method):
                    f.remaining -= 1
                    return f
            return None

    # -- inspection --------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.as_dict() for m in self._messages]

    def top_level(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["thread_ts"] is None and (channel is None or m["channel"] == channel)]

    def replies(self, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["thread_ts"] == thread_ts]

    def uploads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(u) for u in self._uploads.values()]

    def api_calls(self, api_method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if api_method is None or r.api_method == api_method]

    # -- state changes (called by the handler under the lock) ------------------------

    def _next_ts(self) -> str:
        # Slack's ts is the wall-clock time of the post (unique per channel): read-backs
        # that start at an ``oldest`` time must find it.
        self._seq += 1
        now = int(time.time() * 1_000_000)
        self._last_us = max(now, getattr(self, "_last_us", 0) + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _channel_id(self, channel: str | None) -> str | None:
        if not channel:
            return None
        if channel in self.channels:
            return channel
        name = channel.lstrip("#")
        for cid, cname in self.channels.items():
            if cname == name:
                return cid
        return None

    def _find(self, channel: str, ts: str) -> _Message | None:
        for m in self._messages:
            if m.channel == channel and m.ts == ts:
                return m
        return None


def _blocks_of(value: Any) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    _answer_failure: str | None = None

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if not path.startswith("/api/"):
            self._reply(405, "method_not_allowed", "text/plain")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        api_method = path[len("/api/"):]
        record = RecordedRequest("GET", self.path, headers, b"", None, api_method)
        with self.fake._lock:
            self.fake.requests.append(record)
        self._answer_failure = None
        failure = self.fake._take_failure(api_method)
        if failure is not None:
            if failure.kind in ANSWER_FAILURES:
                self._answer_failure = failure.kind
            else:
                self._fail(record, failure)
                return
        self._api(record, api_method, {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()})

    def do_POST(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/"):
            api_method = path[len("/api/"):]
        elif path.startswith("/services/"):
            api_method = WEBHOOK
        elif path.startswith("/upload/"):
            api_method = UPLOAD
        else:
            api_method = None
        record = RecordedRequest("POST", self.path, headers, body, None, api_method)
        with fake._lock:
            fake.requests.append(record)

        self._answer_failure = None
        failure = fake._take_failure(api_method or "", body)
        if failure is not None:
            if failure.kind in ANSWER_FAILURES:
                self._answer_failure = failure.kind  # do the work, then fail the answer
            else:
                self._fail(record, failure)
                return
        if api_method == WEBHOOK:
            self._webhook(record, path[len("/services/"):].strip("/"))
        elif api_method == UPLOAD:
            self._upload(record, path.rsplit("/", 1)[-1])
        elif api_method:
            self._api(record, api_method)
        else:
            self._send(record, 404, "not_found", "text/plain")

    # -- responses -------------------------------------------------------------------

    def _reply(self, status: int, body: str, ctype: str, extra: dict[str, str] | None = None) -> None:
        data = body.encode()
        failure, self._answer_failure = self._answer_failure, None
        if failure == "lose":  # the work is done; the answer never leaves
            self.close_connection = True
            return
        if failure == "late":
            self.fake._stopping.wait(self.fake.hang_s)
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n",
                f"Content-Type: {ctype}\r\n", f"Content-Length: {len(data)}\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in (extra or {}).items()]
        raw = "".join(head).encode() + b"\r\n" + data
        if failure == "trickle":
            self.close_connection = True
            try:
                for i in range(len(raw)):
                    if self.fake._stopping.wait(self.fake.trickle_s):
                        return
                    self.wfile.write(raw[i:i + 1])
                    self.wfile.flush()
            except OSError:  # the client gave up
                pass
            return
        try:
            self.wfile.write(raw)
        except OSError:
            self.close_connection = True

    def _send(self, record: RecordedRequest, status: int, body: str, ctype: str, extra: dict[str, str] | None = None) -> None:
        record.status = status
        self._reply(status, body, ctype, extra)

    def _json(self, record: RecordedRequest, data: dict[str, Any], status: int = 200) -> None:
        self._send(record, status, json.dumps(data), "application/json; charset=utf-8")

    def _fail(self, record: RecordedRequest, failure: _Failure) -> None:
        kind = failure.kind
        is_webhook = record.api_method == WEBHOOK
        if kind == "hang":
            self.fake._stopping.wait(self.fake.hang_s)
            self.close_connection = True
            return
        if kind == "429":
            retry = {"Retry-After": str(int(failure.retry_after)) if float(failure.retry_after).is_integer() else str(failure.retry_after)}
            if is_webhook:
                self._send(record, 429, "rate_limited", "text/plain", retry)
            else:
                self._send(record, 429, json.dumps({"ok": False, "error": "ratelimited"}), "application/json", retry)
            return
        if kind == "500":
            self._send(record, 500, "<html><body>Internal Server Error</body></html>", "text/html")
            return
        if is_webhook:
            status, body = _WEBHOOK_FAILURES[kind]
            self._send(record, status, body, "text/plain")
        else:
            self._json(record, {"ok": False, "error": kind})

    # -- webhooks and uploads ----------------------------------------------------------

    def _webhook(self, record: RecordedRequest, hook: str) -> None:
        fake = self.fake
        channel = fake.webhooks.get(hook)
        if channel is None:
            self._send(record, 404, "no_service", "text/plain")
            return
        params = record.params()
        text = params.get("text") or ""
        blocks = _blocks_of(params.get("blocks"))
        if not text and not blocks:
            self._send(record, 400, "no_text", "text/plain")
            return
        if len(text) > fake.max_text or len(blocks) > 50:
            self._send(record, 400, "msg_too_long", "text/plain")
            return
        with fake._lock:
            fake._messages.append(_Message(fake._next_ts(), channel, text, blocks, via="webhook"))
        self._send(record, 200, "ok", "text/html")

    def _upload(self, record: RecordedRequest, file_id: str) -> None:
        fake = self.fake
        with fake._lock:
            upload = fake._uploads.get(file_id)
            if upload is None:
                status = 404
            else:
                upload["content"] = record.body
                status = 200
        self._send(record, status, f"OK - {len(record.body)}" if status == 200 else "not_found", "text/plain")

    # -- Web API -------------------------------------------------------------------------

    def _api(self, record: RecordedRequest, method: str, query: dict[str, Any] | None = None) -> None:
        fake = self.fake
        auth = record.headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if not token:
            self._json(record, {"ok": False, "error": "not_authed"})
            return
        if fake.token is not None and token != fake.token:
            self._json(record, {"ok": False, "error": "invalid_auth"})
            return
        params = record.params() if query is None else query
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            self._json(record, {"ok": False, "error": "unknown_method"})
            return
        handler(record, params)

    def _m_auth_test(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        self._json(record, {"ok": True, "team": "cxhealth-lab", "user": "cxhealth", "bot_id": "B0FAKE"})

    def _m_chat_postMessage(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        fake = self.fake
        text = params.get("text") or ""
        blocks = _blocks_of(params.get("blocks"))
        if not text and not blocks:
            self._json(record, {"ok": False, "error": "no_text"})
            return
        if len(text) > fake.max_text:
            self._json(record, {"ok": False, "error": "msg_too_long"})
            return
        if len(blocks) > 50:
            self._json(record, {"ok": False, "error": "invalid_blocks"})
            return
        with fake._lock:
            channel = fake._channel_id(params.get("channel"))
            if channel is None:
                error = "channel_not_found"
            else:
                thread_ts = params.get("thread_ts") or None
                if thread_ts and fake._find(channel, thread_ts) is None:
                    error = "thread_not_found"
                else:
                    error = None
                    metadata = params.get("metadata")
                    if isinstance(metadata, str):
                        try:
                            metadata = json.loads(metadata)
                        except ValueError:
                            metadata = None
                    msg = _Message(fake._next_ts(), channel, text, blocks, thread_ts=thread_ts,
                                   metadata=metadata if isinstance(metadata, dict) else None)
                    fake._messages.append(msg)
        if error:
            self._json(record, {"ok": False, "error": error})
            return
        self._json(record, {"ok": True, "channel": msg.channel, "ts": msg.ts,
                            "message": {"text": text, "blocks": blocks, "ts": msg.ts}})

    def _history_item(self, m: _Message, with_metadata: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text, "blocks": m.blocks}
        if m.thread_ts:
            item["thread_ts"] = m.thread_ts
        if with_metadata and m.metadata:
            item["metadata"] = m.metadata
        return item

    def _page(self, record: RecordedRequest, params: dict[str, Any], found: list[_Message]) -> None:
        with_metadata = str(params.get("include_all_metadata") or "").lower() in ("1", "true")
        try:
            limit = max(1, min(int(params.get("limit") or 100), 999))
            start = int(params.get("cursor") or 0)
        except ValueError:
            self._json(record, {"ok": False, "error": "invalid_arguments"})
            return
        page = found[start:start + limit]
        more = start + limit < len(found)
        self._json(record, {"ok": True, "messages": [self._history_item(m, with_metadata) for m in page],
                            "has_more": more,
                            "response_metadata": {"next_cursor": str(start + limit) if more else ""}})

    def _m_conversations_list(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        with self.fake._lock:
            channels = [{"id": cid, "name": name, "is_channel": True} for cid, name in self.fake.channels.items()]
        self._json(record, {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}})

    def _m_conversations_history(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        fake = self.fake
        with fake._lock:
            channel = fake._channel_id(params.get("channel"))
            oldest = float(params.get("oldest") or 0)
            latest = float(params.get("latest") or 1e12)
            found = [m for m in reversed(fake._messages)  # newest first, as Slack
                     if channel and m.channel == channel and m.thread_ts is None and oldest <= float(m.ts) <= latest]
        if channel is None:
            self._json(record, {"ok": False, "error": "channel_not_found"})
            return
        self._page(record, params, found)

    def _m_conversations_replies(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        fake = self.fake
        with fake._lock:
            channel = fake._channel_id(params.get("channel"))
            parent = fake._find(channel, params.get("ts") or "") if channel else None
            found = ([parent] + [m for m in fake._messages if m.channel == channel and m.thread_ts == parent.ts]
                     if parent is not None else [])
        if channel is None:
            self._json(record, {"ok": False, "error": "channel_not_found"})
        elif parent is None:
            self._json(record, {"ok": False, "error": "thread_not_found"})
        else:
            self._page(record, params, found)

    def _m_chat_update(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        fake = self.fake
        with fake._lock:
            channel = fake._channel_id(params.get("channel"))
            msg = fake._find(channel, params.get("ts") or "") if channel else None
            if msg is not None:
                msg.updates.append({"text": params.get("text") or "", "blocks": _blocks_of(params.get("blocks"))})
                msg.text = params.get("text") or msg.text
                msg.blocks = _blocks_of(params.get("blocks")) or msg.blocks
        if channel is None:
            self._json(record, {"ok": False, "error": "channel_not_found"})
        elif msg is None:
            self._json(record, {"ok": False, "error": "message_not_found"})
        else:
            self._json(record, {"ok": True, "channel": channel, "ts": msg.ts, "text": msg.text})

    def _m_files_getUploadURLExternal(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        fake = self.fake
        if not params.get("filename") or not str(params.get("length") or "").isdigit():
            self._json(record, {"ok": False, "error": "invalid_arguments"})
            return
        with fake._lock:
            fake._seq += 1
            file_id = f"F{fake._seq:08d}"
            fake._uploads[file_id] = {
                "id": file_id, "filename": params["filename"], "length": int(params["length"]),
                "content": None, "completed": False, "channel": None, "thread_ts": None, "title": None,
            }
        self._json(record, {"ok": True, "file_id": file_id, "upload_url": f"{fake.url}/upload/v1/{file_id}"})

    def _m_files_completeUploadExternal(self, record: RecordedRequest, params: dict[str, Any]) -> None:
        fake = self.fake
        try:
            files = json.loads(params.get("files") or "[]")
        except ValueError:
            files = []
        channel_param = params.get("channel_id") or params.get("channels")
        out = []
        with fake._lock:
            channel = fake._channel_id(channel_param) if channel_param else None
            for f in files:
                upload = fake._uploads.get(f.get("id"))
                if upload is None or upload["content"] is None:
                    error = "file_not_found" if upload is None else "file_upload_not_completed"
                    break
                upload.update(completed=True, channel=channel, thread_ts=params.get("thread_ts"),
                              title=f.get("title"))
                if channel and params.get("thread_ts"):
                    parent = fake._find(channel, params["thread_ts"])
                    if parent is not None:
                        parent.files.append(upload["id"])
                out.append({"id": upload["id"], "title": f.get("title"), "name": upload["filename"]})
            else:
                error = None if channel or not channel_param else "channel_not_found"
        if error:
            self._json(record, {"ok": False, "error": error})
        else:
            self._json(record, {"ok": True, "files": out})


def iter_request_texts(fake: FakeSlack, *, skip_authorization: bool = True) -> Iterator[str]:
    """Every request as text (path, headers, body) for secret scans.

    The Authorization header (bot token) is skipped when asked: it necessarily
    carries the token. Webhook paths necessarily carry the webhook URL's secret
    part; callers scanning for that should skip ``path`` of webhook requests.
    """
    for r in list(fake.requests):
        headers = {k: v for k, v in r.headers.items() if not (skip_authorization and k == "authorization")}
        yield "\n".join([r.path if r.api_method != WEBHOOK else "/services/<hook>",
                         json.dumps(headers), r.body.decode("utf-8", "replace")])
