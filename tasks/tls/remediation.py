"""What to do about each cause: concrete, most likely fix first, platform-aware.

Sources: the guide's methodology (seed/tls-handshake-guide.txt) with the
corrections of platform-facts.md (token host, proxy allow-list domains,
OP_NO_TICKET, the CXone cipher requirement).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import Cause, is_ip
from .proxy_causes import PROXY_CAUSES, proxy_remediation

GENESYS_DOMAINS = ("mypurecloud.com", "mypurecloud.ie", "mypurecloud.de", "mypurecloud.jp",
                   "mypurecloud.com.au", "pure.cloud", "us-gov-pure.cloud", "genesys.cloud")
NICE_DOMAINS = ("niceincontact.com", "nice-incontact.com", "incontact.com")


def platform_of(host: str) -> str | None:
    host = host.lower().rstrip(".")
    if any(host == d or host.endswith("." + d) for d in GENESYS_DOMAINS):
        return "genesys"
    if any(host == d or host.endswith("." + d) for d in NICE_DOMAINS):
        return "nice"
    return None


def allow_list(host: str) -> str:
    platform = platform_of(host)
    if platform == "genesys":
        return ", ".join("*." + d for d in GENESYS_DOMAINS)
    if platform == "nice":
        return ", ".join("*." + d for d in NICE_DOMAINS)
    return host


@dataclass(frozen=True)
class Facts:
    """The specifics a remediation names (all optional)."""

    host: str
    port: int = 443
    ca_bundle: str | None = None
    tls_min: str = "1.2"
    tls_max: str = "1.3"
    details: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.details.get(key, default)


def _store_update_steps(facts: Facts) -> list[str]:
    steps = []
    if facts.ca_bundle:
        steps.append(f"The client trusts only {facts.ca_bundle}: regenerate it from a current store "
                     "(e.g. copy certifi's cacert.pem or /etc/ssl/certs/ca-certificates.crt) or point the "
                     "client at the system store; a static PEM baked into an image goes stale at every CA rotation.")
    steps += [
        "Update the OS trust store: Debian/Ubuntu `apt-get install --only-upgrade ca-certificates && update-ca-certificates`; "
        "RHEL/Alma `dnf update ca-certificates && update-ca-trust`; Windows: run Windows Update (root certificates).",
        "Python clients that use certifi: `pip install --upgrade certifi`; in containers mount the host's CA store "
        "read-only instead of baking certificates into the image.",
    ]
    return steps


def remediation_for(cause: Cause, facts: Facts) -> tuple[str, ...]:
    if cause is Cause.OK:
        return ()
    h, platform = facts.host, platform_of(facts.host)
    target = f"{h}:{facts.port}"
    if cause in PROXY_CAUSES:
        return proxy_remediation(cause, facts.details, allow_list(h))
    if cause is Cause.DNS_FAILURE:
        steps = [f"Check the host name {h!r} for typos; `getent hosts {h}` must return an address from the client machine."]
        if platform == "genesys":
            steps.append("Genesys hosts are api.<region domain> and login.<region domain> (e.g. api.mypurecloud.com, "
                         "login.mypurecloud.com): check the region key of the target.")
        elif platform == "nice":
            steps.append("Take the CXone API host from discovery (/.well-known/cxone-configuration, api_endpoint) "
                         "rather than hard-coding it.")
        steps.append("If the client must use an internal resolver or a split-horizon DNS, make sure it forwards public names.")
        return tuple(steps)
    if cause is Cause.TCP_REFUSED:
        return (f"Nothing listens on {target}: check the port (HTTPS is 443) and that the service is up.",
                "If the address comes from --resolve or a hosts-file entry, check it points at the right machine.",
                "A local firewall or proxy that rejects connections also shows as refused: check egress rules for the port.")
    if cause is Cause.TCP_TIMEOUT:
        return (f"No TCP answer from {target} in time: check egress firewall rules and security groups for the port.",
                "If the client must use an HTTP(S) proxy for outbound traffic, configure it (HTTPS_PROXY) and exempt nothing by accident.",
                "Check the route: the address may be unreachable from this network (VPN, private link).")
    if cause is Cause.HANDSHAKE_TIMEOUT and facts.get("via_proxy"):
        return (f"The proxy {facts.get('via_proxy')} connected to {target} for this client (the tunnel is open), but "
                "no TLS answer came back through it: check that the host serves TLS on this port and is not "
                "overloaded, then the proxy's log for the CONNECT (it connects from its side, not this machine).",
                "A middlebox between the proxy and the host (IPS, firewall with TLS inspection) may be holding the "
                "ClientHello; compare with `curl -x` through the same proxy and from another network.")
    if cause is Cause.HANDSHAKE_TIMEOUT:
        return ("TCP connects but no TLS answer arrives: a middlebox (IPS, firewall with TLS inspection) is likely holding "
                "the ClientHello; check its logs for this destination.",
                f"Check that {target} really serves TLS on this port and is not overloaded; retry from another network to compare.")
    if cause is Cause.CONNECTION_RESET:
        return ("The connection is reset during the handshake with no TLS alert: typical of a firewall or IPS that drops "
                "the ClientHello (SNI-based filtering, geo-blocking, deep packet inspection). Check its logs and allow the destination"
                + (f" ({allow_list(h)})." if platform else "."),
                "Compare with `openssl s_client -connect HOST:PORT -servername HOST` from another network: if it works there, the path is the problem.")
    if cause is Cause.NOT_TLS:
        return (f"{target} does not speak TLS: use https:// only on the TLS port (usually 443) and check the port number.",
                "If a proxy is in the path, make sure the client uses CONNECT tunnelling and does not send TLS to a plain-HTTP port.")
    if cause is Cause.PROTOCOL_VERSION_MISMATCH:
        server = facts.get("server_version")
        steps = []
        if server == "TLSv1.3" or (facts.get("server_versions") or []) == ["TLSv1.3"]:
            steps.append("Allow TLS 1.3 in the client policy: set tls_max = \"1.3\" (Python: ctx.maximum_version = "
                         "ssl.TLSVersion.TLSv1_3; curl: --tls-max 1.3; Java: -Djdk.tls.client.protocols=TLSv1.2,TLSv1.3).")
            if platform in ("genesys", "nice"):
                steps.append("Genesys Cloud and NICE CXone route some API clusters to TLS 1.3-only gateways: a client capped "
                             "at TLS 1.2 gets its token and then fails on downstream endpoints. Use min 1.2 / max 1.3.")
            else:
                steps.append("Keep the minimum at TLS 1.2 and the maximum at 1.3: the client then negotiates the highest version both sides support.")
        elif server in ("TLSv1", "TLSv1.1"):
            steps.append(f"The server only offers {server}, below the client's minimum {facts.tls_min}: the server must enable TLS 1.2 "
                         "(do not lower the client's minimum: TLS 1.0/1.1 are deprecated, RFC 8996).")
        else:
            steps.append(f"The client's range TLS {facts.tls_min}–{facts.tls_max} and the server's have nothing in common: "
                         "align them (min 1.2, max 1.3 on both sides).")
        return tuple(steps)
    if cause is Cause.CIPHER_MISMATCH:
        if facts.get("unmapped_fallback"):
            reason = (facts.get("unmapped") or {}).get("reason", "?")
            return (f"OpenSSL failed the handshake with {reason}, which cxhealth does not map to a cause: compare with "
                    f"`openssl s_client -connect {target} -servername {h}` and the server's TLS logs for that reason.",
                    "Check the server's TLS configuration (certificate, key, ciphers, groups) against the client's "
                    f"policy (TLS {facts.tls_min}–{facts.tls_max}, the cipher string under test).")
        chosen = facts.get("server_cipher")
        version = facts.get("server_version")
        if not chosen:
            # No variant was accepted: what the server offers is not known, so nothing is claimed about it.
            steps = [f"No ClientHello variant tried was accepted (evidence.probes lists them): compare the server's TLS "
                     f"configuration with the client's — its TLS 1.3 suites and "
                     f"TLS 1.2 ciphers, its key-exchange groups, its signature algorithms and its certificate's key type "
                     f"(a curve or key the client does not support) — e.g. with `openssl s_client -connect {target} "
                     f"-servername {h}` and the server's TLS logs."]
            if facts.tls_max != "1.3":
                steps.append("Allow TLS 1.3 in the client as well (tls_max = \"1.3\"), so that a server which "
                             "also speaks TLS 1.3 can be met on it.")
            return tuple(steps)
        if version in ("TLSv1", "TLSv1.1"):
            return (f"The server only negotiates {version} (with {chosen}), a deprecated version (RFC 8996) whose suites "
                    "the client refuses: the server must enable TLS 1.2 with ECDHE and AES-GCM (e.g. "
                    "ECDHE-RSA-AES128-GCM-SHA256). Lowering the client's minimum is not enough: OpenSSL 3 refuses TLS "
                    "1.0/1.1 at its default security level, and lowering that is unsafe.",)
        steps = ["The client's TLS 1.2 cipher list and the server's share no suite"
                 + f" (with every cipher allowed the server chose {chosen}" + (f" on {version}" if version else "") + "): "
                 "prefer fixing the server to offer ECDHE with AES-GCM (e.g. ECDHE-RSA-AES128-GCM-SHA256), "
                 "or add one suite the server accepts to the client's cipher string."]
        if platform == "nice":
            steps.append("NICE CXone requires ECDHE-RSA-AES128-GCM-SHA256 or ECDHE-RSA-AES256-GCM-SHA384: make sure the "
                         "client's cipher string includes them (the default ECDHE+AESGCM does).")
        if facts.tls_max != "1.3":
            steps.append("Allow TLS 1.3 in the client (tls_max = \"1.3\"): its suites are fixed and cannot mismatch this way.")
        elif version and version != "TLSv1.3":
            steps.append(f"The client already allows TLS 1.3 and the server negotiated {version} even with every version "
                         "allowed: enabling TLS 1.3 on the server removes this kind of mismatch.")
        return tuple(steps)
    if cause is Cause.SNI_REQUIRED and is_ip(h):
        return ("The server needs a host name as SNI, and a client that connects to an IP address sends none: connect "
                "by the server's DNS name (use --resolve / a hosts entry to pin the address), or set server_hostname "
                "(cxhealth: --sni NAME) to the name the server expects.",
                "If a proxy or load balancer sits in between, make it preserve the original SNI and Host header.")
    if cause is Cause.SNI_REQUIRED and facts.get("name_not_served"):
        return (f"The server does not serve {h}: check the host name (a typo, another environment or region of the "
                "service), or have the server configured for it (nginx server_name, the load balancer's listener "
                "certificates and host rules).",
                "If a proxy or load balancer sits in between, make sure it routes this name to the right backend.")
    if cause is Cause.SNI_REQUIRED:
        return (f"Send SNI: set server_hostname to the exact host name ({h}) in the client's TLS context; never send an "
                "IP address or leave SNI empty (legacy middleware does).",
                "If a proxy or load balancer sits in between, make it preserve the original SNI and Host header.")
    if cause is Cause.CLIENT_CERT_REQUIRED:
        after = facts.get("certificate_request") and facts.get("first_request")
        if facts.get("client_cert_supplied"):
            return ("The server rejected the client certificate that was supplied"
                    + (f" (it answered the first request with {facts.get('first_request')})" if after else "")
                    + ": check it is the one registered with the service, not expired, and that its issuing CA is "
                    "the one the server trusts.",
                    "Send the full client chain (leaf + intermediates) in the --client-cert PEM.")
        return ("The server demands a client certificate (mutual TLS)"
                + (" — it completes the handshake and then refuses requests without one" if after else "")
                + ": configure the integration's client certificate and key (--client-cert/--client-key; "
                "httpx: cert=(cert, key)).",
                "If mutual TLS is not expected for this endpoint, a proxy or WAF in the path may be terminating TLS with mTLS on: check the path.")
    if cause is Cause.CERT_EXPIRED:
        expired = facts.get("expired") or []
        steps = []
        server_side = [e for e in expired if e.get("whose") == "server"]
        client_side = [e for e in expired if e.get("whose") == "client_store"]
        renewed = [e for e in client_side if e.get("successor_in_reference_store")]
        gone = [e for e in client_side if not e.get("successor_in_reference_store")]
        if renewed:
            names = ", ".join(repr(e.get("name")) for e in renewed[:4])
            steps.append(f"The client's trust store holds the expired root {names}, and the reference store holds its "
                         "renewed copy (same name and key, valid now): update the client's trust store and remove the "
                         "expired certificate.")
        if gone:
            names = ", ".join(repr(e.get("name")) for e in gone[:4])
            steps.append(f"The chain ends at the expired root {names} of the client's store, and no store given holds a "
                         "valid re-issue of it: the server operator must move to a chain under a current root (its CA's "
                         "new or cross-signed intermediate); updating the client's store helps only if the CA re-issued "
                         "that root.")
        if server_side:
            names = ", ".join(f"{e.get('name')!r} ({e.get('role')})" for e in server_side[:4])
            steps.append(f"The server's chain has expired certificate(s): {names}: the server operator must renew "
                         + ("them" if len(server_side) > 1 else "it")
                         + (" and send the current intermediate" if any(e.get("is_ca") for e in server_side) else "") + ".")
        if not expired:
            steps.append(f"{facts.get('expired_subject', 'A certificate in the chain')} has expired: the server operator "
                         "must renew it (or, if it is a root of the client's store, update that store).")
        steps.append("Check the client's clock (timedatectl / NTP) if the dates look wrong.")
        return tuple(steps)
    if cause is Cause.CERT_NOT_YET_VALID:
        return ("Check the client's clock first (timedatectl status; enable NTP): a clock in the past makes new certificates look not yet valid.",
                f"If the clock is right, {facts.get('future_subject', 'the certificate')} was deployed before its start date: "
                "the server operator must wait or reissue it.")
    if cause is Cause.HOSTNAME_MISMATCH:
        sans = facts.get("sans") or []
        return (f"The certificate does not cover {h} (it covers: {', '.join(sans[:6]) or 'no SAN'}): connect with the exact "
                "host name the certificate is issued for, or have the server present a certificate for this name.",
                "If you connect by IP or through --resolve/hosts entries, check they point at the right service; a default "
                "certificate often means the server did not get the SNI it expected.")
    if cause is Cause.SELF_SIGNED:
        return ("The server presents a self-signed certificate: have it use a certificate from a public CA (or your private CA).",
                "If the endpoint is internal and self-signed by design, trust exactly that certificate via --ca-bundle "
                "(never turn verification off).")
    if cause is Cause.INCOMPLETE_CHAIN:
        missing = facts.get("missing_issuer", "its intermediate")
        if facts.get("issuer_found") is False and facts.get("sent_top_is_ca"):
            steps = [f"The server must send the rest of its chain: the issuer {missing} of the last certificate it sends "
                     "(configure the full chain, leaf + intermediates, on the server or load balancer).",
                     f"If {missing} is a root (your organisation's private CA), no server sends it: the client must "
                     "trust it — add that root to the client's bundle (--ca-bundle / ca_bundle)."]
        elif len(facts.get("missing_intermediates") or []) > 1:
            listed = ", then ".join(facts.get("missing_intermediates"))
            steps = [f"The server must send its intermediate certificates ({listed}): configure the full chain "
                     "(leaf + intermediates) on the server or load balancer."]
        else:
            steps = [f"The server must send its intermediate certificate ({missing}): configure the full chain "
                     "(leaf + intermediates) on the server or load balancer."]
        if facts.get("unfound_issuer"):
            steps.append(f"Above it the chain stops at an issuer no store holds and none could supply "
                         f"({facts.get('unfound_issuer')}): if it is an intermediate, the server must send it too; if it "
                         "is your organisation's private root, the client must trust it — add that root to the client's "
                         "bundle (--ca-bundle / ca_bundle).")
        if platform in ("genesys", "nice"):
            steps.insert(0, "The platform sends its full chain: a firewall or TLS-inspecting middlebox between the client and "
                         f"{h} is truncating it. Disable chain truncation for {allow_list(h)}.")
        else:
            steps.append("If a firewall or DPI device is in the path, check it is not truncating the chain (it happens on "
                         "'payload optimisation' features).")
        if len(facts.get("aia_urls") or []) > 1:
            steps.append(f"Stopgap on the client: add the intermediates fetched from {', '.join(facts.get('aia_urls'))} to "
                         "the client's bundle (browsers hide this problem by fetching them; most API clients do not).")
        elif facts.get("aia_url"):
            steps.append(f"Stopgap on the client: add the intermediate fetched from {facts.get('aia_url')} to the client's bundle "
                         "as an intermediate (browsers hide this problem by fetching it; most API clients do not).")
        elif facts.get("aia_url_unfetched") and facts.get("aia_fetch") == "wrong_certificate":
            steps.append(f"The certificate says its issuer is published at {facts.get('aia_url_unfetched')}, but that URL "
                         "serves no certificate that signs it: the CA's AIA URL is wrong; get the intermediate from the "
                         "CA's own repository.")
        elif facts.get("aia_url_unfetched"):
            how = "fetching it failed here" if facts.get("aia_fetch") == "failed" else "it was not fetched here"
            steps.append(f"Stopgap on the client: the certificate says its issuer is published at {facts.get('aia_url_unfetched')} "
                         f"({how}): download it and add it to the client's bundle as an intermediate.")
        elif facts.get("intermediate_source") not in (None, "aia"):
            steps.append(f"Stopgap on the client: add the missing intermediate, which the {facts.get('intermediate_source')} "
                         "holds, to the client's bundle.")
        return tuple(steps)
    if cause is Cause.STALE_TRUST_STORE:
        root = facts.get("anchor")
        head = (f"The chain is valid against an up-to-date public store (root {root}) but not against the client's store: "
                "the client's trust store is out of date.") if root else "The client's trust store is out of date."
        steps = [head, *_store_update_steps(facts)]
        if facts.get("client_path_invalid_sent_by_server"):
            steps.append(f"The server also sends {facts.get('client_path_invalid_name')!r}, which is out of its validity: "
                         "the server operator should stop sending it (clients with older stores follow it to the "
                         "outdated root).")
        return tuple(steps)
    if cause is Cause.UNTRUSTED_ROOT:
        root = facts.get("top_subject") or "the chain's root"
        return (f"The chain ends at {root}, which neither the client's store nor the public reference store trusts: "
                "if this is your organisation's private CA, add its root to the client's bundle (--ca-bundle / ca_bundle).",
                "If you did not expect a private CA here, treat it as possible interception: check which device issued it "
                f"and exempt {allow_list(h)} from TLS inspection.")
    if cause is Cause.WEAK_CRYPTO:
        if facts.get("parameter") and not facts.get("certificate"):
            return (f"The server's key exchange is too weak for the client ({facts.get('rule') or facts.get('parameter')}): "
                    "the server operator must offer ECDHE suites (or a DH group of 2048 bits or more, e.g. nginx "
                    "`ssl_dhparam` with ffdhe2048) and drop 1024-bit DHE.",
                    "Do not lower the client's security level (@SECLEVEL) to accept it: a 1024-bit group can be broken "
                    "by a well-funded attacker (Logjam).")
        what = facts.get("weakness") or facts.get("rule") or "a weak key or digest"
        return (f"The server operator must reissue {facts.get('certificate') or 'the weak certificate'} ({what}): use "
                "SHA-256 signatures and RSA keys of 2048 bits or more (or ECDSA P-256).",
                "Do not lower the client's security level (@SECLEVEL) to accept it: the weakness lets a third party "
                "forge certificates for this chain.")
    if cause is Cause.INVALID_CHAIN:
        rule = facts.get("rule") or "a rule of certificate validation"
        cert = facts.get("certificate") or "a certificate of the chain"
        if "message size" in rule:
            return ("The server's certificate message is larger than clients accept (OpenSSL's limit is 100 KiB): the "
                    "server operator must serve a smaller certificate (fewer SANs: split it into several certificates) "
                    "and send only the leaf and its intermediates.",)
        if "key usage" in rule and "CA" in rule:
            return (f"The server presents a CA certificate ({cert}) as its own: configure the server's certificate "
                    "file with the leaf first, then its intermediates (a reversed or wrong chain file).",
                    "The leaf must be the server's own certificate, with serverAuth in its extended key usage.")
        if "extended key usage" in rule or "key usage" in rule:
            return (f"{cert} is not a TLS server certificate ({rule}): the server operator must install a certificate "
                    "issued for server authentication (extendedKeyUsage serverAuth, keyUsage digitalSignature).",
                    "Check the server's certificate file: a client certificate or a CA certificate is configured in "
                    "place of the server's.")
        return (f"The CA must reissue {cert}: it breaks a rule the client enforces ({rule}); the chain links to a "
                "trusted root, so the client's trust store is not the problem.",
                "Do not switch verification off or trust the certificate directly to work around it.")
    if cause is Cause.PROXY_INTERCEPTION and facts.get("remove_root"):
        product = facts.get("product") or "a known-bad root"
        ca = facts.get("inspection_ca") or product
        return (f"Never trust this root: {ca} ({product}) "
                + ("has a private key that is public" if facts.get("product_kind") == "compromised"
                   else "belongs to a developer's intercepting proxy")
                + f" — {facts.get('bypass_hint')}.",
                "Find what is intercepting this machine's TLS (the software or proxy that installed the root) and "
                f"remove it; then retry {target}.")
    if cause is Cause.PROXY_INTERCEPTION:
        product = facts.get("product")
        hint = facts.get("bypass_hint")
        steps = [f"A TLS-inspecting proxy{f' ({product})' if product else ''} re-signs the connection: exempt "
                 f"{allow_list(h)} from inspection" + (f" — {hint}." if hint else ".")]
        if platform in ("genesys", "nice"):
            steps.append("Use DNS-name based bypass rules, not IP rules: the platform's load balancers use dynamic IP pools.")
        steps.append("If inspection is mandatory, trust the inspection CA only for the inspected path (add it to --ca-bundle) "
                     "and keep it out of the production trust boundary; expect --expect-issuer checks to keep flagging it.")
        return tuple(steps)
    if cause is Cause.PIN_MISMATCH:
        steps = ["No certificate in the chain matches the configured pins: the server's keys changed (or the pins are wrong)."]
        if platform == "genesys":
            steps.insert(0, "Genesys Cloud does not support certificate pinning: its certificates are rotated by AWS Certificate "
                         "Manager without notice. Pin CA/issuer sets (--expect-issuer), not leaves.")
        steps.append("Pin at least two keys (current + next/backup) and overlap them during rotation; pin the intermediate or root "
                     f"SPKI rather than the leaf. Current chain pins: {', '.join(facts.get('chain_pins', [])[:4])}.")
        return tuple(steps)
    raise ValueError(f"no remediation for {cause}")  # pragma: no cover - every cause has one (tested)
