"""What ``scripts/testenv images`` built, as the tests see it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE = ROOT / ".testenv"


@dataclass(frozen=True)
class ImageRef:
    version: str
    ref: str  # registry/repo:tag as pushed
    digest: str  # the digest `docker push` printed

    @property
    def repository(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def pinned(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class StackTestEnv:
    state_dir: Path
    registry: str  # host:port as written in image references
    base_image: str
    postgres_image: str
    influxdb_image: str
    docker_proxy_image: str
    registry_image: str
    fakeapp: dict[str, ImageRef]
    edge_proxy_image: str = "stacksup/edge-proxy:test"

    @property
    def registry_url(self) -> str:
        return f"http://{self.registry}"


def load_testenv() -> StackTestEnv | None:
    """The built environment, or None when ``scripts/testenv images`` has not run."""
    state = Path(os.environ.get("STACKSUP_TESTENV", DEFAULT_STATE))
    path = state / "images.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return StackTestEnv(
        state_dir=state,
        registry=data["registry"],
        base_image=data["base"],
        postgres_image=data["postgres"],
        influxdb_image=data["influxdb"],
        docker_proxy_image=data["docker_proxy"],
        registry_image=data["registry_image"],
        fakeapp={v: ImageRef(v, d["ref"], d["digest"]) for v, d in data["fakeapp"].items()},
        edge_proxy_image=data.get("edge_proxy", StackTestEnv.edge_proxy_image),
    )
