"""Unattended updates on the real engine: a patch release applied by the policy with nobody
asking, a bad patch rolled back with auto-apply freezing itself, a minor release under a
``patch`` policy reported but left alone, and the people told over real channels.

Each test runs ``supervisor serve`` as a real process against a real Compose stack through
the docker-proxy, with its own repository in the real registry, so "publishing a release"
is a ``docker push`` of a new tag while the sidecar runs. The only nudge is
``POST /admin/update/check`` (the periodic check would take hours); everything after it
(the decision, the run with trigger ``auto``, the mark, the freeze, the messages) is the
sidecar's own doing. The messages land on real receivers on loopback
(tests/support/notify_receivers.py): Apprise ``json://`` on an aiohttp server, Apprise
``mailto://`` on an aiosmtpd server, and the signed webhook. Data is measured outside the
product (row count, content checksum, applied migrations). Timings and every message
received are printed (``pytest -s``) for the note.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from supervisor.notify import verify_signature
from tests.support.compose import ComposeProject, compose_project
from tests.support.dockercli import docker
from tests.support.notify_receivers import HttpReceiver, Mail, SmtpReceiver
from tests.support.scenarios import ENDED, ROWS, items_state, running_sidecar, seed_rows
from tests.support.sidecar import app_version
from tests.support.sidecar_process import Sidecar
from tests.support.testenv import StackTestEnv

pytestmark = pytest.mark.docker

SMTP_USER, SMTP_PASSWORD = "ops", "SMTP-PASSWORD-unattended-7"
WEBHOOK_KEY = "webhook-key-unattended-0123456789"


# --- releases in a repository of the test's own ------------------------------------------


@contextmanager
def release_repository(testenv: StackTestEnv) -> Iterator[str]:
    """A fresh ``<registry>/unattendedXXXX/fakeapp``: only what the test pushes is in it,
    so the release check sees exactly the releases the test publishes."""
    repo = f"{testenv.registry}/unattended{secrets.token_hex(3)}/fakeapp"
    try:
        yield repo
    finally:
        for line in docker("images", repo, "--format", "{{.Repository}}:{{.Tag}}").split():
            # the engine may be busy deleting elsewhere; a leftover tag is harmless
            with contextlib.suppress(subprocess.TimeoutExpired):
                docker("rmi", line, check=False, timeout=30)


def publish(repo: str, version: str, dockerfile: str) -> str:
    """Build ``repo:version`` from ``dockerfile`` and push it; its digest. (Blocking: the
    tests call it in a thread, so the receivers on their loop keep answering.)"""
    docker("build", "-q", "-t", f"{repo}:{version}", "-", stdin=dockerfile)
    pushed = docker("push", f"{repo}:{version}")
    return next(w for w in pushed.split() if w.startswith("sha256:"))


def good_release(testenv: StackTestEnv, version: str) -> str:
    """The fake app's healthy code with migration 002 (1.1.0's), calling itself ``version``
    (its ``/version`` answers it, its label says it)."""
    return (
        f"FROM {testenv.fakeapp['1.1.0'].pinned}\n"
        f"ENV APP_VERSION={version}\n"
        f"LABEL org.opencontainers.image.version={version}\n"
    )


def never_healthy_release(testenv: StackTestEnv, version: str) -> str:
    """1.3.0's build (migrates fine, ``/health`` always 503, so Docker's healthcheck never
    passes) published under another version number."""
    return (
        f"FROM {testenv.fakeapp['1.3.0'].pinned}\n"
        f"LABEL org.opencontainers.image.version={version}\n"
    )


def baseline(testenv: StackTestEnv, version: str = "1.0.0") -> str:
    return (
        f"FROM {testenv.fakeapp['1.0.0'].pinned}\n"
        f"LABEL org.opencontainers.image.version={version}\n"
    )


@contextmanager
def stack_on(testenv: StackTestEnv, repo: str) -> Iterator[ComposeProject]:
    """The test stack running ``repo:1.0.0`` (pinned), with :data:`ROWS` rows seeded."""
    digest = publish(repo, "1.0.0", baseline(testenv))
    pinned = f"{repo}@{digest}"
    with compose_project(testenv, images={"APP_IMAGE": pinned, "BACKEND_IMAGE": pinned}) as p:
        seed_rows(p)
        yield p


# --- the policy -------------------------------------------------------------------------


def open_window(zone: str = "Europe/Berlin") -> str:
    """A daily window that is open now (opened an hour ago, closes in three), in a real
    zone's wall time; it crosses midnight when now is late in the evening there."""
    now = datetime.now(ZoneInfo(zone))
    start, end = now - timedelta(hours=1), now + timedelta(hours=3)
    return f"daily {start:%H:%M}-{end:%H:%M} {zone}"


