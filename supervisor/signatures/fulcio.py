"""Checks of a keyless signing certificate against the trust root's Fulcio CAs.

The same path validation sigstore performs for bundles (cryptography's X.509
verifier, web-PKI extension defaults except that EKUs are allowed, the trust
root's CA certificates as the store), at the time the transparency log saw the
signature. Used directly for classic keyless signatures, and to *explain* a
sigstore refusal of a bundle: when validation fails, :func:`check_chain` tells a
certificate that was valid once but not when it signed (``CERTIFICATE_EXPIRED``)
from one no trusted CA issued (``UNTRUSTED_CERTIFICATE``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError

from supervisor.signatures.models import Outcome, Refusal
from supervisor.signatures.trustroot import TrustRoot


def _chain_at(cert: x509.Certificate, trust: TrustRoot, at: datetime) -> list[x509.Certificate]:
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(trust.fulcio_certs))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    return list(verifier.verify(cert, []).chain)


def check_chain(cert: x509.Certificate, trust: TrustRoot, signed_at: datetime) -> x509.Certificate:
    """Validate ``cert`` at ``signed_at``; return its issuer, or refuse saying why not."""
    try:
        chain = _chain_at(cert, trust, signed_at)
    except (X509VerificationError, x509.UnsupportedGeneralNameType, ValueError) as err:
        raise chain_refusal(cert, trust, signed_at, str(err)) from err
    if len(chain) < 2:
        raise Refusal(Outcome.UNTRUSTED_CERTIFICATE, "the signing certificate is itself a CA")
    return chain[1]


def chain_refusal(
    cert: x509.Certificate, trust: TrustRoot, signed_at: datetime, detail: str
) -> Refusal:
    """Why path validation of ``cert`` at ``signed_at`` failed, as a verdict."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not start <= signed_at <= end:
        try:
            _chain_at(cert, trust, start + timedelta(seconds=1))
        except (X509VerificationError, x509.UnsupportedGeneralNameType, ValueError):
            pass  # not even valid in its own lifetime: untrusted, said below
        else:
            return Refusal(
                Outcome.CERTIFICATE_EXPIRED,
                f"certificate valid {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC, "
                f"but the transparency log saw the signature at "
                f"{signed_at:%Y-%m-%d %H:%M:%S} UTC",
            )
    return Refusal(
        Outcome.UNTRUSTED_CERTIFICATE,
        f"certificate does not chain to a Fulcio CA of the trust root {trust.source} ({detail})",
    )


def check_usage(cert: x509.Certificate) -> None:
    """Fulcio's profile: digitalSignature key usage and the codeSigning EKU."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as err:
        raise Refusal(
            Outcome.UNTRUSTED_CERTIFICATE, "certificate lacks key usage extensions"
        ) from err
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise Refusal(Outcome.UNTRUSTED_CERTIFICATE, "certificate is not for code signing")
