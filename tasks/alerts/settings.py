"""Alert settings: the ``[slack]`` table of targets.toml, plus runtime secrets.

The token and webhook URL are *values* handed in at runtime (read from the
environment variable the config names). They are wrapped in :class:`Secret`, so
a settings object can be printed, logged or put in an exception without leaking
them (contract §3: no Slack token or webhook URL in any output).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_API_BASE = "https://slack.com/api/"


class AlertConfigError(ValueError):
    """The ``[slack]`` configuration cannot work (names the setting, never a secret value)."""


class Secret:
    """A string that never shows itself in ``repr``/``str``/f-strings.

    Only :meth:`reveal` hands the value out, at the one place that must send it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise AlertConfigError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class AlertSettings:
    """How and where alerts are delivered, and how patient delivery is.

    ``mode`` is ``"bot"`` (Web API with a bot token: threads, updates, files) or
    ``"webhook"`` (an incoming webhook: no threads, so repeats are held back
    until ``repeat_interval_s`` and the resolve is a new message).

    Budgets: ``timeout_s`` bounds every HTTP request (a hung Slack never hangs a
    run); ``rate_limit_budget_s`` is the total Retry-After waiting one run may
    spend on 429s before leaving the rest in the outbox.
    """

    mode: str
    channel: str | None = None
    api_base: str = DEFAULT_API_BASE
    bot_token: Secret | None = field(default=None)
    webhook_url: Secret | None = field(default=None)
    repeat_interval_s: float = 3600.0
    timeout_s: float = 10.0
    rate_limit_budget_s: float = 30.0
    max_rate_limit_retries: int = 3
    message_budget_chars: int = 9000
    evidence_excerpt_chars: int = 1200
    lease_s: float = 120.0
    attach_full_json: bool = True
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if self.mode not in ("bot", "webhook"):
            raise AlertConfigError(f"[slack] mode must be 'bot' or 'webhook', not {self.mode!r}")
        if self.mode == "bot" and not self.channel:
            raise AlertConfigError("[slack] bot mode needs a channel")
        for name in ("bot_token", "webhook_url"):
            value = getattr(self, name)
            if isinstance(value, str):  # accept plain strings, wrap them at once
                object.__setattr__(self, name, Secret(value))
        base = self.api_base if self.api_base.endswith("/") else self.api_base + "/"
        if not base.lower().startswith(("http://", "https://")):
            raise AlertConfigError("[slack] api_base must be an http(s) URL")
        object.__setattr__(self, "api_base", base)
        if self.timeout_s <= 0 or self.rate_limit_budget_s < 0 or self.repeat_interval_s < 0:
            raise AlertConfigError("[slack] timeouts and intervals must be positive")
        if int(self.max_attempts) != self.max_attempts or self.max_attempts < 1:
            raise AlertConfigError("[slack] max_attempts must be an integer >= 1")

    @property
    def missing_secret(self) -> str | None:
        """Which secret is needed but absent (a setting name), or None."""
        if self.mode == "bot" and self.bot_token is None:
            return "bot_token"
        if self.mode == "webhook" and self.webhook_url is None:
            return "webhook_url"
        return None

    @classmethod
    def from_config(
        cls, slack: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> AlertSettings:
        """Build settings from the ``[slack]`` table, reading secrets from ``environ``.

        ``webhook_url_env`` selects webhook mode; ``bot_token_env`` + ``channel``
        selects bot mode. A named variable that is unset is an
        :class:`AlertConfigError` naming the variable (never a value).
        """
        env = os.environ if environ is None else environ
        known = {
            "webhook_url_env", "bot_token_env", "channel", "api_base", "repeat_interval_s",
            "timeout_s", "timeout", "rate_limit_budget_s", "max_rate_limit_retries",
            "message_budget_chars", "lease_s", "attach_full_json", "max_attempts",
        }
        unknown = sorted(set(slack) - known)
        if unknown:
            raise AlertConfigError(f"[slack] unknown keys: {', '.join(unknown)}")
        if "bot_token_env" in slack and "webhook_url_env" in slack:
            raise AlertConfigError("[slack] set either webhook_url_env or bot_token_env, not both")
        kwargs: dict[str, Any] = {}
        for key in ("repeat_interval_s", "rate_limit_budget_s", "lease_s"):
            if key in slack:
                kwargs[key] = float(slack[key])
        if "timeout_s" in slack or "timeout" in slack:
            kwargs["timeout_s"] = float(slack.get("timeout_s", slack.get("timeout")))
        for key in ("max_rate_limit_retries", "message_budget_chars", "max_attempts"):
            if key in slack:
                kwargs[key] = int(slack[key])
        if "attach_full_json" in slack:
            kwargs["attach_full_json"] = bool(slack["attach_full_json"])
        if "api_base" in slack:
            kwargs["api_base"] = str(slack["api_base"])
        if "bot_token_env" in slack:
            var = str(slack["bot_token_env"])
            if not env.get(var):
                raise AlertConfigError(f"[slack] bot_token_env: environment variable {var} is "
                                       f"{'empty' if var in env else 'not set'}")
            return cls(mode="bot", channel=slack.get("channel"), bot_token=Secret(env[var]), **kwargs)
        if "webhook_url_env" in slack:
            var = str(slack["webhook_url_env"])
            if not env.get(var):
                raise AlertConfigError(f"[slack] webhook_url_env: environment variable {var} is "
                                       f"{'empty' if var in env else 'not set'}")
            url = env[var]
            if not url.lower().startswith(("http://", "https://")):
                raise AlertConfigError(f"[slack] the URL in {var} is not an http(s) URL")
            return cls(mode="webhook", webhook_url=Secret(url), **kwargs)
        raise AlertConfigError("[slack] needs webhook_url_env, or bot_token_env and channel")
