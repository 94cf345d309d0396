"""The one table from OpenSSL's evidence to a cause (as httpx's
``map_httpcore_exceptions`` is the one place its transport errors are mapped).

Two kinds of evidence come out of a failed handshake (Python 3.11, OpenSSL 3.0):

* a *verify code* (``X509_V_ERR_*``, include/openssl/x509_vfy.h) when the chain
  did not verify: :data:`VERIFY_CODES`;
* a *reason* (the ``SSL_R_*`` / alert name ``ssl.SSLError.reason`` carries)
  when the handshake itself failed: :data:`HANDSHAKE_REASONS`.

Each entry names the cause it is evidence of, or a *family* when the code alone
cannot tell (code 20 is four causes; a handshake_failure alert is a cipher, SNI
or client-certificate problem): the chain analysis or the extra probes decide
within the family. Anything not in the table is *unmapped*: the diagnosis says
so in ``evidence.unmapped`` instead of guessing (tests/test_openssl_table.py
checks every code and reason the lab provokes is in here).
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Cause

# Families: evidence that needs more than itself to name a cause.
TRUST = "trust"          # the chain did not reach an anchor: the stores and AIA decide (group 4)
NEGOTIATION = "negotiation"  # the server refused the ClientHello: the one-change probes decide
CLIENT_CERT = "client_cert"  # a client-certificate alert: a cause only if one was asked for / supplied

Mapped = Cause | str


@dataclass(frozen=True)
class VerifyCode:
    name: str
    cause: Mapped
    rule: str = ""


def _v(name: str, cause: Mapped, rule: str = "") -> VerifyCode:
    return VerifyCode(name, cause, rule)


IC, WC = Cause.INVALID_CHAIN, Cause.WEAK_CRYPTO

#: X509_V_ERR_* -> cause (or the TRUST family) and, for rule breaks, the rule.
VERIFY_CODES: dict[int, VerifyCode] = {
    2: _v("UNABLE_TO_GET_ISSUER_CERT", TRUST),
    3: _v("UNABLE_TO_GET_CRL", IC, "revocation (CRL)"),
    4: _v("UNABLE_TO_DECRYPT_CERT_SIGNATURE", IC, "certificate signature"),
    5: _v("UNABLE_TO_DECRYPT_CRL_SIGNATURE", IC, "revocation (CRL)"),
    6: _v("UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY", IC, "malformed issuer public key"),
    7: _v("CERT_SIGNATURE_FAILURE", IC, "certificate signature"),
    8: _v("CRL_SIGNATURE_FAILURE", IC, "revocation (CRL)"),
    9: _v("CERT_NOT_YET_VALID", Cause.CERT_NOT_YET_VALID),
    10: _v("CERT_HAS_EXPIRED", Cause.CERT_EXPIRED),
    11: _v("CRL_NOT_YET_VALID", IC, "revocation (CRL)"),
    12: _v("CRL_HAS_EXPIRED", IC, "revocation (CRL)"),
    13: _v("ERROR_IN_CERT_NOT_BEFORE_FIELD", IC, "malformed validity field"),
    14: _v("ERROR_IN_CERT_NOT_AFTER_FIELD", IC, "malformed validity field"),
    15: _v("ERROR_IN_CRL_LAST_UPDATE_FIELD", IC, "revocation (CRL)"),
    16: _v("ERROR_IN_CRL_NEXT_UPDATE_FIELD", IC, "revocation (CRL)"),
    18: _v("DEPTH_ZERO_SELF_SIGNED_CERT", Cause.SELF_SIGNED),
    19: _v("SELF_SIGNED_CERT_IN_CHAIN", TRUST),
    20: _v("UNABLE_TO_GET_ISSUER_CERT_LOCALLY", TRUST),
    21: _v("UNABLE_TO_VERIFY_LEAF_SIGNATURE", TRUST),
    22: _v("CERT_CHAIN_TOO_LONG", IC, "chain length (verify depth)"),
    23: _v("CERT_REVOKED", IC, "revocation"),
    24: _v("NO_ISSUER_PUBLIC_KEY", IC, "malformed issuer public key"),
    25: _v("PATH_LENGTH_EXCEEDED", IC, "path length (basicConstraints pathLenConstraint)"),
    26: _v("INVALID_PURPOSE", IC, "key usage / extended key usage (not a TLS server certificate)"),
    27: _v("CERT_UNTRUSTED", TRUST),
    28: _v("CERT_REJECTED", IC, "trust settings reject the certificate"),
    29: _v("SUBJECT_ISSUER_MISMATCH", IC, "issuer name"),
    30: _v("AKID_SKID_MISMATCH", IC, "authority key identifier"),
    31: _v("AKID_ISSUER_SERIAL_MISMATCH", IC, "authority key identifier"),
    32: _v("KEYUSAGE_NO_CERTSIGN", IC, "key usage (an issuer without keyCertSign)"),
    33: _v("UNABLE_TO_GET_CRL_ISSUER", IC, "revocation (CRL)"),
    34: _v("UNHANDLED_CRITICAL_EXTENSION", IC, "unknown critical extension"),
    35: _v("KEYUSAGE_NO_CRL_SIGN", IC, "key usage (CRL signing)"),
    36: _v("UNHANDLED_CRITICAL_CRL_EXTENSION", IC, "revocation (CRL)"),
    37: _v("INVALID_NON_CA", IC, "basic constraints (a non-CA certificate used as an issuer)"),
    38: _v("PROXY_PATH_LENGTH_EXCEEDED", IC, "proxy certificate path length"),
    39: _v("KEYUSAGE_NO_DIGITAL_SIGNATURE", IC, "key usage (digitalSignature)"),
    40: _v("PROXY_CERTIFICATES_NOT_ALLOWED", IC, "proxy certificates"),
    41: _v("INVALID_EXTENSION", IC, "malformed extension"),
    42: _v("INVALID_POLICY_EXTENSION", IC, "malformed certificate policy extension"),
    43: _v("NO_EXPLICIT_POLICY", IC, "certificate policy"),
    44: _v("DIFFERENT_CRL_SCOPE", IC, "revocation (CRL)"),
    45: _v("UNSUPPORTED_EXTENSION_FEATURE", IC, "unsupported extension feature"),
    46: _v("UNNESTED_RESOURCE", IC, "RFC 3779 resources"),
    47: _v("PERMITTED_VIOLATION", IC, "name constraints (a name outside the permitted subtrees)"),
    48: _v("EXCLUDED_VIOLATION", IC, "name constraints (a name in the excluded subtrees)"),
    49: _v("SUBTREE_MINMAX", IC, "name constraints (min/max)"),
    51: _v("UNSUPPORTED_CONSTRAINT_TYPE", IC, "name constraints (unsupported type)"),
    52: _v("UNSUPPORTED_CONSTRAINT_SYNTAX", IC, "name constraints (unsupported syntax)"),
    53: _v("UNSUPPORTED_NAME_SYNTAX", IC, "name constraints (unsupported name syntax)"),
    54: _v("CRL_PATH_VALIDATION_ERROR", IC, "revocation (CRL)"),
    55: _v("PATH_LOOP", IC, "path loop"),
    56: _v("SUITE_B_INVALID_VERSION", IC, "Suite B"),
    57: _v("SUITE_B_INVALID_ALGORITHM", IC, "Suite B"),
    58: _v("SUITE_B_INVALID_CURVE", IC, "Suite B"),
    59: _v("SUITE_B_INVALID_SIGNATURE_ALGORITHM", IC, "Suite B"),
    60: _v("SUITE_B_LOS_NOT_ALLOWED", IC, "Suite B"),
    61: _v("SUITE_B_CANNOT_SIGN_P_384_WITH_P_256", IC, "Suite B"),
    62: _v("HOSTNAME_MISMATCH", Cause.HOSTNAME_MISMATCH),
    63: _v("EMAIL_MISMATCH", Cause.HOSTNAME_MISMATCH),
    64: _v("IP_ADDRESS_MISMATCH", Cause.HOSTNAME_MISMATCH),
    65: _v("DANE_NO_MATCH", IC, "DANE"),
    66: _v("EE_KEY_TOO_SMALL", WC, "key size (end-entity)"),
    67: _v("CA_KEY_TOO_SMALL", WC, "key size (CA)"),
    68: _v("CA_MD_TOO_WEAK", WC, "signature digest"),
    71: _v("NO_VALID_SCTS", IC, "certificate transparency"),
    72: _v("PROXY_SUBJECT_NAME_VIOLATION", IC, "proxy certificate name"),
    73: _v("OCSP_VERIFY_NEEDED", IC, "revocation (OCSP)"),
    74: _v("OCSP_VERIFY_FAILED", IC, "revocation (OCSP)"),
    75: _v("OCSP_CERT_UNKNOWN", IC, "revocation (OCSP)"),
    76: _v("UNSUPPORTED_SIGNATURE_ALGORITHM", IC, "signature algorithm"),
    77: _v("SIGNATURE_ALGORITHM_MISMATCH", IC, "signature algorithm"),
    78: _v("SIGNATURE_ALGORITHM_INCONSISTENCY", IC, "signature algorithm"),
    79: _v("INVALID_CA", IC, "basic constraints (an issuer that is not a CA)"),
    80: _v("PATHLEN_INVALID_FOR_NON_CA", IC, "basic constraints"),
    81: _v("PATHLEN_WITHOUT_KU_KEY_CERT_SIGN", IC, "basic constraints / key usage"),
    82: _v("KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA", IC, "key usage"),
    83: _v("ISSUER_NAME_EMPTY", IC, "malformed certificate (empty issuer)"),
    84: _v("SUBJECT_NAME_EMPTY", IC, "malformed certificate (empty subject)"),
    85: _v("MISSING_AUTHORITY_KEY_IDENTIFIER", IC, "authority key identifier"),
    86: _v("MISSING_SUBJECT_KEY_IDENTIFIER", IC, "subject key identifier"),
    87: _v("EMPTY_SUBJECT_ALT_NAME", IC, "malformed subjectAltName"),
    88: _v("EMPTY_SUBJECT_SAN_NOT_CRITICAL", IC, "subjectAltName criticality"),
    89: _v("CA_BCONS_NOT_CRITICAL", IC, "basic constraints criticality"),
    90: _v("AUTHORITY_KEY_IDENTIFIER_CRITICAL", IC, "authority key identifier criticality"),
    91: _v("SUBJECT_KEY_IDENTIFIER_CRITICAL", IC, "subject key identifier criticality"),
    92: _v("CA_CERT_MISSING_KEY_USAGE", IC, "key usage (a CA without keyUsage)"),
    93: _v("EXTENSIONS_REQUIRE_VERSION_3", IC, "malformed certificate (extensions in a v1/v2 certificate)"),
    94: _v("EC_KEY_EXPLICIT_PARAMS", IC, "EC key with explicit parameters"),
}

#: Codes whose only meaning is "no anchor was reached": OpenSSL reports them while
#: building the chain, before any rule, time or name check.
TRUST_CODES = frozenset(c for c, v in VERIFY_CODES.items() if v.cause == TRUST)
# Codes OpenSSL reports before it builds the chain (X509_verify_cert checks the leaf's key first):
# such a code says nothing about whether the chain reaches a trusted root.
CHECKED_BEFORE_PATH = frozenset({66})


#: ssl.SSLError.reason -> cause or family. Reasons are OpenSSL 3.0's SSL_R_* names
#: and the alert names it gives a received alert (TLSV1_ALERT_*, SSLV3_ALERT_*).
HANDSHAKE_REASONS: dict[str, Mapped] = {
    # Not TLS at all (platform-facts.md: plain HTTP on the port -> WRONG_VERSION_NUMBER).
    **dict.fromkeys(("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "PACKET_LENGTH_TOO_LONG",
                     "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "RECORD_LENGTH_MISMATCH", "BAD_PACKET_LENGTH",
                     "WRONG_SSL_VERSION", "UNEXPECTED_MESSAGE", "UNEXPECTED_RECORD"), Cause.NOT_TLS),
    # The version ranges do not meet (confirmed by a wider-range probe).
    **dict.fromkeys(("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE",
                     "UNKNOWN_SSL_VERSION", "VERSION_TOO_LOW", "VERSION_TOO_HIGH",
                     "TLSV1_ALERT_INAPPROPRIATE_FALLBACK"), Cause.PROTOCOL_VERSION_MISMATCH),
    # The server refused what the ClientHello offered: cipher, SNI or client certificate (probes decide).
    **dict.fromkeys(("SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE",
                     "NO_SUITABLE_SIGNATURE_ALGORITHM", "NO_SHARED_SIGNATURE_ALGORITHMS", "WRONG_CIPHER_RETURNED",
                     "TLSV1_ALERT_INSUFFICIENT_SECURITY", "NO_SHARED_GROUPS", "WRONG_CURVE",
                     "TLSV1_ALERT_INTERNAL_ERROR", "SSLV3_ALERT_ILLEGAL_PARAMETER", "TLSV1_ALERT_DECODE_ERROR",
                     "TLSV1_ALERT_NO_APPLICATION_PROTOCOL", "SSLV3_ALERT_UNEXPECTED_MESSAGE"), NEGOTIATION),
    **dict.fromkeys(("TLSV1_UNRECOGNIZED_NAME", "SSLV3_ALERT_UNRECOGNIZED_NAME", "TLSV1_ALERT_UNRECOGNIZED_NAME"),
                    Cause.SNI_REQUIRED),
    **dict.fromkeys(("TLSV13_ALERT_CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
                    Cause.CLIENT_CERT_REQUIRED),
    # Alerts a server sends about a client certificate it was given (ours or the throwaway one).
    **dict.fromkeys(("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                     "TLSV1_ALERT_ACCESS_DENIED", "TLSV1_ALERT_DECRYPT_ERROR", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
                     "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED"), CLIENT_CERT),
    # The client's security level refuses the server's parameters (contract: weak_crypto).
    **dict.fromkeys(("DH_KEY_TOO_SMALL", "EE_KEY_TOO_SMALL", "CA_KEY_TOO_SMALL", "CA_MD_TOO_WEAK", "KEY_TOO_SMALL",
                     "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED", "BAD_DH_VALUE"), Cause.WEAK_CRYPTO),
    # A certificate message over the client's limit (SSL_CTX max_cert_list, 100 KiB): a rule break.
    "EXCESSIVE_MESSAGE_SIZE": Cause.INVALID_CHAIN,
    "WRONG_CERTIFICATE_TYPE": Cause.INVALID_CHAIN,
    "BAD_ECC_CERT": Cause.INVALID_CHAIN,
    # The peer closed with no alert.
    **dict.fromkeys(("UNEXPECTED_EOF_WHILE_READING", "EOF_OCCURRED_IN_VIOLATION_OF_PROTOCOL", "EOF"),
                    Cause.CONNECTION_RESET),
}

#: What the weak_crypto / invalid_chain reasons mean, for evidence.rule / evidence.parameter.
REASON_RULES: dict[str, str] = {
    "DH_KEY_TOO_SMALL": "the server's Diffie-Hellman group (DHE key exchange) is below the client's minimum",
    "EE_KEY_TOO_SMALL": "the server certificate's key is below the client's minimum",
    "CA_KEY_TOO_SMALL": "a CA certificate's key is below the client's minimum",
    "CA_MD_TOO_WEAK": "a certificate is signed with a digest the client refuses",
    "KEY_TOO_SMALL": "a key is below the client's minimum",
    "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED": "the server signs the handshake with a legacy algorithm (SHA-1/MD5)",
    "BAD_DH_VALUE": "the server's Diffie-Hellman value is unacceptable",
    "EXCESSIVE_MESSAGE_SIZE": "certificate message size (over the client's 100 KiB limit)",
    "WRONG_CERTIFICATE_TYPE": "certificate type",
    "BAD_ECC_CERT": "malformed EC certificate",
}

#: Reasons that are the peer rejecting our client certificate, or demanding one.
CLIENT_CERT_REASONS = frozenset(r for r, c in HANDSHAKE_REASONS.items()
                                if c in (CLIENT_CERT, Cause.CLIENT_CERT_REQUIRED))


def verify_entry(code: int | None) -> VerifyCode | None:
    return VERIFY_CODES.get(code) if code is not None else None


def reason_entry(reason: str | None) -> Mapped | None:
    return HANDSHAKE_REASONS.get(reason or "")


def reasons_of(mapped: Mapped) -> frozenset[str]:
    return frozenset(r for r, c in HANDSHAKE_REASONS.items() if c == mapped)
