"""An image's config (labels, creation time) read from the registry, before any pull.

The config blob is small and content-addressed: reading it costs two small requests and
tells what the image says about itself (``org.opencontainers.image.created``-style
``created``, and labels such as ``supervisor.compatible_migrations``) without pulling it.
For a multi-platform index the linux/amd64 entry is read (else the first).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from supervisor.exceptions import RegistryError
from supervisor.reference import ImageReference
from supervisor.registry.protocol import RegistryClient

_LOGGER = logging.getLogger(__name__)


async def image_config(
    registry: RegistryClient, image: ImageReference, reference: str
) -> dict[str, Any] | None:
    """The config document of ``image`` at ``reference`` (tag or digest), or None when the
    registry does not answer it (logged: callers fall back to a safe default)."""
    try:
        manifest = await registry.get_manifest(image, reference)
        document = manifest.json()
        if manifest.is_index:
            entries = document.get("manifests") or []
            chosen = next(
                (m for m in entries if (m.get("platform") or {}).get("architecture") == "amd64"),
                entries[0] if entries else None,
            )
            if chosen is None:
                return None
            document = (await registry.get_manifest(image, chosen["digest"])).json()
        config = json.loads(await registry.get_blob(image, document["config"]["digest"]))
    except (RegistryError, KeyError, TypeError, ValueError) as err:
        _LOGGER.warning("the config of %s:%s could not be read: %s", image, reference, err)
        return None
    return config if isinstance(config, dict) else None


def labels_of(config: dict[str, Any] | None) -> dict[str, str]:
    labels = ((config or {}).get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
