"""The Redis store: one breaker shared by a fleet of workers.

Atomicity: every operation is ONE call of one Lua script (``redis_script.py``)
on the host's single hash key; Redis runs a script to completion before any
other command, so the read-modify-write cannot interleave with another caller.
The script reads the time with ``TIME``, so the workers' clocks never matter.
Keys are ``<prefix>:{<host>}``: the braces are a Redis Cluster hash tag.

The client has short timeouts and NO retries: a timed-out EVALSHA may have run
on the server, and running it again could hand a transition to nobody (or a
second probe lease to the same caller). A failure is reported as
:class:`StoreUnavailable` and the caller falls back instead.
"""

from __future__ import annotations

import json
from typing import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .url import redact_url
from .model import (
    BreakerConfig,
    BreakerState,
    BreakerStatus,
    Decision,
    Override,
    Transition,
    TransitionKind,
    to_datetime,
)
from .redis_script import BREAKER_LUA
from .store import RecordUnreadable, StoreMisconfigured, StoreUnavailable

DEFAULT_KEY_PREFIX = "cxhealth:breaker"


class RedisStore:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_s: float = 1.0,
        time_offset: Callable[[], float] | None = None,
    ) -> None:
        """``time_offset`` (tests only) returns seconds added to the server's clock."""
        self.description = redact_url(url)
        self.key_prefix = key_prefix
        self._time_offset = time_offset
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
            )
            self._script = self._client.register_script(BREAKER_LUA)
            self._client.ping()
        except (redis.AuthenticationError, redis.ResponseError) as exc:  # e.g. WRONGPASS, DB index out of range
            raise StoreMisconfigured(
                f"redis store {self.description} refuses this configuration: {_describe(exc)}"
            ) from exc
        except (redis.RedisError, OSError, ValueError) as exc:
            raise StoreUnavailable(
                f"redis store {self.description} unreachable: {_describe(exc)}"
            ) from exc

    def key(self, host: str) -> str:
        return f"{self.key_prefix}:{{{host}}}"

    def _run(self, host: str, config: BreakerConfig, op: str, *args: str) -> list:
        offset = self._time_offset() if self._time_offset else 0.0
        argv = [
            op, repr(float(offset)), str(config.threshold), repr(float(config.window_s)),
            repr(float(config.open_s)), repr(float(config.max_open_s)),
            repr(float(config.lease_s)), *args,
        ]
        try:
            return self._script(keys=[self.key(host)], args=argv)
        except redis.ResponseError as exc:
            text = str(exc)
            code = text.split(" ", 1)[0]
            if code == "WRONGTYPE" or code.startswith("user_script") or "cxhealth breaker: unreadable" in text or (
                    code == "ERR" and "user_script" in text):
                # this host's key holds something the script cannot read: that host only
                raise RecordUnreadable(host, text.split("\n")[0][:120]) from None
            raise StoreUnavailable(  # READONLY, MISCONF, OOM ...: the store refuses writes
                f"redis store {self.description} failed: {_describe(exc)}"
            ) from exc
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(
                f"redis store {self.description} failed: {_describe(exc)}"
            ) from exc

    # -- the store interface ------------------------------------------------

    def admit(self, host: str, config: BreakerConfig, new_lease: str) -> Decision:
        try:
            return self._admit(host, config, new_lease)
        except (ValueError, TypeError) as exc:
            raise RecordUnreadable(host, type(exc).__name__) from None

    def _admit(self, host: str, config: BreakerConfig, new_lease: str) -> Decision:
        (admitted, state, at, is_probe, lease, last_failure, override, reason,
         epoch, wait, note_success) = self._run(host, config, "admit", new_lease)
        return Decision(
            host=host,
            admitted=bool(admitted),
            state=BreakerState(_text(state)),
            reopen_at=_when(at),
            is_probe=bool(is_probe),
            lease=_text(lease),
            last_failure=_json(last_failure),
            override=Override(_text(override)) if override else None,
            override_reason=_text(reason),
            epoch=int(epoch),
            store=self.name,
            wait=bool(wait),
            note_success=bool(note_success),
        )

    def record_failure(
        self, host: str, config: BreakerConfig, summary_json: str,
        epoch: int | None, lease: str | None,
    ) -> Transition | None:
        reply = self._run(
            host, config, "failure", summary_json,
            "" if epoch is None else str(epoch), lease or "",
        )
        return _transition(host, reply)

    def record_success(
        self, host: str, config: BreakerConfig, epoch: int | None, lease: str | None,
    ) -> Transition | None:
        reply = self._run(
            host, config, "success", "", "" if epoch is None else str(epoch), lease or ""
        )
        return _transition(host, reply)

    def amend_failure(self, host: str, early_json: str, final_json: str) -> None:
        self._run(host, BreakerConfig(), "amend", early_json, final_json)

    def release(self, host: str, lease: str | None) -> None:
        if lease:
            self._run(host, BreakerConfig(), "release", lease)

    def set_override(self, host: str, override: Override | None, reason: str | None) -> None:
        # The config does not matter to an override; any valid one will do.
        self._run(
            host, BreakerConfig(), "override",
            override.value if override else "", reason or "",
        )

    def status(self, host: str, config: BreakerConfig) -> BreakerStatus:
        try:
            return self._status(host, config)
        except (ValueError, TypeError) as exc:
            raise RecordUnreadable(host, type(exc).__name__) from None

    def reset(self, host: str) -> None:
        try:
            self._client.delete(self.key(host))
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis store {self.description} failed: {_describe(exc)}") from exc

    def _status(self, host: str, config: BreakerConfig) -> BreakerStatus:
        (state, in_window, reopen_at, trips, override, reason, last_failure,
         lease_expires, epoch, _now) = self._run(host, config, "status")
        underlying = BreakerState(_text(state))
        override_value = Override(_text(override)) if override else None
        if override_value is Override.FORCED_OPEN:
            effective = BreakerState.OPEN
        elif override_value is Override.DISABLED:
            effective = BreakerState.CLOSED
        else:
            effective = underlying
        return BreakerStatus(
            host=host,
            state=effective,
            underlying_state=underlying,
            failures_in_window=int(in_window),
            reopen_at=_when(reopen_at) if underlying is BreakerState.OPEN else None,
            trips=int(trips),
            override=override_value,
            override_reason=_text(reason),
            last_failure=_json(last_failure),
            probe_lease_expires_at=(
                _when(lease_expires) if underlying is BreakerState.HALF_OPEN else None
            ),
            epoch=int(epoch),
        )

    def close(self) -> None:
        try:
            self._client.close()
        except (redis.RedisError, OSError):
            pass


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _when(value: bytes | str | None):
    text = _text(value)
    return to_datetime(float(text)) if text else None


def _json(value: bytes | str | None):
    text = _text(value)
    return json.loads(text) if text else None


def _transition(host: str, reply: list) -> Transition | None:
    if not reply:
        return None
    kind, at, reopen_at, summary, trips = reply
    return Transition(
        kind=TransitionKind(_text(kind)),
        host=host,
        at=_when(at),
        reopen_at=_when(reopen_at),
        summary=_json(summary),
        trips=int(trips),
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
