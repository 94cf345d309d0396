"""targets.toml: one model per table (contract §2), and the loader.

* ``[[target]]`` → :class:`Target` (``[defaults]`` is :data:`TargetKeys`: the
  same keys, each optional);
* ``[slack]`` → :class:`SlackSettings`;
* ``[breaker]`` → :class:`BreakerSettings`;
* the whole file → :class:`TargetsConfig`.

These pydantic models are the only declaration of each key: its type, its
default, its description and its rule (a validator of :mod:`cxhealth.tasks.rules`,
the same function the command line uses). The Prefect blocks subclass them
(:mod:`cxhealth.blocks`), ``import_toml`` walks their fields, and the loader's
list of valid keys is their field names — so adding a key to targets.toml is
adding one field here.

Secrets are *named*, never stored: a target holds ``client_secret_env`` (the
variable's name) and resolves the value at use time into a
:class:`~cxhealth.tasks.secrets.Secret`. Every configuration problem is one line
naming the file, the target and the key: :class:`TargetConfigError`.
"""

from __future__ import annotations

import contextvars
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from cxhealth.tasks import rules
from cxhealth.tasks.platforms import DEFAULT_ENDPOINTS, PlatformError, PlatformProfile, build_profile, host_port
from cxhealth.tasks.rules import Resolve
from cxhealth.tasks.secrets import Secret
from cxhealth.tasks.tls.engine import DiagnoseOptions
from cxhealth.tasks.tls.model import Endpoint
from cxhealth.tasks.tls.policy import BASELINE_CIPHERS, PolicyError, TLSPolicy
from cxhealth.tasks.tls.proxy import ProxyConfigError, ProxySettings, parse_proxy_url, route, settings_from_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 needs the backport (tomli; python_version<'3.11')
    import tomli as tomllib

__all__ = [
    "BreakerSettings", "ConfigError", "HistorySettings", "Resolve", "Secret", "SlackSettings", "TLS_POLICY_KEYS", "Target", "TargetConfigError",
    "TargetKeys", "TLSPolicyKeys", "SlackKeys", "TargetsConfig", "load_targets", "optional_keys", "parse_targets",
    "resolve_secret",
]

# Keys that would put a secret inline: refused with a pointer to the *_env key.
_INLINE_SECRET_KEYS = {
    "client_secret": "client_secret_env",
    "access_key_secret": "access_key_secret_env",
    "webhook_url": "webhook_url_env",
    "bot_token": "bot_token_env",
    "password": "access_key_secret_env",
    "proxy_password": "proxy_password_env",
}


class ConfigError(ValueError):
    """A configuration that cannot be used (one actionable line); the CLI makes it exit 2.

    The root of every configuration error: the targets file's, the blocks', the
    breaker store's, the alerts'.
    """


# Set while Target.from_values validates: pydantic calls Target.__init__ (a custom one) from
# model_validate, whose error from_values prefixes with its own WHERE; __init__ must not add "<values>".
_IN_FROM_VALUES: contextvars.ContextVar[bool] = contextvars.ContextVar("cxhealth_target_from_values", default=False)


class TargetConfigError(ConfigError):
    """A targets file (or block values) that cannot be used; one actionable line."""


def resolve_secret(env_name: str, env: Mapping[str, str] | None = None, *, target: str = "") -> Secret:
    """The value of the environment variable *env_name*, as a :class:`Secret`.

    Raises:
        TargetConfigError: the variable is unset or empty (the message names it).
    """
    source = os.environ if env is None else env
    value = source.get(env_name)
    where = f"target {target!r}: " if target else ""
    if not value:
        raise TargetConfigError(
            f"{where}environment variable {env_name} is {'empty' if env_name in source else 'not set'}; "
            f"export it with the secret "
            f"(the targets file names the variable, never the value)")
    if value != value.strip():
        # A secret read from a file with `$(cat ...)` or `echo` keeps its newline; the platform
        # would only answer 401 invalid_client. Named here, never shown.
        ends = "ends" if value[-1:].isspace() else "starts"
        kind = "a newline" if ("\n" in value or "\r" in value) else "whitespace"
        raise TargetConfigError(
            f"{where}environment variable {env_name} {ends} with {kind}; secrets never contain any: "
            f"remove it (e.g. export {env_name}=\"$(printf %s \"${env_name}\" | tr -d '\\r\\n')\")")
    return Secret(value, env_name)


