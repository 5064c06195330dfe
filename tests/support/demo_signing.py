"""The demo's release pipeline: publish the fake app's versions to a repository of
their own and sign every digest the way ``cosign sign --key`` does.

The fake app is built once per version by ``scripts/testenv images`` and pushed to
``<registry>/stacksup/fakeapp``, which other tests expect unsigned. The demo (and
its test) copy those images, by digest and with their blobs mounted, into another
repository, tag them, and add a classic ``sha256-<hex>.sig`` signature per digest,
so the sidecar runs with ``SUPERVISOR_SIGNATURE_POLICY=enforce`` as in production.
In a real pipeline this is ``cosign sign --key cosign.key <image>@<digest>``.

    python -m tests.support.demo_signing REPOSITORY KEY_DIR [VERSION ...]

prints ``{"version": "repository@sha256:…", …}``; ``KEY_DIR`` keeps ``cosign.key``
(created once, reused) and ``cosign.pub``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from supervisor.registry.protocol import MANIFEST_MEDIA_TYPES
from tests.support.cosign_signer import KeySigner, classic_signature, classic_upload
from tests.support.signer_pki import new_key
from tests.support.signer_registry import RegistryWriter
from tests.support.testenv import StackTestEnv, load_testenv

SOURCE_REPOSITORY = "stacksup/fakeapp"


def load_or_create_key(key_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The signing key in ``key_dir/cosign.key`` (made on first use), and its cosign.pub."""
    key_dir.mkdir(parents=True, exist_ok=True)
    private = key_dir / "cosign.key"
    if private.exists():
        loaded = serialization.load_pem_private_key(private.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        key = loaded
    else:
        key = new_key()
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        handle = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
    (key_dir / "cosign.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key


async def _tag(writer: RegistryWriter, repository: str, digest: str, tag: str) -> None:
    url = writer._url(f"{repository}/manifests/{digest}")
    async with writer.session.get(url, headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}) as r:
        r.raise_for_status()
        body, media_type = await r.read(), r.headers["Content-Type"]
    await writer.put_manifest(repository, tag, media_type, body)


async def publish_signed(
    testenv: StackTestEnv,
    repository: str,
    key: ec.EllipticCurvePrivateKey,
    versions: list[str],
    writer_out: list[RegistryWriter] | None = None,
) -> dict[str, str]:
    """Copy, tag and sign ``versions``; return version → ``host/repository@digest``.

    When ``writer_out`` is given, the writer (which remembers every manifest pushed) is
    appended to it, so a test can delete what it pushed.
    """
    signer = KeySigner(key)
    pinned: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        writer = RegistryWriter(session, testenv.registry)
        for version in versions:
            digest = testenv.fakeapp[version].digest
            await writer.copy_image(SOURCE_REPOSITORY, repository, digest)
            await _tag(writer, repository, digest, version)
            name = f"{testenv.registry}/{repository}"
            layer = classic_signature(signer, name, digest)
            await writer.push(repository, classic_upload(digest, [layer]))
            pinned[version] = f"{name}@{digest}"
        if writer_out is not None:
            writer_out.append(writer)
    return pinned


async def delete_pushed(writer: RegistryWriter) -> None:
    async with aiohttp.ClientSession() as session:
        writer.session = session
        await writer.delete_pushed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repository", help="e.g. stacksup/demo-app")
    parser.add_argument("key_dir", type=Path)
    parser.add_argument("versions", nargs="*")
    args = parser.parse_args()
    testenv = load_testenv()
    if testenv is None:
        raise SystemExit("the test images are not built: scripts/testenv images")
    versions = args.versions or sorted(testenv.fakeapp)
    key = load_or_create_key(args.key_dir)
    pinned = asyncio.run(publish_signed(testenv, args.repository, key, versions))
    print(json.dumps(pinned, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
