"""Platform profiles: where a target's token and API live, and how it asks for a token.

Facts from ``docs/platform-facts.md`` (which corrects the guide):

* Genesys Cloud CX: API ``https://api.<domain>``, token at
  ``https://login.<domain>/oauth/token`` (not ``api.<domain>``), client
  credentials with HTTP Basic client authentication.
* NICE CXone: issuer ``https://cxone.niceincontact.com`` (FedRAMP:
  ``cxone-gov``), token at ``{issuer}/auth/token`` with the *password* grant and
  an access key; the API base comes from discovery
  (``{issuer}/.well-known/cxone-configuration?tenantId=…`` → ``api_endpoint``),
  not from a hard-coded host.
* generic: explicit token URL and API base; ``client_credentials`` (default) or
  ``password``.

Pure values and pure functions: the checks (``tasks/checks``) do the network
steps, including the NICE discovery request.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PLATFORMS = ("genesys", "nice", "generic")
GRANTS = ("client_credentials", "password")

# Source: platform-facts.md (from PureCloudPlatformClientV2/purecloud_region_hosts.py).
GENESYS_REGIONS: dict[str, str] = {
    "us_east_1": "mypurecloud.com",
    "eu_west_1": "mypurecloud.ie",
    "ap_southeast_2": "mypurecloud.com.au",
    "ap_northeast_1": "mypurecloud.jp",
    "eu_central_1": "mypurecloud.de",
    "us_west_2": "usw2.pure.cloud",
    "ca_central_1": "cac1.pure.cloud",
    "ap_northeast_2": "apne2.pure.cloud",
    "eu_west_2": "euw2.pure.cloud",
    "ap_south_1": "aps1.pure.cloud",
    "us_east_2": "use2.us-gov-pure.cloud",  # FedRAMP
    "sa_east_1": "sae1.pure.cloud",
    "me_central_1": "mec1.pure.cloud",
    "ap_northeast_3": "apne3.pure.cloud",
    "eu_central_2": "euc2.pure.cloud",
    "mx_central_1": "mxc1.pure.cloud",
    "ap_southeast_1": "apse1.pure.cloud",
}

# NICE's "region" selects the issuer; the API area (na1, eu1, …) comes from discovery.
NICE_ISSUERS: dict[str, str] = {
    "commercial": "https://cxone.niceincontact.com",
    "fedramp": "https://cxone-gov.niceincontact.com",
}
NICE_DEFAULT_ISSUER = NICE_ISSUERS["commercial"]
NICE_TOKEN_PATH = "/auth/token"
NICE_DISCOVERY_PATH = "/.well-known/cxone-configuration"

# Cheap smoke-test endpoints when a target lists none (platform-facts.md).
DEFAULT_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "genesys": ("/api/v2/tokens/me",),  # needs no permission
    "nice": ("/inContactAPI/services/v25.0/server-time",),
    "generic": (),
}


class PlatformError(ValueError):
    """An unknown platform, region or grant; the message lists the valid values."""


@dataclass(frozen=True)
class PlatformProfile:
    """Where a target gets its token and calls its API, and with which grant.

    ``api_base`` is None when it must be discovered (NICE without ``api_base``);
    ``discovery_url`` is then the issuer's discovery document.
    """

    platform: str
    token_url: str
    api_base: str | None
    grant: str
    issuer: str | None = None
    discovery_url: str | None = None

    @property
    def needs_discovery(self) -> bool:
        return self.api_base is None and self.discovery_url is not None


def _one_of(kind: str, value: str, valid: object) -> PlatformError:
    return PlatformError(f"unknown {kind} {value!r}: use one of {', '.join(valid)}")  # type: ignore[arg-type]


def genesys_domain(region: str) -> str:
    try:
        return GENESYS_REGIONS[region]
    except KeyError:
        raise _one_of("genesys region", region, GENESYS_REGIONS) from None


def nice_issuer(region: str | None, issuer: str | None) -> str:
    if issuer:
        return issuer.rstrip("/")
    if region is None:
        return NICE_DEFAULT_ISSUER
    try:
        return NICE_ISSUERS[region]
    except KeyError:
        raise _one_of("nice region", region, NICE_ISSUERS) from None


def build_profile(platform: str, *, region: str | None = None, api_base: str | None = None,
                  token_url: str | None = None, issuer: str | None = None,
                  grant: str | None = None) -> PlatformProfile:
    """Derive a profile from a target's platform keys; explicit URLs win over derivation.

    Raises:
        PlatformError: unknown platform/region/grant, or a generic target without URLs.
    """
    if platform not in PLATFORMS:
        raise _one_of("platform", platform, PLATFORMS)
    if grant is not None and grant not in GRANTS:
        raise _one_of("grant", grant, GRANTS)
    api_base = api_base.rstrip("/") if api_base else None
    if platform == "genesys":
        if region is None and not (api_base and token_url):
            raise PlatformError(
                f"genesys needs region (one of {', '.join(GENESYS_REGIONS)}) or both api_base and token_url")
        domain = genesys_domain(region) if region is not None else None
        return PlatformProfile(
            platform="genesys",
            token_url=token_url or f"https://login.{domain}/oauth/token",
            api_base=api_base or f"https://api.{domain}",
            grant=grant or "client_credentials",
        )
    if platform == "nice":
        iss = nice_issuer(region, issuer)
        return PlatformProfile(
            platform="nice",
            token_url=token_url or f"{iss}{NICE_TOKEN_PATH}",
            api_base=api_base,
            grant=grant or "password",
            issuer=iss,
            discovery_url=None if api_base else f"{iss}{NICE_DISCOVERY_PATH}",
        )
    if not (token_url and api_base):
        raise PlatformError("generic needs both token_url and api_base")
    return PlatformProfile(platform="generic", token_url=token_url, api_base=api_base,
                           grant=grant or "client_credentials")


def host_port(url: str) -> tuple[str, int]:
    """The (host, port) an https URL connects to; port defaults to 443."""
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or 443


def tenant_id_from_id_token(id_token: object) -> str | None:
    """The tenant id a NICE ``id_token`` carries in its JWT payload (platform-facts.md).

    Only a routing hint for discovery, read from a token that came over a verified
    connection from the issuer; no signature check is needed for that.
    """
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    tenant = claims.get("tenantId") or claims.get("tenant_id")
    return tenant if isinstance(tenant, str) and tenant else None


class DiscoveryError(ValueError):
    """The NICE discovery document is unusable; the message is safe to show."""


def api_base_from_discovery(document: Any) -> str:
    """``api_endpoint`` of a NICE ``/.well-known/cxone-configuration`` document."""
    api = document.get("api_endpoint") if isinstance(document, dict) else None
    if not isinstance(api, str) or not api.startswith("https://"):
        raise DiscoveryError("the discovery document has no https api_endpoint")
    return api.rstrip("/")


# Hosts a client of each platform reaches (platform-facts.md), for ``cxhealth proxy-audit``.
NICE_AREA = re.compile(r"^[a-z]{2,3}[0-9]{1,2}$")  # na1, au1, eu1, ... (the API area discovery returns)


def platform_hosts(platform: str, region: str) -> list[tuple[str, str]]:
    """(host, role) for every host a ``platform`` client reaches in ``region``, token host first.

    Genesys: ``login.<domain>`` (OAuth, token) and ``api.<domain>`` (the API).
    NICE: the issuer (token, discovery) of ``commercial`` or ``fedramp``; an API
    area (``na1``, ``eu1``, ...) adds ``api-<area>.niceincontact.com`` to the
    commercial issuer.

    Raises:
        PlatformError: an unknown platform or region (the message lists valid ones).
    """
    if platform == "genesys":
        domain = genesys_domain(region)
        return [(f"login.{domain}", "OAuth / token"), (f"api.{domain}", "API")]
    if platform == "nice":
        if region in NICE_ISSUERS:
            return [(host_port(NICE_ISSUERS[region])[0], "issuer: token, discovery")]
        if NICE_AREA.match(region or ""):
            return [(host_port(NICE_DEFAULT_ISSUER)[0], "issuer: token, discovery"),
                    (f"api-{region}.niceincontact.com", "API")]
        raise PlatformError(f"unknown nice region {region!r}: use commercial, fedramp, or an API area such as "
                            "na1, au1, eu1")
    raise PlatformError(f"proxy-audit knows the hosts of genesys and nice, not {platform!r}")
