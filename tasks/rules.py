"""One validator per rule, shared by every way a value comes in.

The command line (``cxhealth diagnose --pin``), targets.toml, the Prefect blocks
and the alert settings all check a value with the same function here, so they
cannot disagree about what is valid. Each rule takes the raw value and returns
the normalised one, or raises :class:`ValueError` with a message that says
what is wrong and what is expected; the caller adds *where* (the option, or the
file, target and key).

No dependencies (not even pydantic): ``cxhealth diagnose`` uses these on its
light path; :mod:`cxhealth.tasks.targets` wraps them as pydantic types.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def env_name(value: object) -> str:
    """The name of an environment variable (a secret is named, never written)."""
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise ValueError(f"must be an environment variable name like MY_SECRET, not {value!r}")
    return value


def target_name(value: object) -> str:
    """A target's name: used in alerts, breaker keys and block names."""
    if not isinstance(value, str) or not _TARGET_NAME.match(value):
        raise ValueError(f"name must be 1-64 letters, digits, '.', '_' or '-', not {value!r}")
    return value


def https_url(value: object) -> str:
    """An ``https://`` URL with a host: credentials and tokens only travel over verified TLS."""
    if not isinstance(value, str):
        raise ValueError(f"must be an https:// URL, not {value!r}")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r} must be an https:// URL")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value


def http_url(value: object) -> str:
    """An ``http://`` or ``https://`` URL (the Slack API base: tests and proxies use http)."""
    if not isinstance(value, str) or urlsplit(value).scheme.lower() not in ("http", "https") \
            or not urlsplit(value).hostname:
        raise ValueError("must be an http(s) URL")
    return value


def endpoint(value: object) -> str:
    """An endpoint to check: a path starting with ``/`` or an ``https://`` URL."""
    if isinstance(value, str) and value.startswith("https://"):
        return https_url(value)
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{value!r} must be a path starting with '/' or an https:// URL")
    return value


def spki_pin(value: object) -> str:
    """An SPKI pin: ``sha256/`` and the base64 of a 32-byte SHA-256 digest."""
    text = value if isinstance(value, str) else repr(value)
    prefix, _, encoded = text.partition("/")
    if not isinstance(value, str) or prefix.lower() != "sha256" or not encoded:
        raise ValueError(f"{text!r}: expected sha256/BASE64 (the base64 SHA-256 of a SubjectPublicKeyInfo)")
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text!r}: {encoded!r} is not valid base64 (expected sha256/BASE64)") from None
    if len(digest) != 32:
        raise ValueError(f"{text!r}: decodes to {len(digest)} bytes, a SHA-256 pin has 32 (expected sha256/BASE64)")
    return f"sha256/{encoded}"


def positive_number(value: object) -> float:
    """A positive number (seconds, budgets); TOML's ``5`` and ``5.0`` both."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive number, not {value!r}")  # TOML's inf and nan too
    return float(value)


MAX_STEP_TIMEOUT_S = 300.0  # per network step; a check then ends within 3x that (the CLI's --timeout bound too)


def step_timeout(value: object) -> float:
    """Seconds per network step: positive and at most :data:`MAX_STEP_TIMEOUT_S` (1e308 would never give up)."""
    seconds = positive_number(value)
    if seconds > MAX_STEP_TIMEOUT_S:
        raise ValueError(f"must be at most {MAX_STEP_TIMEOUT_S:g} seconds, not {value!r}")
    return seconds


def non_negative_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a number >= 0, not {value!r}")
    return float(value)


def whole_number(value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"must be a whole number >= {minimum}, not {value!r}")
    return value


def tls_version(value: object) -> str:
    """``"1.2"``; TOML's bare ``1.2`` is taken as the string (the policy checks the range)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.1f}"
    if not isinstance(value, str):
        raise ValueError(f"must be a TLS version like \"1.2\", not {value!r}")
    return value


def str_list(value: object) -> list[str]:
    """A list of non-empty strings (a bare string is refused, not split into letters)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of non-empty strings")
    return list(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_IPV4_CHARS = "0123456789."


def host_name(host: str) -> str:
    """A host name within DNS's limits (RFC 1035: at most 253 characters, labels of 1 to 63), or an IP."""
    if ":" in host or not host.strip(_IPV4_CHARS):  # could be an address (IPv6 has a colon, IPv4 only digits and dots)
        try:
            ipaddress.ip_address(host.strip("[]"))
            return host
        except ValueError:
            pass
    name = host.rstrip(".")
    bad = next((c for c in name if c.isspace() or not c.isprintable() or c in '/\\@?#%:[]<>"'), None)
    if bad is not None:  # never part of a DNS name (a URL's or a list's rest, a typo)
        raise ValueError(f"the host name {_clip(host, 60)!r} holds {bad!r}, which no DNS name does")
    if len(name) > 253:
        raise ValueError(f"the host name is {len(name)} characters long, over DNS's limit of 253")
    for label in name.split("."):
        if not label:
            raise ValueError("the host name has an empty label")
        if len(label) > 63:
            raise ValueError(f"the label {_clip(label, 20)!r} is {len(label)} characters long, over DNS's limit of 63")
    return host


def _split_resolve(item: str) -> tuple[str, str, str]:
    """HOST:PORT:ADDR[,ADDR...] as curl takes it, IPv6 in brackets: ``[::1]:443:addr``, ``host:443:[::1]``."""
    if item.startswith("["):
        end = item.find("]")
        if end < 0 or item[end + 1:end + 2] != ":":
            return "", "", ""
        host, rest = item[1:end], item[end + 2:]
    else:
        host, _, rest = item.partition(":")
    port_text, _, addrs = rest.partition(":")
    return host, port_text, addrs


@dataclass(frozen=True)
class Resolve:
    """One curl-style ``--resolve host:port:addr[,addr...]`` override.

    Several addresses stand for a name with several A records (contract §4): the
    handshake stage diagnoses each; HTTP connections dial the first.
    """

    host: str
    port: int
    address: str
    addresses: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Resolve":
        """The rule for ``--resolve`` and targets.toml's ``resolve`` alike."""
        text = str(text)
        host, port_text, address_text = _split_resolve(text)
        if not (host and port_text and address_text):
            raise ValueError(f"{text!r}: expected HOST:PORT:ADDR[,ADDR...] (e.g. api.example.com:443:192.0.2.10, "
                             "[::1]:443:ADDR or HOST:443:[::1])")
        try:
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise ValueError(f"{text!r}: port {port_text!r} is not a number from 1 to 65535") from None
        addresses = []
        for address in (a.strip() for a in address_text.split(",")):
            if address.startswith("[") or address.endswith("]"):  # curl writes IPv6 as [::1]
                if not (address.startswith("[") and address.endswith("]")):
                    raise ValueError(f"{text!r}: {address!r} has an unclosed bracket (write IPv6 as [::1])")
                address = address[1:-1]
            try:
                addresses.append(str(ipaddress.ip_address(address)))
            except ValueError:
                raise ValueError(f"{text!r}: {address!r} is not an IP address") from None
        if len(addresses) > 8:
            raise ValueError(f"{text!r}: {len(addresses)} addresses; at most 8 are diagnosed")
        try:
            host_name(host)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        unique = tuple(dict.fromkeys(addresses))
        return cls(host.lower(), port, unique[0], unique)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{','.join(self.addresses or (self.address,))}"


def resolve_entry(value: object) -> str:
    """A ``host:port:addr`` override, kept as written once it parses."""
    Resolve.parse(str(value))
    return str(value)


def boolean(value: object) -> bool:
    """TOML's ``true`` / ``false`` (not ``"yes"``, not ``1``)."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value