# ---------------------------------------------------------------------------
# The rules as pydantic types (the functions are in tasks/rules.py)
# ---------------------------------------------------------------------------

def _rule(check: Any) -> BeforeValidator:
    return BeforeValidator(check)


TargetName = Annotated[str, _rule(rules.target_name)]
EnvName = Annotated[str, _rule(rules.env_name)]
HttpsUrl = Annotated[str, _rule(rules.https_url)]
HttpUrl = Annotated[str, _rule(rules.http_url)]
Seconds = Annotated[float, _rule(rules.positive_number)]
StepTimeout = Annotated[float, _rule(rules.step_timeout)]
NonNegative = Annotated[float, _rule(rules.non_negative_number)]
TLSVersion = Annotated[str, _rule(rules.tls_version)]
Pin = Annotated[str, _rule(rules.spki_pin)]
ResolveEntry = Annotated[str, _rule(rules.resolve_entry)]
EndpointRef = Annotated[str, _rule(rules.endpoint)]
NonEmpty = Annotated[str, Field(min_length=1)]
StrList = _rule(rules.str_list)


def _whole(minimum: int) -> BeforeValidator:
    return _rule(lambda v: rules.whole_number(v, minimum))


def _store_url(value: object) -> str:
    from cxhealth.tasks.breaker.url import check_store_url

    if not isinstance(value, str):
        raise ValueError(f"must be a store URL string, not {value!r}")
    check_store_url(value)  # ValueError: one line, the password redacted
    return value


class _Table(BaseModel):
    """A table of targets.toml: frozen, unknown keys refused, inputs never echoed in errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, where: str) -> Any:
        """Validate plain values; any problem is one :class:`TargetConfigError` line starting with *where*."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise TargetConfigError(_one_line(exc, where, cls)) from None


def _one_line(exc: ValidationError, where: str, model: type[BaseModel]) -> str:
    """The first problem of a validation error as ``where: key: what is wrong``."""
    error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    kind, message = error["type"], error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = f"unknown key {key!r}; valid keys: {', '.join(sorted(model.model_fields))}"
        return f"{where}: {message}"
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"


def optional_keys(model: type[BaseModel], name: str, keys: tuple[str, ...] | None = None,
                  doc: str = "") -> type[BaseModel]:
    """The keys of *model* (or the subset *keys*), each optional with default None,
    with the same types, rules and descriptions, and without its cross-key checks.

    What ``[defaults]`` holds, and what a Prefect block stores (None: not set
    here, take it from elsewhere or the model's default).
    """
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        if keys is not None and key not in keys:
            continue
        annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[key] = (Optional[annotation], Field(default=None, description=info.description))
    return create_model(name, __module__=__name__, __doc__=doc or f"The keys of {model.__name__}, each optional.",
                        **fields)


# ---------------------------------------------------------------------------
# [[target]]
# ---------------------------------------------------------------------------

