"""Which URL is dialled for a reference host: https by default, http for loopback and
insecure hosts, Docker Hub's real endpoint, and the operator's endpoint mapping."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from supervisor.exceptions import ConfigError, RegistryUnreachable
from supervisor.registry import DistributionClient, EndpointMap, RetryPolicy

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("registry.example.com", "https://registry.example.com"),
        ("registry.example.com:5000", "https://registry.example.com:5000"),
        ("10.0.0.7:5000", "https://10.0.0.7:5000"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("127.1.2.3:5000", "http://127.1.2.3:5000"),
        ("localhost:5000", "http://localhost:5000"),
        ("localhost", "http://localhost"),
        ("[::1]:5000", "http://[::1]:5000"),
        ("docker.io", "https://registry-1.docker.io"),
        ("insecure.example:5000", "http://insecure.example:5000"),
        ("plain.example:8080", "http://plain.example:8080"),  # listed without a port
        ("plain.example.org", "https://plain.example.org"),
        ("mirrored.example", "http://registry:5000"),
        ("127.0.0.1:6000", "https://mirror.example"),  # a mapping wins over loopback
    ],
)
def test_endpoint_for_reference_host(host: str, expected: str) -> None:
    endpoints = EndpointMap(
        mirrors={
            "mirrored.example": "http://registry:5000",
            "127.0.0.1:6000": "https://mirror.example/",
        },
        insecure=["insecure.example:5000", "plain.example"],
    )
    endpoint = endpoints.endpoint(host)
    assert str(endpoint.base_url).rstrip("/") == expected
    assert endpoint.host == host
    assert endpoint.url("/v2/a/b/tags/list").path == "/v2/a/b/tags/list"


@pytest.mark.parametrize("url", ["registry:5000", "ftp://registry", "http://"])
def test_endpoint_mapping_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ConfigError, match=r"registry endpoint for 'r\.example' must be an http"):
        EndpointMap(mirrors={"r.example": url})


class _NoNetwork(AbstractResolver):
    """Refuses every lookup: the test proves what would be dialled without dialling."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(f"no network in unit tests ({host})")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("reference", "url"),
    [
        ("registry.example.com/team/app:1.0", "https://registry.example.com/v2/team/app/manifests/1.0"),
        ("alpine:3", "https://registry-1.docker.io/v2/library/alpine/manifests/3"),
        ("ghcr.io/org/tool@sha256:" + "a" * 64,
         "https://ghcr.io/v2/org/tool/manifests/sha256:" + "a" * 64),
    ],
)  # fmt: skip
async def test_non_loopback_hosts_are_dialled_over_https(reference: str, url: str) -> None:
    dialled: list[str] = []

    async def on_request_start(_: Any, __: SimpleNamespace, params: Any) -> None:
        dialled.append(f"{params.method} {params.url}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    connector = aiohttp.TCPConnector(resolver=_NoNetwork())
    async with (
        aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session,
        DistributionClient(session=session, retry=RetryPolicy(attempts=1)) as client,
    ):
        with pytest.raises(RegistryUnreachable) as unreachable:
            await client.resolve_digest(reference)
    assert dialled == [f"HEAD {url}"]
    host = url.split("/")[2]
    assert f"cannot reach registry {host.replace('registry-1.docker.io', 'docker.io')}" in (
        unreachable.value.message
    )
    assert "no network in unit tests" in unreachable.value.message
