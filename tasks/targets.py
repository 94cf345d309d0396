"""Targets: the one model of "what to check", loaded from targets.toml (contract §2).

One frozen :class:`Target` per ``[[target]]``; ``[defaults]`` fills any key a
target leaves out; ``[slack]`` and ``[breaker]`` become plain settings values so
every part of the tool reads the file through this loader. Prefect blocks build
the same :class:`Target` from plain values (its constructor validates).

Secrets are *named*, never stored: a target holds ``client_secret_env`` (the
variable's name) and resolves the value at use time into a :class:`Secret`,
whose repr never shows it. Every configuration problem is one line naming the
file, the target and the key: :class:`TargetConfigError`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from cxhealth.tasks.platforms import DEFAULT_ENDPOINTS, PlatformError, PlatformProfile, build_profile, host_port
from cxhealth.tasks.tls.engine import DiagnoseOptions
from cxhealth.tasks.tls.model import Endpoint
from cxhealth.tasks.tls.policy import BASELINE_CIPHERS, PolicyError, TLSPolicy
from cxhealth.tasks.tls.proxy import ProxyConfigError, ProxySettings, parse_proxy_url, route, settings_from_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 needs the backport (tomli; python_version<'3.11')
    import tomli as tomllib

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Keys that would put a secret inline: refused with a pointer to the *_env key.
_INLINE_SECRET_KEYS = {
    "client_secret": "client_secret_env",
    "access_key_secret": "access_key_secret_env",
    "webhook_url": "webhook_url_env",
    "bot_token": "bot_token_env",
    "password": "access_key_secret_env",
    "proxy_password": "proxy_password_env",
}


class TargetConfigError(ValueError):
    """A targets file (or block values) that cannot be used; one actionable line."""


class Secret:
    """A secret value that never shows itself in repr/str/format.

    ``reveal()`` is the one way out; call it only where the value goes on the wire.
    """

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str = "secret") -> None:
        self._value = value
        self.name = name

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name}=***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> Any:  # pickling (Prefect results, multiprocessing) would leak it
        raise TypeError("a Secret is not picklable: pass the variable's name, not the value")


def resolve_secret(env_name: str, env: Mapping[str, str] | None = None, *, target: str = "") -> Secret:
    """The value of the environment variable *env_name*, as a :class:`Secret`.

    Raises:
        TargetConfigError: the variable is unset or empty (the message names it).
    """
    source = os.environ if env is None else env
    value = source.get(env_name)
    if not value:
        where = f"target {target!r}: " if target else ""
        raise TargetConfigError(
            f"{where}environment variable {env_name} is {'empty' if env_name in source else 'not set'}; "
            f"export it with the secret "
            f"(the targets file names the variable, never the value)")
    return Secret(value, env_name)


@dataclass(frozen=True)
class Resolve:
    """One curl-style ``--resolve host:port:addr`` override."""

    host: str
    port: int
    address: str

    @classmethod
    def parse(cls, text: str) -> "Resolve":
        host, sep1, rest = str(text).partition(":")
        port_text, sep2, address = rest.partition(":")
        if not (sep1 and sep2 and host and address):
            raise ValueError(f"{text!r} is not host:port:addr")
        address = address.strip("[]")  # curl writes IPv6 as [::1]
        try:
            port = int(port_text)
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"{text!r} is not host:port:addr with a numeric port and an IP address") from None
        if not 0 < port < 65536:
            raise ValueError(f"{text!r} has port {port} outside 1-65535")
        return cls(host.lower(), port, address)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.address}"


@dataclass(frozen=True)
class Target:
    """One integration to check (a ``[[target]]`` of contract §2).

    Construct it from plain values (the loader and Prefect blocks both do); the
    constructor validates and raises :class:`TargetConfigError`. Secrets are held
    only as environment variable names; see :meth:`client_secret`.
    """

    name: str
    platform: str
    client_id: str
    client_secret_env: str
    region: str | None = None
    api_base: str | None = None
    token_url: str | None = None
    issuer: str | None = None          # nice: overrides the region's issuer
    tenant_id: str | None = None       # nice: skip reading it from the id_token
    grant: str | None = None           # generic: client_credentials (default) | password
    access_key_id: str | None = None
    access_key_secret_env: str | None = None
    endpoints: tuple[str, ...] | None = None   # None: the platform's default smoke test
    ca_bundle: str | None = None
    resolve: tuple[str, ...] = ()
    sni: str | None = None
    expect_issuers: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()
    tls_min: str = "1.2"
    tls_max: str = "1.3"
    ciphers: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float = 5.0
    proxy: str | None = None              # http://[user@]host:port; default: HTTPS_PROXY/NO_PROXY of the environment
    proxy_password_env: str | None = None  # the proxy user's password, by name
    no_proxy: bool = False                 # connect directly even if the environment sets a proxy
    source: str = field(default="<values>", compare=False, repr=False)

    def __post_init__(self) -> None:
        fix = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen)
        if not isinstance(self.name, str) or not _TARGET_NAME.match(self.name):
            raise TargetConfigError(
                f"{self.source}: target {self.name!r}: name must be 1-64 letters, digits, '.', '_' or '-'")
        for key in ("platform", "client_id", "client_secret_env"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                self._fail(key, "is required (a non-empty string)")
        for key in ("client_secret_env", "access_key_secret_env"):
            value = getattr(self, key)
            if value is not None and not _ENV_NAME.match(value):
                self._fail(key, f"must be an environment variable name like MY_SECRET, not {value!r}")
        for key in ("api_base", "token_url", "issuer"):
            value = getattr(self, key)
            if value is not None:
                self._check_https(key, value)
        try:
            profile = self.profile()
        except PlatformError as exc:
            text = str(exc)
            key = ("grant" if "grant" in text else "token_url/api_base" if "generic needs" in text
                   else "region" if "region" in text else "platform")
            self._fail(key, str(exc))
        if profile.grant == "password" and not (self.access_key_id and self.access_key_secret_env):
            self._fail("access_key_id", f"the {profile.grant} grant needs access_key_id and access_key_secret_env")
        if self.endpoints is not None:
            fix("endpoints", tuple(self._str_list("endpoints", self.endpoints)))
            for ep in self.endpoints:
                if ep.startswith("https://"):
                    self._check_https("endpoints", ep)
                elif not ep.startswith("/"):
                    self._fail("endpoints", f"{ep!r} must be a path starting with '/' or an https:// URL")
        fix("resolve", tuple(self._str_list("resolve", self.resolve)))
        for entry in self.resolve:
            try:
                Resolve.parse(entry)
            except ValueError as exc:
                self._fail("resolve", str(exc))
        fix("expect_issuers", tuple(self._str_list("expect_issuers", self.expect_issuers)))
        fix("pins", tuple(self._str_list("pins", self.pins)))
        for pin in self.pins:
            if not pin.startswith("sha256/"):
                self._fail("pins", f"{pin!r} must look like sha256/BASE64 (an SPKI pin)")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            self._fail("timeout", f"must be a positive number of seconds, not {self.timeout!r}")
        fix("timeout", float(self.timeout))
        for key in ("tls_min", "tls_max"):
            if isinstance(getattr(self, key), (int, float)):
                fix(key, f"{getattr(self, key):.1f}")
        for key in ("ca_bundle", "client_cert", "client_key"):
            value = getattr(self, key)
            if value is not None and not Path(value).expanduser().is_file():
                self._fail(key, f"{value} does not exist or is not a file")
        try:
            self.policy()
        except PolicyError as exc:
            self._fail("tls_min/tls_max/ciphers", str(exc))
        if not isinstance(self.no_proxy, bool):
            self._fail("no_proxy", f"must be true or false, not {self.no_proxy!r}")
        if self.proxy is not None and not isinstance(self.proxy, str):
            self._fail("proxy", "must be a proxy URL like http://proxy.corp.example:3128")
        if self.proxy_password_env is not None and not (isinstance(self.proxy_password_env, str)
                                                        and _ENV_NAME.match(self.proxy_password_env)):
            self._fail("proxy_password_env", f"must be an environment variable name like PROXY_PASSWORD, "
                                             f"not {self.proxy_password_env!r}")
        if self.proxy is not None:
            try:
                parse_proxy_url(self.proxy, source="proxy", password_env=self.proxy_password_env)
            except ProxyConfigError as exc:
                self._fail("proxy", str(exc).removeprefix("proxy: "))

    # -- validation helpers -------------------------------------------------
    def _fail(self, key: str, message: str) -> None:
        raise TargetConfigError(f"{self.source}: target {self.name!r}: {key}: {message}")

    def _check_https(self, key: str, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            # Credentials and tokens only ever travel over verified TLS.
            self._fail(key, f"{url!r} must be an https:// URL")
        try:
            parts.port
        except ValueError:
            self._fail(key, f"{url!r} has an invalid port")

    def _str_list(self, key: str, value: object) -> list[str]:
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                not all(isinstance(v, str) and v for v in value):
            self._fail(key, "must be a list of non-empty strings")
        return list(value)  # type: ignore[arg-type]

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
        """``{(host, port): address}`` from the ``resolve`` overrides."""
        return {(r.host, r.port): r.address for r in map(Resolve.parse, self.resolve)}

    def proxy_settings(self) -> ProxySettings:
        """How this target's connections pick their proxy (``proxy``, ``no_proxy``, the environment)."""
        explicit = (parse_proxy_url(self.proxy, source=f"target {self.name!r}: proxy",
                                    password_env=self.proxy_password_env) if self.proxy else None)
        if self.no_proxy:  # direct, whatever the environment or [defaults] say
            return ProxySettings(explicit=None, ignore_environment=True)
        return ProxySettings(explicit=explicit, password_env=self.proxy_password_env)

    def check_proxy(self, env: Mapping[str, str] | None = None) -> None:
        """Fail now, in one line, on an unusable proxy setting (the environment's too) or an unset password."""
        try:
            settings_from_options(None if self.no_proxy else self.proxy, self.proxy_password_env,
                                  self.no_proxy, env, where=f"target {self.name!r}: proxy")
        except ProxyConfigError as exc:
            raise TargetConfigError(f"{self.source}: target {self.name!r}: {exc}") from None

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
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "source"}
        for key in ("endpoints", "resolve", "expect_issuers", "pins"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class SlackSettings:
    """``[slack]``: webhook mode (``webhook_url_env``) or bot mode (``bot_token_env`` + ``channel``)."""

    webhook_url_env: str | None = None
    bot_token_env: str | None = None
    channel: str | None = None
    api_base: str | None = None
    repeat_interval_s: float | None = None
    timeout: float = 10.0

    @property
    def mode(self) -> str:
        return "bot" if self.bot_token_env else "webhook"

    def webhook_url(self, env: Mapping[str, str] | None = None) -> Secret:
        return resolve_secret(self.webhook_url_env or "", env, target="slack")

    def bot_token(self, env: Mapping[str, str] | None = None) -> Secret:
        return resolve_secret(self.bot_token_env or "", env, target="slack")


@dataclass(frozen=True)
class BreakerSettings:
    """``[breaker]`` with the contract's defaults."""

    threshold: int = 2
    window_s: float = 60.0
    open_s: float = 30.0
    max_open_s: float = 300.0
    store: str = "sqlite:///~/.cxhealth/breaker.sqlite3"


@dataclass(frozen=True)
class HistorySettings:
    """``[history]`` (contract §4) with its defaults: where observations go and how long they stay."""

    store: str = "sqlite:///~/.cxhealth/history.sqlite3"
    retention_days: int = 30


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


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

_TARGET_KEYS = {f.name for f in fields(Target)} - {"source"}
_PATH_KEYS = ("ca_bundle", "client_cert", "client_key")


def load_targets(path: str | os.PathLike[str]) -> TargetsConfig:
    """Read and validate a targets.toml (contract §2).

    Relative ``ca_bundle``/``client_cert``/``client_key`` paths are relative to the file.

    Raises:
        TargetConfigError: unreadable file, invalid TOML, or an invalid key (one line).
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetConfigError(f"{p}: cannot read the targets file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_targets(data, source=str(p), base_dir=p.parent)


def parse_targets(data: Mapping[str, Any], *, source: str = "<values>",
                  base_dir: str | os.PathLike[str] | None = None) -> TargetsConfig:
    """Validate an already-parsed targets document (dicts as from TOML)."""
    unknown = set(data) - {"defaults", "target", "slack", "breaker", "history"}
    if unknown:
        raise TargetConfigError(
            f"{source}: unknown table {sorted(unknown)[0]!r}: use [defaults], [[target]], [slack], [breaker], [history]")
    defaults = _table(data, "defaults", source)
    _check_keys(defaults, source, "[defaults]")
    raw_targets = data.get("target", [])
    if not isinstance(raw_targets, list) or not raw_targets:
        raise TargetConfigError(f"{source}: no [[target]] entries; add at least one [[target]] table")
    targets: list[Target] = []
    for index, raw in enumerate(raw_targets, 1):
        if not isinstance(raw, dict):
            raise TargetConfigError(f"{source}: target #{index} is not a table")
        name = raw.get("name", f"#{index}")
        _check_keys(raw, source, f"target {name!r}")
        values = {**defaults, **raw}
        if "name" not in values:
            raise TargetConfigError(f"{source}: target #{index}: name: is required")
        for key in _PATH_KEYS:
            if isinstance(values.get(key), str) and base_dir is not None:
                values[key] = str(Path(base_dir, Path(values[key]).expanduser()))
        try:
            targets.append(Target(**values, source=source))
        except TypeError as exc:  # a value of the wrong type the constructor could not take
            raise TargetConfigError(f"{source}: target {name!r}: {exc}") from None
    names = [t.name for t in targets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TargetConfigError(f"{source}: target {duplicates[0]!r}: name: must be unique (used twice)")
    return TargetsConfig(targets=tuple(targets), slack=_parse_slack(data, source),
                         breaker=_parse_breaker(data, source), source=source,
                         history=_parse_history(data, source))


def _table(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TargetConfigError(f"{source}: [{key}] must be a table")
    return dict(value)


def _check_keys(table: Mapping[str, Any], source: str, where: str) -> None:
    for key in table:
        if key in _INLINE_SECRET_KEYS:
            raise TargetConfigError(
                f"{source}: {where}: {key}: secrets are never written inline; put the value in an "
                f"environment variable and name it with {_INLINE_SECRET_KEYS[key]}")
        if key not in _TARGET_KEYS:
            raise TargetConfigError(
                f"{source}: {where}: unknown key {key!r}; valid keys: {', '.join(sorted(_TARGET_KEYS))}")


def _parse_slack(data: Mapping[str, Any], source: str) -> SlackSettings | None:
    if "slack" not in data:
        return None
    table = _table(data, "slack", source)
    valid = {f.name for f in fields(SlackSettings)}
    for key, value in table.items():
        if key in _INLINE_SECRET_KEYS:
            raise TargetConfigError(f"{source}: [slack]: {key}: secrets are never written inline; "
                                    f"name an environment variable with {_INLINE_SECRET_KEYS[key]}")
        if key not in valid:
            raise TargetConfigError(f"{source}: [slack]: unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
    for key in ("webhook_url_env", "bot_token_env"):
        if key in table and not (isinstance(table[key], str) and _ENV_NAME.match(table[key])):
            raise TargetConfigError(
                f"{source}: [slack]: {key}: must be an environment variable name like SLACK_WEBHOOK_URL")
    if not table.get("webhook_url_env") and not (table.get("bot_token_env") and table.get("channel")):
        raise TargetConfigError(f"{source}: [slack]: set webhook_url_env, or bot_token_env and channel")
    if "api_base" in table and not (isinstance(table["api_base"], str)
                                    and urlsplit(table["api_base"]).scheme in ("http", "https")):
        raise TargetConfigError(f"{source}: [slack]: api_base: must be an http(s) URL")
    for key in ("repeat_interval_s", "timeout"):
        if key in table:
            table[key] = _positive(table[key], source, f"[slack]: {key}")
    return SlackSettings(**table)


def _parse_breaker(data: Mapping[str, Any], source: str) -> BreakerSettings:
    table = _table(data, "breaker", source)
    valid = {f.name for f in fields(BreakerSettings)}
    for key in table:
        if key not in valid:
            raise TargetConfigError(f"{source}: [breaker]: unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
    for key in ("window_s", "open_s", "max_open_s"):
        if key in table:
            table[key] = _positive(table[key], source, f"[breaker]: {key}")
    if "threshold" in table:
        t = table["threshold"]
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise TargetConfigError(f"{source}: [breaker]: threshold: must be a whole number >= 1, not {t!r}")
    if "store" in table:
        from cxhealth.tasks.breaker.url import check_store_url

        try:
            check_store_url(table["store"])
        except ValueError as exc:
            raise TargetConfigError(f"{source}: [breaker]: {exc}") from None
    settings = BreakerSettings(**table)
    if settings.max_open_s < settings.open_s:
        raise TargetConfigError(f"{source}: [breaker]: max_open_s: must be >= open_s ({settings.open_s})")
    return settings


def _parse_history(data: Mapping[str, Any], source: str) -> HistorySettings:
    table = _table(data, "history", source)
    valid = {f.name for f in fields(HistorySettings)}
    for key in table:
        if key not in valid:
            raise TargetConfigError(f"{source}: [history]: unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
    days = table.get("retention_days", 30)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise TargetConfigError(f"{source}: [history]: retention_days: must be a whole number >= 1, not {days!r}")
    if "store" in table:
        from cxhealth.tasks.history.store import check_history_url

        try:
            check_history_url(table["store"])
        except ValueError as exc:
            raise TargetConfigError(f"{source}: [history]: {exc}") from None
    return HistorySettings(**table)


def _positive(value: object, source: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise TargetConfigError(f"{source}: {where}: must be a positive number, not {value!r}")
    return float(value)