class Target(_Table):
    """One integration to check (a ``[[target]]`` of contract §2).

    Build it from plain values (``Target(...)`` or :meth:`from_values`; the loader
    and the blocks both do): any problem raises :class:`TargetConfigError`.
    Secrets are held only as environment variable names; see :meth:`client_secret`.
    """

    name: TargetName = Field(description="Unique target name, used in alerts and breaker keys.")
    platform: str = Field(description="The platform: genesys, nice or generic.")
    client_id: NonEmpty = Field(description="The OAuth client id.")
    client_secret_env: EnvName = Field(description="Environment variable holding the OAuth client secret.")
    region: Optional[str] = Field(default=None, description="Platform region; derives the API and token hosts.")
    api_base: Optional[HttpsUrl] = Field(default=None, description="API base URL (overrides the region's).")
    token_url: Optional[HttpsUrl] = Field(default=None, description="OAuth token URL (overrides the region's).")
    issuer: Optional[HttpsUrl] = Field(default=None, description="NICE: the issuer (overrides the region's).")
    tenant_id: Optional[str] = Field(default=None, description="NICE: tenant id (else read from the id_token).")
    grant: Optional[str] = Field(default=None, description="Generic: client_credentials (default) or password.")
    access_key_id: Optional[str] = Field(default=None, description="NICE: access key id (password grant).")
    access_key_secret_env: Optional[EnvName] = Field(
        default=None, description="NICE: environment variable holding the access key secret.")
    endpoints: Optional[Annotated[tuple[EndpointRef, ...], StrList]] = Field(
        default=None, description="Paths or https URLs to check (default: the platform's smoke test).")
    ca_bundle: Optional[str] = Field(default=None, description="PEM trust store path (default: the system store).")
    resolve: Annotated[tuple[ResolveEntry, ...], StrList] = Field(
        default=(), description="host:port:addr overrides, as curl's --resolve.")
    sni: Optional[str] = Field(default=None, description="SNI to send instead of the host name.")
    expect_issuers: Annotated[tuple[NonEmpty, ...], StrList] = Field(
        default=(), description="Substrings of a CA subject the chain is expected to contain.")
    pins: Annotated[tuple[Pin, ...], StrList] = Field(
        default=(), description="SPKI pins (sha256/BASE64); one must match a certificate of the chain.")
    tls_min: TLSVersion = Field(default="1.2", description='Lowest TLS version the client allows, e.g. "1.2".')
    tls_max: TLSVersion = Field(default="1.3", description='Highest TLS version the client allows, e.g. "1.3".')
    ciphers: Optional[str] = Field(default=None, description="OpenSSL TLS 1.2 cipher string (default: baseline).")
    client_cert: Optional[str] = Field(default=None, description="PEM client certificate path (mTLS).")
    client_key: Optional[str] = Field(default=None, description="PEM client key path (mTLS).")
    timeout: StepTimeout = Field(default=5.0, description="Seconds per network step (at most 300).")
    proxy: Optional[NonEmpty] = Field(
        default=None, description="http://[user@]host:port (default: HTTPS_PROXY/NO_PROXY of the environment).")
    proxy_password_env: Optional[EnvName] = Field(
        default=None, description="Environment variable holding the proxy user's password.")
    no_proxy: Annotated[bool, _rule(rules.boolean)] = Field(
        default=False, description="Connect directly even if the environment sets a proxy.")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            if _IN_FROM_VALUES.get():  # from_values names the source and the target once
                raise TargetConfigError(_one_line(exc, "", Target).removeprefix(": ")) from None
            raise TargetConfigError(_one_line(exc, f"<values>: target {values.get('name')!r}", Target)) from None

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, where: str = "<values>") -> "Target":
        """Validate plain values; problems read ``WHERE: target 'NAME': KEY: what``."""
        token = _IN_FROM_VALUES.set(True)
        try:
            return super().from_values(values, where=f"{where}: target {values.get('name')!r}")
        finally:
            _IN_FROM_VALUES.reset(token)

    @model_validator(mode="after")
    def _check_together(self) -> "Target":
        """The rules that need several keys (the platform, the grant, files, the TLS policy)."""
        try:
            profile = self.profile()
        except PlatformError as exc:
            text = str(exc)
            key = ("grant" if "grant" in text else "token_url/api_base" if "generic needs" in text
                   else "region" if "region" in text else "platform")
            raise ValueError(f"{key}: {exc}") from None
        if profile.grant == "password" and not (self.access_key_id and self.access_key_secret_env):
            raise ValueError(f"access_key_id: the {profile.grant} grant needs access_key_id and access_key_secret_env")
        for key in ("ca_bundle", "client_cert", "client_key"):
            value = getattr(self, key)
            if value is not None and not Path(value).expanduser().is_file():
                raise ValueError(f"{key}: {value} does not exist or is not a file")
        try:
            self.policy()
        except PolicyError as exc:
            raise ValueError(f"tls_min/tls_max/ciphers: {exc}") from None
        if self.proxy is not None:
            try:
                parse_proxy_url(self.proxy, source="proxy", password_env=self.proxy_password_env)
            except ProxyConfigError as exc:
                raise ValueError(f"proxy: {str(exc).removeprefix('proxy: ')}") from None
        return self

    # -- derived values ----------------------------------------------------
    def profile(self) -> PlatformProfile:
        """Token URL, API base (None until NICE discovery) and grant."""
        return build_profile(self.platform, region=self.region, api_base=self.api_base,
                             token_url=self.token_url, issuer=self.issuer, grant=self.grant)

    @property
    def endpoint_paths(self) -> tuple[str, ...]:
        """The configured endpoints, or the platform's cheap default smoke test."""
        return self.endpoints if self.endpoints is not None else DEFAULT_ENDPOINTS[self.platform]

    def policy(self) -> TLSPolicy:
        """The client TLS policy every connection of this target uses."""
        return TLSPolicy(tls_min=self.tls_min, tls_max=self.tls_max, ciphers=self.ciphers or BASELINE_CIPHERS,
                         ca_bundle=self.ca_bundle, client_cert=self.client_cert, client_key=self.client_key,
                         timeout=self.timeout)

    def diagnose_options(self) -> DiagnoseOptions:
        return DiagnoseOptions(expect_issuers=self.expect_issuers, pins=self.pins)

    @property
    def resolve_map(self) -> dict[tuple[str, int], str]:
        """``{(host, port): address}`` from the ``resolve`` overrides (a fresh dict each time)."""
        return dict(_resolve_map(tuple(self.resolve)))

    def proxy_settings(self) -> ProxySettings:
        """How this target's connections pick their proxy (``proxy``, ``no_proxy``, the environment)."""
        explicit = (parse_proxy_url(self.proxy, source=f"target {self.name!r}: proxy",
                                    password_env=self.proxy_password_env) if self.proxy else None)
        if self.no_proxy:  # direct, whatever the environment or [defaults] say
            return ProxySettings(explicit=None, ignore_environment=True)
        return ProxySettings(explicit=explicit, password_env=self.proxy_password_env)

    def check_proxy(self, env: Mapping[str, str] | None = None) -> None:
        """Fail now, in one line, on an unusable proxy setting (the environment's too) or an unset password."""
        if self.no_proxy:  # direct: neither a [defaults] proxy nor its password variable matters
            return
        try:
            settings_from_options(None if self.no_proxy else self.proxy, self.proxy_password_env,
                                  self.no_proxy, env, where=f"target {self.name!r}: proxy")
        except ProxyConfigError as exc:
            raise TargetConfigError(f"target {self.name!r}: {exc}") from None

    def addresses_for(self, host: str, port: int = 443) -> tuple[str, ...]:
        """Every ``resolve`` address of (host, port), in order; empty without an override (contract §4)."""
        for r in map(Resolve.parse, self.resolve):
            if (r.host, r.port) == (host.lower(), port):
                return r.addresses
        return ()

    def endpoint_for(self, host: str, port: int = 443) -> Endpoint:
        """The TLS engine's view of one host of this target (resolve, SNI and proxy applied)."""
        host = host.lower()
        endpoint = Endpoint(host=host, port=port, sni=self.sni, address=self.resolve_map.get((host, port)))
        return route(endpoint, self.proxy_settings(), self.resolve_map)

    def endpoints_to_diagnose(self, api_base: str | None = None) -> tuple[Endpoint, ...]:
        """Every host this target contacts, token host first (diagnosed before any credential).

        NICE's API host is known only after discovery: pass it as *api_base*.
        """
        profile = self.profile()
        urls = [profile.token_url]
        if profile.discovery_url:
            urls.append(profile.discovery_url)
        base = api_base or profile.api_base
        if base:
            urls.append(base)
        urls += [ep for ep in self.endpoint_paths if ep.startswith("https://")]
        seen: dict[tuple[str, int], Endpoint] = {}
        for url in urls:
            key = host_port(url)
            if key not in seen:
                seen[key] = self.endpoint_for(*key)
        return tuple(seen.values())

    # -- secrets, resolved at use time -----------------------------------------
    def client_secret(self, env: Mapping[str, str] | None = None) -> Secret:
        return resolve_secret(self.client_secret_env, env, target=self.name)

    def access_key_secret(self, env: Mapping[str, str] | None = None) -> Secret:
        if not self.access_key_secret_env:
            raise TargetConfigError(f"target {self.name!r}: access_key_secret_env is not set")
        return resolve_secret(self.access_key_secret_env, env, target=self.name)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (names of secrets, never their values)."""
        return self.model_dump(mode="json")


#: Every key of a ``[[target]]``, each optional: what ``[defaults]`` holds, and
#: the fields of the ``CxTarget`` block (which adds where its secrets come from).
TargetKeys = optional_keys(Target, "TargetKeys", doc="The keys of a [[target]], each optional ([defaults], blocks).")

#: The client TLS policy keys several targets may share (``[defaults]``' TLS keys; the ``CxTLSPolicy`` block).
TLS_POLICY_KEYS = ("tls_min", "tls_max", "ciphers", "ca_bundle", "timeout", "pins", "expect_issuers")
TLSPolicyKeys = optional_keys(Target, "TLSPolicyKeys", TLS_POLICY_KEYS,
                              doc="A client TLS policy shared by several targets, each key optional.")


# ---------------------------------------------------------------------------
# [slack]
# ---------------------------------------------------------------------------

class SlackSettings(_Table):
    """``[slack]``: webhook mode (``webhook_url_env``) or bot mode (``bot_token_env`` + ``channel``),
    and how patient delivery is. The alerter's runtime settings are built from it
    (:meth:`cxhealth.tasks.alerts.AlertSettings.from_slack`)."""

    webhook_url_env: Optional[EnvName] = Field(
        default=None, description="Webhook mode: environment variable holding the incoming webhook URL.")
    bot_token_env: Optional[EnvName] = Field(
        default=None, description="Bot mode: environment variable holding the bot token (xoxb-...).")
    channel: Optional[NonEmpty] = Field(default=None, description="Bot mode: the channel id or name.")
    api_base: Optional[HttpUrl] = Field(
        default=None, description="Slack Web API base URL (default: https://slack.com/api/; tests, proxies).")
    repeat_interval_s: NonNegative = Field(
        default=3600.0, description="Webhook mode: seconds before an open incident is posted again.")
    timeout: StepTimeout = Field(default=10.0, description="Seconds each Slack request may take (at most 300).")
    rate_limit_budget_s: NonNegative = Field(
        default=30.0, description="Seconds of Retry-After waiting one run may spend on 429s.")
    max_rate_limit_retries: Annotated[int, _whole(0)] = Field(
        default=3, description="How often one request is retried after a 429.")
    message_budget_chars: Annotated[int, _whole(1000)] = Field(
        default=9000, description="Largest message (JSON characters); longer ones are shortened.")
    lease_s: Seconds = Field(default=120.0, description="Seconds a run may hold an outbox alert while sending it.")
    max_attempts: Annotated[int, _whole(1)] = Field(
        default=10, description="Deliveries tried per alert before it becomes a dead letter.")
    attach_full_json: bool = Field(
        default=True, description="Bot mode: attach the full diagnosis JSON to the thread when a message is cut.")

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, where: str = "[slack]") -> "SlackSettings":
        return super().from_values(values, where=where)

    @model_validator(mode="after")
    def _one_mode(self) -> "SlackSettings":
        if self.webhook_url_env and self.bot_token_env:
            raise ValueError("set either webhook_url_env or bot_token_env, not both")
        if not self.webhook_url_env and not (self.bot_token_env and self.channel):
            raise ValueError("set webhook_url_env, or bot_token_env and channel")
        return self

    @property
    def mode(self) -> str:
        return "bot" if self.bot_token_env else "webhook"

    def webhook_url(self, env: Mapping[str, str] | None = None) -> Secret:
        return resolve_secret(self.webhook_url_env or "", env, target="slack")

    def bot_token(self, env: Mapping[str, str] | None = None) -> Secret:
        return resolve_secret(self.bot_token_env or "", env, target="slack")


#: The ``[slack]`` keys, each optional (the ``CxSlackSettings`` block's plain fields).
SlackKeys = optional_keys(SlackSettings, "SlackKeys", doc="The keys of [slack], each optional (blocks).")


# ---------------------------------------------------------------------------
# [breaker]
# ---------------------------------------------------------------------------

class BreakerSettings(_Table):
    """``[breaker]`` with the contract's defaults (the ``CxBreakerSettings`` block subclasses it)."""

    threshold: Annotated[int, _whole(1)] = Field(default=2, description="Handshake failures that open the breaker.")
    window_s: Seconds = Field(default=60.0, description="Seconds within which those failures count.")
    open_s: Seconds = Field(default=30.0, description="First open time in seconds; doubles per consecutive trip.")
    max_open_s: Seconds = Field(default=300.0, description="Longest open time in seconds.")
    lease_s: Optional[Seconds] = Field(
        default=None, description="Seconds a probe may take before another caller probes in its place "
                                  "(default and floor: the worst case of one check of any target).")
    store: Annotated[str, _rule(_store_url)] = Field(
        default="sqlite:///~/.cxhealth/breaker.sqlite3",
        description="sqlite:///path or redis://host:port/db, shared by every worker.")

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, where: str = "[breaker]") -> "BreakerSettings":
        return super().from_values(values, where=where)

    @model_validator(mode="after")
    def _open_times(self) -> "BreakerSettings":
        if self.max_open_s < self.open_s:
            raise ValueError(f"max_open_s: must be >= open_s ({self.open_s})")
        return self