def apprise_urls(http: HttpReceiver, smtp: SmtpReceiver) -> list[str]:
    return [
        http.url("/apprise", scheme="json"),
        f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"
        "?from=supervisor@example.com&to=ops@example.com&smtp=127.0.0.1",
    ]


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


# --- watching the sidecar from outside (blocking calls run off the receivers' loop) --------


async def call(sc: Sidecar, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(sc.call, method, path, body)


async def until(
    probe: Callable[[], Any], what: str, timeout: float = 240, every: float = 0.3
) -> Any:
    """The first truthy answer of the coroutine function ``probe``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def decisions(sc: Sidecar) -> list[dict[str, Any]]:
    policy: dict[str, Any] = await call(sc, "GET", "/admin/policy")
    found: list[dict[str, Any]] = policy["decisions"]
    return found  # newest first


async def decision_about(sc: Sidecar, version: str, since: datetime) -> dict[str, Any]:
    """The first decision on ``version`` made (or repeated) after ``since``."""

    async def probe() -> dict[str, Any] | None:
        for decision in await decisions(sc):
            last = datetime.fromisoformat(decision["last_at"].replace("Z", "+00:00"))
            if decision["version"] == version and last >= since:
                return decision
        return None

    found: dict[str, Any] = await until(probe, f"a decision about {version}", timeout=60)
    return found


async def run_end(sc: Sidecar, update_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        record: dict[str, Any] = await call(
            sc, "GET", f"/admin/update/status?update_id={update_id}"
        )
        return record if record["state"] in ENDED else None

    found: dict[str, Any] = await until(probe, f"run {update_id} to end")
    return found


async def history(sc: Sidecar) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = (await call(sc, "GET", "/admin/update/history"))["runs"]
    return runs


async def check_now(sc: Sidecar) -> tuple[float, datetime]:
    """``POST /admin/update/check``; (monotonic time, wall time) just before it."""
    at, wall = time.monotonic(), datetime.now(UTC) - timedelta(seconds=1)
    await call(sc, "POST", "/admin/update/check")
    return at, wall


def run_seconds(record: dict[str, Any]) -> float:
    started = datetime.fromisoformat(record["started_at"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(record["finished_at"].replace("Z", "+00:00"))
    return (finished - started).total_seconds()


# --- the messages -------------------------------------------------------------------------


def apprise_titles(http: HttpReceiver) -> list[str]:
    return [r.json()["title"] for r in http.delivered if r.path == "/apprise"]


async def apprise_message(
    http: HttpReceiver, title_end: str, timeout: float = 60
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        for received in http.delivered:
            if received.path == "/apprise" and received.json()["title"].endswith(title_end):
                payload: dict[str, Any] = received.json()
                return payload
        return None

    found: dict[str, Any] = await until(
        probe, f"a json:// message ending {title_end!r}", timeout, 0.05
    )
    return found


async def mail_titled(smtp: SmtpReceiver, title_end: str, timeout: float = 60) -> Mail:
    async def probe() -> Mail | None:
        return next((m for m in smtp.mails if str(m.message["Subject"]).endswith(title_end)), None)

    found: Mail = await until(probe, f"a mail with a subject ending {title_end!r}", timeout, 0.05)
    return found


def mail_text(mail: Mail) -> str:
    content = mail.message.get_body(preferencelist=("plain", "html"))
    assert content is not None
    return str(content.get_content())


def show_messages(label: str, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    print(f"\n--- {label}: messages received ---")
    for received in http.delivered:
        payload = received.json()
        if received.path == "/apprise":
            print(f"json:// [{payload['type']}] {payload['title']}\n    "
                  + payload["message"].replace("\n", "\n    "))  # fmt: skip
        else:
            print(f"webhook {received.headers.get('X-StackSup-Event')}: {payload['title']}")
    for mail in smtp.mails:
        print(f"mailto:// to {','.join(mail.rcpt_tos)}: {mail.message['Subject']}")


def assert_no_secret_leaked(sc: Sidecar, policy: dict[str, Any]) -> None:
    for secret in (SMTP_PASSWORD, WEBHOOK_KEY):
        assert secret not in sc.log.read_text()
        assert secret not in str(policy)


# --- 1. a patch release is applied with nobody asking; a minor one only reported ----------


@pytest.mark.timeout(900)
async def test_patch_release_is_applied_unattended_and_a_minor_one_only_reported(
    testenv: StackTestEnv, docker_proxy_url: str, tmp_path: Path
) -> None:
    smtp = SmtpReceiver(SMTP_USER, SMTP_PASSWORD)
    with release_repository(testenv) as repo, stack_on(testenv, repo) as project, smtp.running():
        before = items_state(project)
        async with HttpReceiver() as http:
            window = open_window()
            policy_file = tmp_path / "policy.toml"
            policy_file.write_text(
                "[updates]\n"
                'auto_apply = "patch"\n'
                f"maintenance_windows = {toml_list([window])}\n"
                "[notifications]\n"
                f"urls = {toml_list(apprise_urls(http, smtp))}\n"
            )
            with running_sidecar(
                project, docker_proxy_url, tmp_path, SUPERVISOR_POLICY_FILE=str(policy_file)
            ) as sc:
                await asyncio.to_thread(sc.start)
                version = await call(sc, "GET", "/admin/version")
                assert version["auto_apply"]["mode"] == "patch"
                assert version["auto_apply"]["frozen"] is None

                # 1.0.1 is published while the sidecar runs
                await asyncio.to_thread(publish, repo, "1.0.1", good_release(testenv, "1.0.1"))
                checked, wall = await check_now(sc)
                decision = await decision_about(sc, "1.0.1", wall)
                assert decision["action"] == "apply", decision
                assert decision["reason"].startswith("1.0.1 is a patch release, window open"), (
                    decision
                )
                assert decision["reason"].endswith(": applying"), decision
                update_id = decision["update_id"]
                assert update_id
                decided = time.monotonic() - checked
                record = await run_end(sc, update_id)
                ended = time.monotonic() - checked
                assert record["state"] == "completed", record.get("error")
                assert record["trigger"] == "auto"
                assert (record["from_version"], record["target_version"]) == ("1.0.0", "1.0.1")
                completed = await apprise_message(http, "update 1.0.0 → 1.0.1 completed")
                notified = time.monotonic() - checked
                mail = await mail_titled(smtp, "update 1.0.0 → 1.0.1 completed")
                mailed = time.monotonic() - checked

                # the stack runs the patch, with every row
                assert app_version(project) == "1.0.1"
                after = items_state(project)
                assert after[0] == before[0] == str(ROWS)
                assert after[1] == before[1]  # the same rows, byte for byte
                assert (before[2], after[2]) == ("001", "001,002")
                # the message says what happened, with the snapshot holding the data from before
                assert completed["type"] == "success", completed
                assert f"Update {update_id} (auto) completed in" in completed["message"]
                assert "the stack runs 1.0.1" in completed["message"]
                assert (
                    f"Snapshot from before the update: {record['snapshot_id']}."
                    in completed["message"]
                )
                assert mail.rcpt_tos == ["ops@example.com"]
                assert f"Update {update_id} (auto) completed in" in mail_text(mail)
                titles = apprise_titles(http)
                prefix = f"{project.name}: update 1.0.0 → 1.0.1"
                assert titles[:3] == [
                    f"{prefix} available",
                    f"{prefix} started",
                    f"{prefix} completed",
                ], titles

                # 1.1.0, a minor release: reported once, not applied under `patch`
                runs = len(await history(sc))
                await asyncio.to_thread(publish, repo, "1.1.0", good_release(testenv, "1.1.0"))
                minor_checked, wall = await check_now(sc)
                decision = await decision_about(sc, "1.1.0", wall)
                assert decision["action"] == "wait", decision
                assert (
                    decision["reason"]
                    == "1.1.0 is a minor release, policy patch: waiting for an operator"
                )
                available = await apprise_message(http, "update 1.0.1 → 1.1.0 available")
                minor_notified = time.monotonic() - minor_checked
                assert "Version 1.1.0 is available; the stack runs 1.0.1." in available["message"]
                await check_now(sc)  # asked again: the same decision, counted, announced once

                async def repeated() -> dict[str, Any] | None:
                    newest = (await decisions(sc))[0]
                    return newest if newest["count"] >= 2 else None

                again = await until(repeated, "the decision on 1.1.0 repeated", timeout=60)
                assert (again["action"], again["version"]) == ("wait", "1.1.0"), again
                assert again["reason"] == decision["reason"]
                await asyncio.sleep(2)  # a run, or a second announcement, would show by now
                assert len(await history(sc)) == runs
                assert (await call(sc, "GET", "/admin/version"))["running"] is None
                assert app_version(project) == "1.0.1"
                assert (
                    apprise_titles(http).count(f"{project.name}: update 1.0.1 → 1.1.0 available")
                    == 1
                )
                assert_no_secret_leaked(sc, await call(sc, "GET", "/admin/policy"))
                show_messages("patch applied, minor reported", http, smtp)
    print(
        f"\nwindow {window!r}\n"
        f"patch 1.0.1: check → apply decision {decided:.1f} s, → run completed {ended:.1f} s "
        f"(the run itself {run_seconds(record):.1f} s), "
        f"→ json:// completed {notified:.1f} s, → mail completed {mailed:.1f} s\n"
        f"minor 1.1.0: check → json:// available {minor_notified:.1f} s, no run"
    )


# --- 2. a bad patch is rolled back and auto-apply freezes itself ---------------------------


@pytest.mark.timeout(900)
async def test_bad_patch_is_rolled_back_and_auto_apply_freezes_itself(
    testenv: StackTestEnv, docker_proxy_url: str, tmp_path: Path
) -> None:
    smtp = SmtpReceiver(SMTP_USER, SMTP_PASSWORD)
    with release_repository(testenv) as repo, stack_on(testenv, repo) as project, smtp.running():
        before = items_state(project)
        async with HttpReceiver() as http:
            # policy from the environment this time, the channels from the file
            policy_file = tmp_path / "policy.toml"
            policy_file.write_text(
                "[notifications]\n"
                f"urls = {toml_list(apprise_urls(http, smtp))}\n"
                f'webhook_url = "{http.url("/hook")}"\n'
                f'webhook_secret = "{WEBHOOK_KEY}"\n'
            )
            with running_sidecar(
                project,
                docker_proxy_url,
                tmp_path,
                SUPERVISOR_POLICY_FILE=str(policy_file),
                SUPERVISOR_AUTO_APPLY="patch",
                SUPERVISOR_MAINTENANCE_WINDOW=open_window("UTC"),
                SUPERVISOR_REHEARSE="false",  # the run itself meets the failure and rolls back
            ) as sc:
                await asyncio.to_thread(sc.start)
                await asyncio.to_thread(
                    publish, repo, "1.0.1", never_healthy_release(testenv, "1.0.1")
                )
                checked, wall = await check_now(sc)
                decision = await decision_about(sc, "1.0.1", wall)
                assert decision["action"] == "apply", decision
                update_id = decision["update_id"]
                record = await run_end(sc, update_id)
                ended = time.monotonic() - checked
                assert record["state"] == "rolled_back", record.get("error")
                assert record["trigger"] == "auto"
                assert record["error"]["stage"] == "healthcheck", record["error"]
                rolled_back = await apprise_message(http, "update 1.0.0 → 1.0.1 rolled back")
                notified_rollback = time.monotonic() - checked
                frozen_notice = await apprise_message(http, "auto-apply frozen after 1.0.1")
                notified_frozen = time.monotonic() - checked
                await mail_titled(smtp, "update 1.0.0 → 1.0.1 rolled back")
                await mail_titled(smtp, "auto-apply frozen after 1.0.1")
                mailed = time.monotonic() - checked

                # the stack and its data are as before
                assert app_version(project) == "1.0.0"
                assert items_state(project) == before
                # the messages
                assert rolled_back["type"] == "warning", rolled_back
                assert f"Update {update_id} (auto) failed at healthcheck" in rolled_back["message"]
                assert "the stack runs 1.0.0 again" in rolled_back["message"]
                assert (
                    f"Data restored from snapshot {record['snapshot_id']}."
                    in rolled_back["message"]
                )
                assert (
                    "Automatic updates are frozen: the automatic update to 1.0.1 ended rolled_back."
                    in frozen_notice["message"]
                )
                assert f"Version 1.0.1 is marked bad (run {update_id})." in frozen_notice["message"]
                hooks = {
                    r.headers["X-StackSup-Event"]: r for r in http.delivered if r.path == "/hook"
                }
                assert {"update_available", "started", "rolled_back", "frozen"} <= set(hooks), hooks
                frozen_hook = hooks["frozen"]
                ts, sig = (
                    frozen_hook.headers["X-StackSup-Timestamp"],
                    frozen_hook.headers["X-StackSup-Signature"],
                )
                assert verify_signature(WEBHOOK_KEY, ts, frozen_hook.body, sig)
                assert frozen_hook.json()["fields"] == {
                    "to_version": "1.0.1", "update_id": update_id,
                    "reason": "the automatic update to 1.0.1 ended rolled_back",
                }  # fmt: skip

                # the freeze is visible, and holds
                auto = (await call(sc, "GET", "/admin/version"))["auto_apply"]
                assert auto["mode"] == "patch"
                assert auto["frozen"]["version"] == "1.0.1"
                assert auto["frozen"]["update_id"] == update_id
                assert auto["bad_versions"] == ["1.0.1"]
                runs = len(await history(sc))
                _, wall = await check_now(sc)
                decision = await decision_about(sc, "1.0.1", wall)
                assert decision["action"] == "wait", decision
                assert "auto-apply frozen since" in decision["reason"], decision
                assert "waiting for an operator to unfreeze" in decision["reason"], decision
                await asyncio.sleep(2)
                assert len(await history(sc)) == runs
                assert (await call(sc, "GET", "/admin/version"))["running"] is None
                assert app_version(project) == "1.0.0"
                policy = await call(sc, "GET", "/admin/policy")
                assert (
                    policy["frozen"]["reason"] == "the automatic update to 1.0.1 ended rolled_back"
                )
                assert [m["version"] for m in policy["marks"] if m["kind"] == "bad"] == ["1.0.1"]
                assert_no_secret_leaked(sc, policy)
                show_messages("bad patch rolled back, auto-apply frozen", http, smtp)
    print(
        f"\nbad patch 1.0.1: check → run rolled back {ended:.1f} s (the run itself "
        f"{run_seconds(record):.1f} s), → json:// rolled_back "
        f"{notified_rollback:.1f} s, → json:// frozen {notified_frozen:.1f} s, "
        f"→ both mails {mailed:.1f} s"
    )
