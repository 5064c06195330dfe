"""When an image was built: the ``created`` time in its config blob, read from the registry.

Used for ``maturity_from = "image_created"``: a release must have existed this long before
it is applied unattended, however recently the sidecar first saw it (a sidecar that was
down for a week does not make a week-old release brand new, and vice versa).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from supervisor.exceptions import RegistryError
from supervisor.reference import ImageReference
from supervisor.registry.protocol import RegistryClient

_LOGGER = logging.getLogger(__name__)


async def image_created(
    registry: RegistryClient, image: ImageReference, tag: str
) -> datetime | None:
    """The image's creation time, or None when the registry or the image does not say."""
    try:
        manifest = await registry.get_manifest(image, tag)
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
        created = config.get("created")
        return datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
    except (RegistryError, KeyError, TypeError, ValueError) as err:
        _LOGGER.warning("creation time of %s:%s unknown (%s); using first seen", image, tag, err)
        return None
