"""How long does verifying one signed digest take against the local registry?

Run from the repository root with the test environment up::

    .venv/bin/python bench/signature_bench.py [--iterations 200]

fakeapp 1.0.0-1.3.0 are copied (blobs mounted) into a throw-away repository and
each is signed in one format by the tests' signer (tests/support: a private
Sigstore-like trust root, no network); 1.4.0 stays unsigned. Each verification
is the product's full path: ``SignaturePolicyVerifier.verify`` through
``DistributionClient`` (fetching the .sig tag and the referrers tag, the blobs,
then the cryptography). One client is reused, as in the sidecar; the first call
per format (``cold``) includes connection set-up. What was pushed is deleted.
A second table runs the same verifications against the tests' in-memory registry,
to show how much of the time is parsing and cryptography rather than HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervisor.registry import DistributionClient  # noqa: E402
from supervisor.signatures.models import Policy  # noqa: E402
from supervisor.signatures.verifier import SignaturePolicyVerifier  # noqa: E402
from tests.support.cosign_signer import (  # noqa: E402
    bundle_upload,
    classic_signature,
    classic_upload,
    dsse_bundle,
)
from tests.support.signer_registry import RegistryWriter  # noqa: E402
from tests.support.signer_stage import NAME, Stage  # noqa: E402
from tests.support.signer_world import SigningWorld  # noqa: E402
from tests.support.testenv import StackTestEnv, load_testenv  # noqa: E402


async def sign_copies(
    env: StackTestEnv, writer: RegistryWriter, world: SigningWorld, repository: str
) -> dict[str, str]:
    """Copy fakeapp 1.0.0-1.4.0 and sign each copy in one format; format → image."""
    source = env.fakeapp["1.0.0"].repository.split("/", 1)[1]
    name = f"{env.registry}/{repository}"
    versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    images = {
        v: await writer.copy_image(source, repository, env.fakeapp[v].digest) for v in versions
    }
    one, two, three, four = (images[v] for v in versions[:4])
    uploads = [
        classic_upload(one["digest"], [classic_signature(world.key, name, one["digest"])]),
        bundle_upload(two, [dsse_bundle(world.key, two["digest"])]),
        bundle_upload(three, [dsse_bundle(world.keyless(), three["digest"])]),
        classic_upload(four["digest"], [classic_signature(world.keyless(), name, four["digest"])]),
    ]
    for upload in uploads:
        await writer.push(repository, upload)
    formats = ["key-based classic", "key-based bundle", "keyless bundle", "keyless classic"]
    found = {
        fmt: f"{name}@{images[v]['digest']}" for fmt, v in zip(formats, versions, strict=False)
    }
    return {**found, "unsigned (refused)": f"{name}@{images['1.4.0']['digest']}"}


async def measure(
    verifier: SignaturePolicyVerifier, image: str, iterations: int, signed: bool
) -> list[float]:
    """Milliseconds per verification; the first one is the cold call."""
    times = []
    for _ in range(iterations + 1):
        start = time.perf_counter()
        verdict = await verifier.verify("app", image)
        times.append((time.perf_counter() - start) * 1000)
        if verdict.verified is not signed:
            raise SystemExit(f"{image}: unexpected verdict: {verdict.reason}")
    return times


async def run(iterations: int) -> None:
    env = load_testenv()
    if env is None:
        raise SystemExit("the test environment is not built: scripts/testenv up && images")
    repository = f"stacksup/sigbench-{secrets.token_hex(4)}"
    logging.disable(logging.WARNING)  # refused verdicts log a warning each
    with tempfile.TemporaryDirectory() as directory:
        world = SigningWorld.create(Path(directory))
        async with aiohttp.ClientSession() as session, DistributionClient() as client:
            writer = RegistryWriter(session, env.registry)
            try:
                images = await sign_copies(env, writer, world, repository)
                verifier = SignaturePolicyVerifier(
                    client, world.signers(), lambda _: Policy.ENFORCE
                )
                print(f"{iterations} verifications each against {env.registry}, in milliseconds")
                print(f"{'format':20} {'cold':>7} {'median':>7} {'p95':>7} {'max':>7}")
                for fmt, image in images.items():
                    signed = not fmt.startswith("unsigned")
                    times = await measure(verifier, image, iterations, signed)
                    warm = sorted(times[1:])
                    p95 = warm[int(0.95 * (len(warm) - 1))]
                    median = statistics.median(warm)
                    print(f"{fmt:20} {times[0]:7.2f} {median:7.2f} {p95:7.2f} {warm[-1]:7.2f}")
            finally:
                await writer.delete_pushed()
        await offline(world, iterations)


async def offline(world: SigningWorld, iterations: int) -> None:
    """The same verifications against the tests' in-memory registry: parsing and crypto only."""
    print("\nwithout the network (in-memory registry): parsing and cryptography only")
    print(f"{'format':20} {'median':>7} {'p95':>7}")
    signers: dict[str, Callable[[Stage], None]] = {
        "key-based classic": lambda st: st.classic(classic_signature(world.key, NAME, st.digest)),
        "key-based bundle": lambda st: st.bundles(dsse_bundle(world.key, st.digest)),
        "keyless bundle": lambda st: st.bundles(dsse_bundle(world.keyless(), st.digest)),
        "keyless classic": lambda st: st.classic(
            classic_signature(world.keyless(), NAME, st.digest)
        ),
    }
    for fmt, sign in signers.items():
        stage = Stage()
        sign(stage)
        verifier = SignaturePolicyVerifier(
            stage.registry, world.signers(), lambda _: Policy.ENFORCE
        )
        warm = sorted((await measure(verifier, stage.pinned, iterations, True))[1:])
        p95 = warm[int(0.95 * (len(warm) - 1))]
        print(f"{fmt:20} {statistics.median(warm):7.2f} {p95:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    asyncio.run(run(parser.parse_args().iterations))


if __name__ == "__main__":
    main()
