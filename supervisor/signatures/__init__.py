"""Cosign-compatible signature verification of target digests, before anything changes.

::

    verifier.py     SignaturePolicyVerifier (the update run's SignatureVerifier), check_verdicts
    signers.py      TrustedSigners: the public key and/or keyless identity, from settings
    artifacts.py    finding signatures through the RegistryClient (.sig tag, referrers)
    classic.py      one classic layer: key-based, or keyless against the trust root
    bundles.py      one Sigstore bundle: key-based DSSE, or keyless through sigstore
    payloads.py     what was signed: simple-signing payload, in-toto statement
    fulcio.py       keyless certificate path validation (expired vs untrusted)
    transparency.py SCT, Rekor SET and log-entry checks for classic keyless
    identity.py     IdentityPolicy: certificate identity (exact or regexp) + OIDC issuer
    keys.py         PublicKey: the cosign ECDSA P-256 key
    trustroot.py    TrustRoot: trusted_root.json, loaded once
    models.py       Policy, Layout, Outcome, SignatureVerdict (recorded in runs)

Only ``artifacts.py`` talks to the registry, and only through the
``RegistryClient`` protocol; nothing here fetches from the network otherwise.
docs/signatures.md is the operator's view.

Nothing is imported here on purpose: ``supervisor.config`` imports ``models``, and
loading ``sigstore`` for every import of the settings would be slow and circular.
Import from the modules: ``from supervisor.signatures.verifier import
SignaturePolicyVerifier, check_verdicts``.
"""
