"""The client's TLS policy as a value, and the ``ssl.SSLContext`` it builds.

The baseline is the guide's (section 1): TLS 1.2 minimum, 1.3 maximum, ECDHE
AEAD ciphers for TLS 1.2, no compression, the system trust store. Two of the
guide's claims are corrected here (platform-facts.md): ``OP_NO_TICKET`` is *not*
set, because it disables session resumption and makes TLS 1.2 reconnects
slower; and the versions are set with ``ssl.TLSVersion``, not magic numbers.

No field of a policy turns verification off. The only unverified context in
the project is :func:`explain_only_context`, used by the probe to capture the
chain of a handshake that already failed verification; nothing is sent on it.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

# The guide's cipher string for TLS <= 1.2 (TLS 1.3 suites are not set by it).
BASELINE_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!EXPORT:!DES:!RC4:!MD5:!PSK"

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
VERSION_NAMES = {v: f"TLSv{k}" if k != "1.0" else "TLSv1" for k, v in _VERSIONS.items()}


class PolicyError(ValueError):
    """A policy that cannot be built (bad version, unreadable bundle, ...)."""


def parse_version(text: str | float) -> ssl.TLSVersion:
    key = str(text).strip().lower().removeprefix("tlsv").removeprefix("tls")
    if key == "1":
        key = "1.0"
    try:
        return _VERSIONS[key]
    except KeyError:
        raise PolicyError(f"unknown TLS version {text!r}: use one of 1.0, 1.1, 1.2, 1.3") from None


def version_label(version: ssl.TLSVersion) -> str:
    return VERSION_NAMES.get(version, str(version))


@dataclass(frozen=True)
class TLSPolicy:
    """What the client under test allows, and what it trusts.

    Attributes:
        tls_min, tls_max: version range, as "1.2" / "1.3".
        ciphers: OpenSSL cipher string for TLS <= 1.2 (TLS 1.3 suites are fixed).
        ca_bundle: PEM file of the client's trust store; ``None`` is the system store.
        client_cert, client_key: PEM files for mTLS endpoints.
        timeout: seconds for each network step (connect, handshake).
    """

    tls_min: str = "1.2"
    tls_max: str = "1.3"
    ciphers: str = BASELINE_CIPHERS
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        lo, hi = parse_version(self.tls_min), parse_version(self.tls_max)
        if lo > hi:
            raise PolicyError(f"--tls-min {self.tls_min} is above --tls-max {self.tls_max}")
        if not self.timeout or self.timeout <= 0:
            raise PolicyError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if self.client_key and not self.client_cert:
            raise PolicyError("--client-key needs --client-cert")

    @property
    def min_version(self) -> ssl.TLSVersion:
        return parse_version(self.tls_min)

    @property
    def max_version(self) -> ssl.TLSVersion:
        return parse_version(self.tls_max)

    @property
    def is_tls12_only(self) -> bool:
        return self.max_version < ssl.TLSVersion.TLSv1_3

    def with_(self, **changes: object) -> "TLSPolicy":
        return replace(self, **changes)  # type: ignore[arg-type]

    def ssl_context(self, *, alpn: tuple[str, ...] | None = None) -> ssl.SSLContext:
        """A verifying client context for this policy (cached: loading a store costs ms)."""
        return _build_context(self, alpn)


def _apply_versions_and_ciphers(ctx: ssl.SSLContext, policy: TLSPolicy) -> None:
    lo, hi = policy.min_version, policy.max_version
    if lo < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 refuses TLS < 1.2 at its default security level; a policy that
        # asks for it must lower the level or the range is silently narrower.
        ciphers = policy.ciphers if "@SECLEVEL" in policy.ciphers else policy.ciphers + ":@SECLEVEL=0"
    else:
        ciphers = policy.ciphers
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        raise PolicyError(f"the cipher string {policy.ciphers!r} selects no cipher OpenSSL knows") from None
    ctx.minimum_version = lo
    ctx.maximum_version = hi
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME; already Python's default


def _never_prompt() -> bytes:
    # OpenSSL prompts on the terminal for an encrypted key when no password is given
    # (and hangs without one); an empty passphrase fails instead (contract §1: never a prompt).
    return b""


def load_client_identity(ctx: ssl.SSLContext, policy: TLSPolicy) -> None:
    if policy.client_cert:
        try:
            ctx.load_cert_chain(policy.client_cert, policy.client_key, password=_never_prompt)
        except (OSError, ssl.SSLError) as exc:
            raise PolicyError(
                f"cannot load the client certificate {policy.client_cert}: {getattr(exc, 'strerror', None) or exc}"
            ) from None


@functools.lru_cache(maxsize=64)
def _build_context(policy: TLSPolicy, alpn: tuple[str, ...] | None) -> ssl.SSLContext:
    return build_verifying_context(policy, alpn=alpn)


def build_verifying_context(policy: TLSPolicy, *, alpn: tuple[str, ...] | None = None,
                            check_hostname: bool = True) -> ssl.SSLContext:
    """A new verifying context for ``policy`` (uncached: for callers that adjust it).

    ``check_hostname=False`` still verifies the chain (CERT_REQUIRED); it exists for
    a connection without SNI, where the caller checks the name on the leaf itself.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    ctx.check_hostname = check_hostname
    if policy.ca_bundle:
        path = Path(policy.ca_bundle).expanduser()
        try:
            ctx.load_verify_locations(cafile=str(path))
        except FileNotFoundError:
            raise PolicyError(f"CA bundle {path} does not exist") from None
        except (OSError, ssl.SSLError):
            raise PolicyError(f"CA bundle {path} is not a readable PEM file of certificates") from None
    else:
        ctx.load_default_certs()
    _apply_versions_and_ciphers(ctx, policy)
    load_client_identity(ctx, policy)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def explain_only_context(policy: TLSPolicy, *, widen_ciphers: bool = False,
                         tls_min: ssl.TLSVersion | None = None,
                         tls_max: ssl.TLSVersion | None = None,
                         client_identity: tuple[str, str] | None = None) -> ssl.SSLContext:
    """An unverified context that exists only to *explain* a failure.

    It captures the chain a server sends (or tells which version/cipher it would
    pick) after a verified handshake has already failed. The probe closes the
    connection right after the handshake: no byte of application data, and so
    never a credential, is sent on it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # explain-only: nothing is sent after the handshake
    cipher_string = "ALL:@SECLEVEL=0" if widen_ciphers else policy.ciphers
    if (tls_min is not None and tls_min < ssl.TLSVersion.TLSv1_2) and "@SECLEVEL" not in cipher_string:
        cipher_string += ":@SECLEVEL=0"
    ctx.set_ciphers(cipher_string)
    ctx.minimum_version = tls_min if tls_min is not None else policy.min_version
    ctx.maximum_version = tls_max if tls_max is not None else policy.max_version
    if client_identity:
        ctx.load_cert_chain(*client_identity)
    else:
        load_client_identity(ctx, policy)
    return ctx
