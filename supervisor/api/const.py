"""Names the API modules share: who may call what, and the limits of identifiers."""

from __future__ import annotations

import re
from enum import StrEnum


class Scope(StrEnum):
    """What a route needs: nothing, the read token (or admin), or the admin token."""

    PUBLIC = "public"
    READ = "read"
    ADMIN = "admin"


# Run ids come from the manager; the pattern only keeps junk (slashes, control characters,
# megabyte-long strings) away from it. Snapshot ids use :data:`snapshot_fields.SNAPSHOT_ID`.
UPDATE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
UPDATE_ID_PATTERN = "^" + UPDATE_ID.pattern + "$"

SSE_CONTENT_TYPE = "text/event-stream"