# ---------------------------------------------------------------------------
# [history]
# ---------------------------------------------------------------------------

def _history_url(value: object) -> str:
    from cxhealth.tasks.history.store import check_history_url

    if not isinstance(value, str):
        raise ValueError(f"must be a store URL string, not {value!r}")
    check_history_url(value)
    return value


class HistorySettings(_Table):
    """``[history]`` (contract §4) with its defaults: where observations go and how long they stay."""

    store: Annotated[str, _rule(_history_url)] = Field(
        default="sqlite:///~/.cxhealth/history.sqlite3",
        description="sqlite:///path or postgresql://user@host/db (the database exists; tables are created).")
    retention_days: Annotated[int, _whole(1)] = Field(default=30, description="Days observations are kept.")


# ---------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TargetsConfig:
    """Everything a targets file says."""

    targets: tuple[Target, ...]
    slack: SlackSettings | None = None
    breaker: BreakerSettings = BreakerSettings()
    source: str = "<values>"
    history: HistorySettings = HistorySettings()

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise TargetConfigError(
            f"{self.source}: no target named {name!r}; targets: {', '.join(t.name for t in self.targets)}")


_TABLES = ("defaults", "target", "slack", "breaker", "history")
_PATH_KEYS = ("ca_bundle", "client_cert", "client_key")


