"""Who a keyless signature must come from: certificate identity + OIDC issuer.

:class:`IdentityPolicy` is a ``sigstore`` verification policy (it has the
``verify(cert)`` sigstore calls) used for bundles *and* by our own classic
keyless check, so both layouts apply the same rule:

* the issuer is read from Fulcio's ``1.3.6.1.4.1.57264.1.8`` extension (a DER
  UTF8String), falling back to the older raw ``…1.1``; it must equal the
  configured issuer exactly;
* the identity is any SAN of the certificate (e-mail, URI, or Fulcio's
  ``1.3.6.1.4.1.57264.1.7`` other-name); it must equal the configured identity,
  or the regular expression must match it **entirely** (``re.fullmatch``: cosign
  searches unanchored; anchoring avoids ``org/repo`` matching ``evil/org/repo``).

A mismatch raises :class:`IdentityMismatch` or :class:`IssuerMismatch`, which
subclass sigstore's ``VerificationError`` so they travel through sigstore's
verifier unchanged and the verdict can say which of the two was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from sigstore.errors import VerificationError

ISSUER_V1_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OTHERNAME_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


class IdentityMismatch(VerificationError):
    """The certificate names another signer."""


class IssuerMismatch(VerificationError):
    """The certificate was issued for a token from another OIDC issuer."""


def _der_utf8(value: bytes) -> str | None:
    """The text of a DER UTF8String, or None when ``value`` is not one."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        size = length & 0x7F
        length, offset = int.from_bytes(value[2 : 2 + size], "big"), 2 + size
    body = value[offset : offset + length]
    if len(body) != length:
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


def _extension_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def certificate_issuer(cert: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded in ``cert``."""
    v2 = _extension_bytes(cert, ISSUER_V2_OID)
    if v2 is not None and (text := _der_utf8(v2)) is not None:
        return text
    v1 = _extension_bytes(cert, ISSUER_V1_OID)
    try:
        return v1.decode() if v1 is not None else None
    except UnicodeDecodeError:
        return None


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """Every identity the certificate's SAN names (e-mails, URIs, Fulcio other-names)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [*san.get_values_for_type(x509.RFC822Name)]
    names += san.get_values_for_type(x509.UniformResourceIdentifier)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OTHERNAME_OID and (text := _der_utf8(other.value)) is not None:
            names.append(text)
    return names


def describe_signer(cert: x509.Certificate) -> str:
    """``<identity> from <issuer>``: how verdicts name a keyless signer."""
    identities = certificate_identities(cert)
    identity = identities[0] if identities else "(no identity)"
    return f"{identity} from {certificate_issuer(cert) or '(no issuer)'}"


@dataclass(frozen=True)
class IdentityPolicy:
    """Exactly one of ``identity`` or ``identity_regexp``, plus the ``issuer``."""

    issuer: str
    identity: str | None = None
    identity_regexp: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regexp is None):
            raise ValueError("give exactly one of identity and identity_regexp")
        if self.identity_regexp is not None:
            re.compile(self.identity_regexp)

    def describe(self) -> str:
        wanted = (
            self.identity if self.identity is not None else f"/{self.identity_regexp}/ (regexp)"
        )
        return f"{wanted} from {self.issuer}"

    def matches(self, name: str) -> bool:
        if self.identity is not None:
            return name == self.identity
        return re.fullmatch(self.identity_regexp or "", name) is not None

    def verify(self, cert: x509.Certificate) -> None:
        """Raise :class:`IssuerMismatch` or :class:`IdentityMismatch` (sigstore's policy API)."""
        issuer = certificate_issuer(cert)
        if issuer != self.issuer:
            raise IssuerMismatch(
                f"certificate issued for OIDC issuer {issuer or '(none)'}, expected {self.issuer}"
            )
        names = certificate_identities(cert)
        if not any(self.matches(name) for name in names):
            wanted = self.identity or f"a match of /{self.identity_regexp}/"
            found = ", ".join(names) or "(none)"
            raise IdentityMismatch(f"certificate identity {found}, expected {wanted}")
