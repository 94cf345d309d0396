"""Store URLs (contract §2 ``[breaker] store``): checked when the configuration
is read, so a typo is a one-line configuration error (exit 2), never a silent
fall back to an in-process breaker; and never echoed with its password.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

FORMS = "sqlite:///path, redis://host:port/db (rediss:// too) or memory://"


def redact_url(url: str) -> str:
    """The URL without its password (contract §3: no secret in any output)."""
    try:
        parts = urlsplit(url)
        password, host, port = parts.password, parts.hostname, parts.port
    except ValueError:  # an unparsable netloc (e.g. a non-numeric port): hide all of it
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, "***" if "@" in parts.netloc else parts.netloc, parts.path, "", ""))
    if password is None:
        return url
    netloc = host or ""
    if port:
        netloc = f"{netloc}:{port}"
    netloc = f"{parts.username}:***@{netloc}" if parts.username else f":***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_store_url(url: str) -> str:
    """Return *url* if it is a usable store URL; raise ValueError (one line, redacted) if not."""
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"store: {shown} must be {FORMS}")
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ValueError(f"store: {shown}: a sqlite store is sqlite:///relative/path or sqlite:////absolute/path")
        return url
    if scheme == "memory":
        return url
    if scheme in ("redis", "rediss"):
        parts = urlsplit(url)
        try:
            parts.port
        except ValueError:
            raise ValueError(f"store: {shown}: the port must be a number (redis://host:6379/0)") from None
        if not parts.hostname:
            raise ValueError(f"store: {shown}: no host (redis://host:port/db)")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"store: {shown}: the database must be a number, not {db!r} (redis://host:port/0)")
        return url
    if scheme == "unix":
        return url
    raise ValueError(f"store: {shown} must be {FORMS}")
