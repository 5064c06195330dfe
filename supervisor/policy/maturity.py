"""When an image was built: the ``created`` time in its config blob, read from the registry.

Used for ``maturity_from = "image_created"``: a release must have existed this long before
it is applied unattended, however recently the sidecar first saw it (a sidecar that was
down for a week does not make a week-old release brand new, and vice versa).
"""

from __future__ import annotations

from datetime import datetime

from supervisor.reference import ImageReference
from supervisor.registry.protocol import RegistryClient
from supervisor.update.image_config import image_config


async def image_created(
    registry: RegistryClient, image: ImageReference, tag: str
) -> datetime | None:
    """The image's creation time, or None when the registry or the image does not say."""
    created = (await image_config(registry, image, tag) or {}).get("created")
    try:
        return datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else None
    except ValueError:
        return None
