"""Alert settings: the ``[slack]`` table (:class:`~cxhealth.tasks.targets.SlackSettings`,
its one model) with its secrets resolved, as the alerter uses them at runtime.

The token and webhook URL are *values* read at runtime from the environment
variable the table names, wrapped in the project's one
:class:`~cxhealth.tasks.secrets.Secret` (never shown, never pickled), so a
settings object can be printed, logged or put in an exception without leaking
them (contract §3: no Slack token or webhook URL in any output).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxhealth.tasks import rules
from cxhealth.tasks.secrets import Secret
from cxhealth.tasks.targets import ConfigError, SlackSettings, TargetConfigError

__all__ = ["AlertConfigError", "AlertSettings", "DEFAULT_API_BASE", "Secret"]

DEFAULT_API_BASE = "https://slack.com/api/"
_DEFAULT = {key: info.default for key, info in SlackSettings.model_fields.items()}


class AlertConfigError(ConfigError):
    """The ``[slack]`` configuration cannot work (names the setting, never a secret value)."""


@dataclass(frozen=True)
class AlertSettings:
    """How and where alerts are delivered, and how patient delivery is.

    ``mode`` is ``"bot"`` (Web API with a bot token: threads, updates, files) or
    ``"webhook"`` (an incoming webhook: no threads, so repeats are held back
    until ``repeat_interval_s`` and the resolve is a new message). The knobs and
    their defaults are :class:`SlackSettings`'.

    Budgets: ``timeout_s`` bounds every HTTP request (a hung Slack never hangs a
    run); ``rate_limit_budget_s`` is the total Retry-After waiting one run may
    spend on 429s before leaving the rest in the outbox.
    """

    mode: str
    channel: str | None = None
    api_base: str = DEFAULT_API_BASE
    bot_token: Secret | None = field(default=None)
    webhook_url: Secret | None = field(default=None)
    repeat_interval_s: float = _DEFAULT["repeat_interval_s"]
    timeout_s: float = _DEFAULT["timeout"]
    rate_limit_budget_s: float = _DEFAULT["rate_limit_budget_s"]
    max_rate_limit_retries: int = _DEFAULT["max_rate_limit_retries"]
    message_budget_chars: int = _DEFAULT["message_budget_chars"]
    evidence_excerpt_chars: int = 1200
    lease_s: float = _DEFAULT["lease_s"]
    attach_full_json: bool = _DEFAULT["attach_full_json"]
    max_attempts: int = _DEFAULT["max_attempts"]

    def __post_init__(self) -> None:
        if self.mode not in ("bot", "webhook"):
            raise AlertConfigError(f"[slack] mode must be 'bot' or 'webhook', not {self.mode!r}")
        if self.mode == "bot" and not self.channel:
            raise AlertConfigError("[slack] bot mode needs a channel")
        for name in ("bot_token", "webhook_url"):
            value = getattr(self, name)
            if isinstance(value, str):  # accept plain strings, wrap them at once
                if not value:
                    raise AlertConfigError(f"[slack] {name} must be a non-empty string")
                object.__setattr__(self, name, Secret(value, name))
        try:
            rules.http_url(self.api_base)  # the rule [slack] api_base is checked by in targets.toml
        except ValueError as exc:
            raise AlertConfigError(f"[slack] api_base: {exc}") from None
        base = self.api_base if self.api_base.endswith("/") else self.api_base + "/"
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
    def from_slack(cls, slack: SlackSettings, environ: Mapping[str, str] | None = None) -> AlertSettings:
        """The runtime settings of a validated ``[slack]`` table, its secret read from *environ*.

        A named variable that is unset or empty is an :class:`AlertConfigError`
        naming the variable (never a value).
        """
        env = os.environ if environ is None else environ
        knobs: dict[str, Any] = dict(
            repeat_interval_s=slack.repeat_interval_s, timeout_s=slack.timeout,
            rate_limit_budget_s=slack.rate_limit_budget_s, max_rate_limit_retries=slack.max_rate_limit_retries,
            message_budget_chars=slack.message_budget_chars, lease_s=slack.lease_s,
            attach_full_json=slack.attach_full_json, max_attempts=slack.max_attempts)
        if slack.api_base is not None:
            knobs["api_base"] = slack.api_base
        if slack.mode == "bot":
            return cls(mode="bot", channel=slack.channel, bot_token=_secret(env, "bot_token_env", slack.bot_token_env),
                       **knobs)
        url = _secret(env, "webhook_url_env", slack.webhook_url_env)
        if not url.reveal().lower().startswith(("http://", "https://")):
            raise AlertConfigError(f"[slack] the URL in {slack.webhook_url_env} is not an http(s) URL")
        return cls(mode="webhook", webhook_url=url, **knobs)

    @classmethod
    def from_config(cls, slack: Mapping[str, Any] | SlackSettings,
                    environ: Mapping[str, str] | None = None) -> AlertSettings:
        """:meth:`from_slack` of a plain ``[slack]`` table (validated by :class:`SlackSettings`)."""
        if not isinstance(slack, SlackSettings):
            try:
                slack = SlackSettings.from_values(slack, where="[slack]")
            except TargetConfigError as exc:
                raise AlertConfigError(str(exc)) from None
        return cls.from_slack(slack, environ)


def _secret(env: Mapping[str, str], key: str, var: str | None) -> Secret:
    value = env.get(var or "")
    if not value:
        raise AlertConfigError(f"[slack] {key}: environment variable {var} is "
                               f"{'empty' if var in env else 'not set'}")
    return Secret(value, var or key)
