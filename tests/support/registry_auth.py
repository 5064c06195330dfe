"""A second, real registry that requires htpasswd (Basic) authentication.

The session's registry on 127.0.0.1:5000 is open; proving a *real* 401 and
real credentials needs a registry that refuses anonymous access. This starts
one from the same test image (Debian's distribution 2.8) with
``REGISTRY_AUTH=htpasswd`` on a random loopback port, and pushes a tiny image
to it with the Docker CLI using a throw-away ``--config`` directory, so the
``config.json`` the client reads is one ``docker login`` really wrote.
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from tests.support.dockercli import ENGINE_SOCKET, docker, owner_labels


@dataclass(frozen=True)
class AuthRegistry:
    container_id: str
    host: str  # 127.0.0.1:<port>, as written in image references
    users: dict[str, str]


def htpasswd_line(user: str, password: str) -> str:
    """An htpasswd entry as ``htpasswd -B`` writes it (bcrypt, ``$2y$``)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:$2y${hashed.removeprefix('$2b$')}"


@contextmanager
def htpasswd_registry(image: str, auth_dir: Path, users: dict[str, str]) -> Iterator[AuthRegistry]:
    """Run the registry image with htpasswd auth; always removed on exit."""
    auth_dir.mkdir(parents=True, exist_ok=True)
    (auth_dir / "htpasswd").write_text(
        "".join(f"{htpasswd_line(u, p)}\n" for u, p in users.items())
    )
    args = ["run", "-d", "-p", "127.0.0.1::5000", "-v", f"{auth_dir}:/auth:ro"]
    for key, value in {**owner_labels(), "org.stacksup.test.role": "auth-registry"}.items():
        args += ["--label", f"{key}={value}"]
    env = {
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": "test",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd",
    }
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    container_id = docker(*args, image).strip()
    try:
        port = docker("port", container_id, "5000/tcp").splitlines()[0].rsplit(":", 1)[1]
        host = f"127.0.0.1:{port}"
        _wait_for_challenge(host, container_id)
        yield AuthRegistry(container_id, host, users)
    finally:
        docker("rm", "-f", "-v", container_id, check=False)


def _wait_for_challenge(host: str, container_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2).close()
        except urllib.error.HTTPError as err:
            if err.code == 401:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            logs = docker("logs", "--tail", "20", container_id, check=False)
            raise AssertionError(f"auth registry on {host} never answered 401:\n{logs}")
        time.sleep(0.2)


def docker_with_config(config_dir: Path, *args: str, stdin: str | None = None) -> str:
    """The Docker CLI with its own ``--config`` (never the user's ~/.docker)."""
    return docker(*args, stdin=stdin, config_dir=config_dir)


def push_tiny_image(config_dir: Path, reference: str) -> str:
    """Import a one-file image, push it as ``reference``; return the pushed digest.

    The local tag is removed again; the registry keeps the image.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = secrets.token_hex(16).encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    subprocess.run(
        ["docker", "-H", ENGINE_SOCKET, "import", "-", reference],
        input=buffer.getvalue(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    try:
        pushed = docker_with_config(config_dir, "push", reference)
    finally:
        docker("rmi", reference, check=False)
    return next(word for word in pushed.split() if word.startswith("sha256:"))
