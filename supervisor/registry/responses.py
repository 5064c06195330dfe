"""Reading registry replies: pagination links, JSON documents, media types.

Tag lists (``?n=`` pages) and referrers can both be paginated with
``Link: <…>; rel="next"``. The next link may be relative or absolute; it is
always followed on the endpoint already in use (its path and query only), so
credentials never go to another origin and a registry behind a mapping that
names its own internal host still works.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from yarl import URL

from supervisor.exceptions import RegistryError
from supervisor.registry.endpoints import Endpoint
from supervisor.registry.protocol import MEDIA_OCI_INDEX
from supervisor.registry.transport import Reply

_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
MAX_PAGES = 1000


async def paginate(
    fetch: Callable[[URL], Awaitable[Reply]], endpoint: Endpoint, first: URL
) -> AsyncIterator[Reply]:
    """Yield each page from ``first`` on; stop at the last, a loop, or ``MAX_PAGES``."""
    seen: set[str] = set()
    url: URL | None = first
    while url is not None:
        if str(url) in seen:
            return
        if len(seen) >= MAX_PAGES:
            raise RegistryError(
                f"registry {endpoint.describe()} returned more than {MAX_PAGES} pages"
            )
        seen.add(str(url))
        reply = await fetch(url)
        yield reply
        url = next_link(reply, endpoint)


def next_link(reply: Reply, endpoint: Endpoint) -> URL | None:
    """The ``rel="next"`` target rebased onto ``endpoint``, or None on the last page."""
    for value in reply.headers.getall("Link", []):
        match = _LINK_NEXT_RE.search(value)
        if match:
            target = reply.url.join(URL(match.group(1)))
            return endpoint.base_url.origin().join(URL(target.raw_path_qs, encoded=True))
    return None


def json_or_none(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None if it is anything else."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def json_object(reply: Reply, endpoint: Endpoint, what: str) -> dict[str, Any]:
    """The body as a JSON object, or a ``RegistryError`` naming ``what`` was malformed."""
    document = json_or_none(reply.body)
    if document is None:
        raise RegistryError(f"registry {endpoint.describe()} sent a {what} that is not JSON")
    return document


def media_type(reply: Reply, endpoint: Endpoint, what: str) -> str:
    """Content-Type, or the document's ``mediaType`` when the header is generic
    (some proxies and old registries answer ``application/json``)."""
    content_type = reply.headers.get("Content-Type", "").partition(";")[0].strip()
    if content_type.startswith("application/vnd."):
        return content_type
    document = json_object(reply, endpoint, what)
    return str(document.get("mediaType") or content_type)


def referrers_page(reply: Reply) -> tuple[list[dict[str, Any]], bool] | None:
    """One page of the Referrers API: the descriptors, and whether the registry already
    applied the ``artifactType`` filter. None when the reply is not an OCI image index,
    i.e. the registry has no Referrers API (OCI 1.1 clients then use the tag schema)."""
    document = json_or_none(reply.body)
    if document is None or document.get("mediaType") != MEDIA_OCI_INDEX:
        return None
    manifests = [m for m in document.get("manifests") or [] if isinstance(m, dict)]
    applied = reply.headers.get("OCI-Filters-Applied", "")
    return manifests, "artifactType" in [f.strip() for f in applied.split(",")]
