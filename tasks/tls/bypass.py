"""The inspection bypass list: which allow-list domains cover the hosts a proxy intercepts,
written the way each product's admin console takes them.

Pure. The domains are the platforms' documented allow-lists (platform-facts.md,
``remediation.GENESYS_DOMAINS`` / ``NICE_DOMAINS``); a host outside them is
listed by its own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .remediation import GENESYS_DOMAINS, NICE_DOMAINS

ALLOW_LISTS = {"genesys": GENESYS_DOMAINS, "nice": NICE_DOMAINS}

# How an admin console writes "this domain and every name under it" (product -> (form, note)).
# Zscaler's URL lists take a leading dot for a domain and its subdomains; ProxySG and Umbrella
# match subdomains of a bare domain; the others take a wildcard FQDN.
_CONSOLE_FORMS: dict[str, tuple[str, str]] = {
    "Zscaler": (".{d}", "a leading dot covers the domain and all its subdomains"),
    "Blue Coat / Symantec ProxySG": ("{d}", "a bare domain covers its subdomains"),
    "Cisco Umbrella": ("{d}", "a domain covers its subdomains"),
    "Palo Alto Networks": ("*.{d}", "add {d} too for the bare domain"),
    "Fortinet FortiGate": ("*.{d}", "wildcard FQDN"),
    "Netskope": ("*.{d}", "wildcard domain"),
    "Check Point": ("*.{d}", "wildcard domain"),
    "Cloudflare Gateway": ("{d}", "a domain selector covers its subdomains"),
}


@dataclass(frozen=True)
class BypassEntry:
    domain: str                   # the allow-list domain (or a host outside every allow-list)
    pattern: str                  # as the product's console takes it
    covers: tuple[str, ...]       # the intercepted hosts it covers
    is_domain: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"pattern": self.pattern, "domain": self.domain, "covers": list(self.covers)}


def covering_domain(host: str, platform: str | None) -> str | None:
    """The most specific allow-list domain of ``platform`` (or of any platform) covering ``host``."""
    host = host.lower().rstrip(".")
    domains: Iterable[str] = ALLOW_LISTS.get(platform or "", ()) or [d for ds in ALLOW_LISTS.values() for d in ds]
    found = [d for d in domains if host == d or host.endswith("." + d)]
    return max(found, key=len) if found else None


def console_pattern(product: str | None, domain: str) -> str:
    form = _CONSOLE_FORMS.get(product or "", ("*.{d}", ""))[0]
    return form.format(d=domain)


def console_note(product: str | None, domain: str = "DOMAIN") -> str | None:
    note = _CONSOLE_FORMS.get(product or "")
    return note[1].format(d=domain) if note else None


def bypass_list(hosts: Sequence[str], platform: str | None, product: str | None) -> list[BypassEntry]:
    """The entries that cover every host in ``hosts``, in ``product``'s console form."""
    by_domain: dict[str, list[str]] = {}
    singles: list[str] = []
    for host in hosts:
        domain = covering_domain(host, platform)
        if domain is None:
            singles.append(host)
        else:
            by_domain.setdefault(domain, []).append(host)
    out = [BypassEntry(d, console_pattern(product, d), tuple(hs)) for d, hs in by_domain.items()]
    out += [BypassEntry(h, h, (h,), is_domain=False) for h in singles]
    return out
