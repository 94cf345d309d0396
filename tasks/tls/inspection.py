"""Known TLS-inspection products, recognised by the CA names they mint.

A data table: add a row to teach cxhealth a new product. Each pattern is
matched case-insensitively against the subject and issuer text of the CA
certificates in a chain (and of the leaf's issuer). Patterns are chosen to be
specific to the inspection product, not to a vendor's public CA business
(e.g. "Symantec" also names long-distrusted *public* roots, but those left every
trust store and expired by 2026, so a Symantec-named CA in a chain today is Blue
Coat/Symantec's inspection appliance).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class InspectionProduct:
    """A product whose CA re-signs TLS connections.

    ``kind``: "inspection" (an enterprise proxy: exempt the host), "compromised"
    (a root whose private key is public: remove it from every store) or
    "debugging" (a developer's intercepting proxy: remove its root, stop the proxy).
    """

    name: str
    patterns: tuple[str, ...]
    bypass_hint: str  # where an admin adds a bypass / exemption, or how to remove the root
    kind: str = "inspection"

    @property
    def must_be_removed(self) -> bool:
        """Never trust it: its key is public, or it is a developer's proxy."""
        return self.kind in ("compromised", "debugging")


_REMOVE = ("remove the root from the client's trust store (and the OS store: certmgr.msc / Keychain Access / "
           "update-ca-certificates after deleting it), and uninstall the software that installed it")

INSPECTION_PRODUCTS: tuple[InspectionProduct, ...] = (
    # Roots whose private keys are public: anyone can mint certificates they sign.
    InspectionProduct("Superfish / Komodia (Lenovo adware)", ("superfish", "komodia"), _REMOVE, "compromised"),
    InspectionProduct("eDellRoot (Dell)", ("edellroot",), _REMOVE, "compromised"),
    InspectionProduct("DSDTestProvider (Dell)", ("dsdtestprovider",), _REMOVE, "compromised"),
    InspectionProduct("PrivDog", ("privdog",), _REMOVE, "compromised"),
    # Developers' intercepting proxies: their roots belong on no production client.
    InspectionProduct("mitmproxy", ("mitmproxy",), _REMOVE, "debugging"),
    InspectionProduct("Fiddler", ("do_not_trust_fiddlerroot", "fiddler root", "fiddlerroot", "fiddler2.com"),
                      _REMOVE, "debugging"),
    InspectionProduct("Charles Proxy", ("charles proxy", "charlesproxy", "xk72"), _REMOVE, "debugging"),
    InspectionProduct("Burp Suite (PortSwigger)", ("portswigger", "burp suite"), _REMOVE, "debugging"),
    InspectionProduct("Proxyman", ("proxyman",), _REMOVE, "debugging"),
    InspectionProduct("HTTP Toolkit", ("http toolkit",), _REMOVE, "debugging"),
    InspectionProduct("OWASP ZAP", ("owasp zed attack proxy", "owasp zap", "zaproxy"), _REMOVE, "debugging"),
    InspectionProduct("Zscaler", ("zscaler",), "Zscaler admin portal: Policy > SSL Inspection > add the domains to 'Do Not Inspect'"),
    InspectionProduct("Palo Alto Networks", ("palo alto", "paloaltonetworks", "pan-os", "forward-trust"),
                      "PAN-OS: Policies > Decryption > add a 'no-decrypt' rule for the domains"),
    InspectionProduct("Fortinet FortiGate", ("fortinet", "fortigate", "fortiproxy"),
                      "FortiGate: Security Profiles > SSL/SSH Inspection > Exempt from SSL Inspection"),
    InspectionProduct("Netskope", ("netskope",), "Netskope: Policies > SSL Decryption > add a 'Do not decrypt' policy"),
    InspectionProduct("Blue Coat / Symantec ProxySG", ("blue coat", "bluecoat", "proxysg", "symantec", "broadcom edge secure web gateway"),
                      "ProxySG: SSL Intercept layer > add an exemption for the domains"),
    InspectionProduct("Cisco Umbrella", ("cisco umbrella", "opendns"), "Umbrella: Policies > Selective Decryption List > add the domains"),
    InspectionProduct("Cisco Secure Web Appliance", ("ironport", "cisco web security", "cisco secure web"),
                      "Cisco WSA: Web Security Manager > Decryption Policies > Pass Through the domains"),
    InspectionProduct("Sophos", ("sophos",), "Sophos Firewall: Web > TLS inspection rules > add a 'Don't decrypt' rule"),
    InspectionProduct("Check Point", ("check point", "checkpoint"), "Check Point: HTTPS Inspection policy > add a Bypass rule"),
    InspectionProduct("Forcepoint / Websense", ("forcepoint", "websense"), "Forcepoint: SSL decryption bypass > add the domains"),
    InspectionProduct("McAfee / Skyhigh Web Gateway", ("mcafee", "skyhigh"),
                      "Web Gateway: SSL Scanner > add the domains to the 'do not decrypt' list"),
    InspectionProduct("Barracuda", ("barracuda",), "Barracuda: SSL Inspection > add the domains to exempted domains"),
    InspectionProduct("iboss", ("iboss",), "iboss: SSL Decryption > add the domains to the bypass list"),
    InspectionProduct("Menlo Security", ("menlo security",), "Menlo: SSL inspection exemptions"),
    InspectionProduct("Cloudflare Gateway", ("cloudflare for teams", "gateway ca - cloudflare"),
                      "Cloudflare Zero Trust: Gateway > Firewall policies > HTTP > 'Do Not Inspect'"),
    InspectionProduct("Kaspersky", ("kaspersky",), "Kaspersky: exclude the domains from encrypted connections scanning"),
    InspectionProduct("ESET", ("eset ssl filter",), "ESET: SSL/TLS protocol filtering > exclude the application or domains"),
    InspectionProduct("Avast / AVG", ("avast", "avg web/mail shield"), "Avast/AVG: Web Shield > disable HTTPS scanning for the domains"),
    InspectionProduct("Bitdefender", ("bitdefender",), "Bitdefender: Online Threat Prevention > exclude the domains"),
    InspectionProduct("Untangle / Arista", ("untangle",), "NG Firewall: SSL Inspector > add an 'Ignore' rule"),
    InspectionProduct("Smoothwall", ("smoothwall",), "Smoothwall: HTTPS decryption > exempt the domains"),
    InspectionProduct("Lightspeed", ("lightspeed systems",), "Lightspeed: SSL decryption > exempt the domains"),
    InspectionProduct("Microsoft Entra Internet Access", ("global secure access",), "Entra: TLS inspection policy > add a bypass rule"),
)


def match_inspection(names: Iterable[str],
                     products: tuple[InspectionProduct, ...] = INSPECTION_PRODUCTS) -> tuple[InspectionProduct, str] | None:
    """The first product whose pattern appears in one of ``names``, and that name."""
    lookup = _product_of if products is INSPECTION_PRODUCTS else (lambda t: _scan(t, products))
    for text in names:
        product = lookup(text)
        if product is not None:
            return product, text
    return None


@functools.lru_cache(maxsize=4096)  # the same CA names recur across every endpoint of a run
def _product_of(text: str) -> InspectionProduct | None:
    return _scan(text, INSPECTION_PRODUCTS)


def _scan(text: str, products: tuple[InspectionProduct, ...]) -> InspectionProduct | None:
    lowered = text.lower()
    for product in products:
        if any(p in lowered for p in product.patterns):
            return product
    return None