#: Limits of a targets file (issue 14): one run checks at most MAX_TARGETS targets of at
#: most MAX_ENDPOINTS endpoints each; the file itself is at most MAX_FILE_BYTES.
MAX_TARGETS = 1000
MAX_ENDPOINTS = 100
MAX_FILE_BYTES = 4 * 1024 * 1024

_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"), (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
         (b"\xfe\xff", "UTF-16 (big-endian)"), (b"\xff\xfe", "UTF-16 (little-endian)"))


def decode_targets_text(raw: bytes, source: str) -> str:
    """The file's bytes as text, or one line that names what is wrong with them:
    too large, UTF-16/32 (say the encoding), binary, or not UTF-8. A UTF-8 byte-order
    mark (as some Windows editors write) is accepted and dropped."""
    if len(raw) > MAX_FILE_BYTES:
        raise TargetConfigError(f"{source}: the targets file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB "
                                f"(limits: {MAX_TARGETS} targets, {MAX_ENDPOINTS} endpoints per target)")
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise TargetConfigError(f"{source}: the targets file is encoded as {name}; save it as UTF-8")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark: harmless, dropped
    if b"\x00" in raw[:4096]:
        even, odd = raw[0:4096:2].count(0), raw[1:4096:2].count(0)
        if odd > len(raw[:4096]) // 4 and even == 0:
            raise TargetConfigError(f"{source}: the targets file is encoded as UTF-16 (little-endian, no BOM); "
                                    "save it as UTF-8")
        if even > len(raw[:4096]) // 4 and odd == 0:
            raise TargetConfigError(f"{source}: the targets file is encoded as UTF-16 (big-endian, no BOM); "
                                    "save it as UTF-8")
        raise TargetConfigError(f"{source}: the targets file is not text (a NUL byte at offset {raw.index(0)}): "
                                "is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise TargetConfigError(f"{source}: the targets file is not UTF-8 (byte 0x{raw[exc.start]:02x} on line "
                                f"{line}); save it as UTF-8") from None


def load_targets(path: str | os.PathLike[str]) -> TargetsConfig:
    """Read and validate a targets.toml (contract §2).

    Relative ``ca_bundle``/``client_cert``/``client_key`` paths are relative to the file.

    Raises:
        TargetConfigError: unreadable file, invalid TOML, or an invalid key (one line).
    """
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TargetConfigError(f"{p}: cannot read the targets file ({exc.strerror or exc})") from None
    text = decode_targets_text(raw, str(p))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_targets(data, source=str(p), base_dir=p.parent)


def parse_targets(data: Mapping[str, Any], *, source: str = "<values>",
                  base_dir: str | os.PathLike[str] | None = None) -> TargetsConfig:
    """Validate an already-parsed targets document (dicts as from TOML)."""
    unknown = set(data) - set(_TABLES)
    if unknown:
        raise TargetConfigError(
            f"{source}: unknown table {sorted(unknown)[0]!r}: use [defaults], [[target]], [slack], [breaker], [history]")
    defaults = _table(data, "defaults", source, Target)
    _validate_defaults(defaults, source)
    raw_targets = data.get("target", [])
    if not isinstance(raw_targets, list) or not raw_targets:
        raise TargetConfigError(f"{source}: no [[target]] entries; add at least one [[target]] table")
    if len(raw_targets) > MAX_TARGETS:
        raise TargetConfigError(f"{source}: {len(raw_targets)} [[target]] tables; at most {MAX_TARGETS} per file "
                                "(split them over several files and runs)")
    for index, raw in enumerate(raw_targets, 1):
        endpoints = raw.get("endpoints") if isinstance(raw, dict) else None
        if isinstance(endpoints, list) and len(endpoints) > MAX_ENDPOINTS:
            raise TargetConfigError(f"{source}: target {raw.get('name', f'#{index}')!r}: endpoints: "
                                    f"{len(endpoints)} entries; at most {MAX_ENDPOINTS} per target")
    targets: list[Target] = []
    for index, raw in enumerate(raw_targets, 1):
        if not isinstance(raw, dict):
            raise TargetConfigError(f"{source}: target #{index} is not a table")
        name = raw.get("name", f"#{index}")
        _check_keys(raw, f"{source}: target {name!r}", Target)
        values = {**defaults, **raw}
        if "name" not in values:
            raise TargetConfigError(f"{source}: target #{index}: name: is required")
        for key in _PATH_KEYS:
            if isinstance(values.get(key), str) and base_dir is not None:
                values[key] = str(Path(base_dir, Path(values[key]).expanduser()))
        targets.append(Target.from_values(values, where=source))
    names = [t.name for t in targets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TargetConfigError(f"{source}: target {duplicates[0]!r}: name: must be unique (used twice)")
    slack = None
    if "slack" in data:
        slack = SlackSettings.from_values(_table(data, "slack", source, SlackSettings), where=f"{source}: [slack]")
    breaker = BreakerSettings.from_values(_table(data, "breaker", source, BreakerSettings),
                                          where=f"{source}: [breaker]")
    history = HistorySettings.from_values(_table(data, "history", source, HistorySettings),
                                          where=f"{source}: [history]")
    return TargetsConfig(targets=tuple(targets), slack=slack, breaker=breaker, source=source, history=history)


def _validate_defaults(defaults: Mapping[str, Any], source: str) -> None:
    try:
        TargetKeys.model_validate(dict(defaults))
    except ValidationError as exc:
        raise TargetConfigError(_one_line(exc, f"{source}: [defaults]", Target)) from None


def _table(data: Mapping[str, Any], key: str, source: str, model: type[BaseModel]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TargetConfigError(f"{source}: [{key}] must be a table")
    _check_keys(value, f"{source}: [{key}]", model)
    return dict(value)


def _check_keys(table: Mapping[str, Any], where: str, model: type[BaseModel]) -> None:
    """Unknown keys, and secrets written inline, each with the key to use instead."""
    valid = model.model_fields
    for key in table:
        if key in _INLINE_SECRET_KEYS:
            raise TargetConfigError(
                f"{where}: {key}: secrets are never written inline; put the value in an "
                f"environment variable and name it with {_INLINE_SECRET_KEYS[key]}")
        if key not in valid:
            raise TargetConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")


@functools.lru_cache(maxsize=256)
def _resolve_map(entries: tuple[str, ...]) -> tuple[tuple[tuple[str, int], str], ...]:
    """The parsed ``resolve`` list, once per distinct list: a fleet's targets share their
    [defaults] list, and each connection asked for it again (issue 16's profile: 44,000
    parses, a third of a 333-target flow run's check time, for 17 entries)."""
    return tuple(((r.host, r.port), r.address) for r in map(Resolve.parse, entries))
