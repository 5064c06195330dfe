"""The notifier against real receivers on loopback: Apprise json:// and mailto://, the webhook.

No Apprise or aiohttp is mocked: an aiohttp server and an aiosmtpd server receive what the
channels send over the wire (tests/support/notify_receivers.py). Backoff is shortened
through the Notifier's constructor; everything else is as in production.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from supervisor.notify import (
    Notice,
    NotificationSettings,
    NotifyEvent,
    notice_for_run,
    notice_frozen,
    verify_signature,
)
from supervisor.notify.dispatch import Notifier
from supervisor.notify.signing import sign
from supervisor.update.models import RollbackJournal, RunError, RunRecord
from supervisor.update.stages import Stage
from tests.support.notify_receivers import HttpReceiver, SmtpReceiver

pytestmark = pytest.mark.unit

KEY = "webhook-key-0123456789"
STARTED = datetime(2024, 3, 30, 2, 0, 5, tzinfo=UTC)


def run_notice(event: NotifyEvent, update_id: str = "a1b2c3d4e5f6") -> Notice:
    state = Stage.PULL if event is NotifyEvent.STARTED else Stage(str(event))
    record = RunRecord(
        update_id=update_id,
        state=state,
        trigger="auto",
        from_version="1.4.1",
        target_version="1.4.2",
        started_at=STARTED,
        finished_at=None if event is NotifyEvent.STARTED else STARTED + timedelta(seconds=95),
        snapshot_id="20240330T020012Z_1a2b3c4d",
        error=None
        if event in (NotifyEvent.STARTED, NotifyEvent.COMPLETED)
        else RunError(error_key="health_check_failed", message="web never healthy", stage=Stage.HEALTHCHECK),
        rollback=RollbackJournal(restored=True) if event is NotifyEvent.ROLLED_BACK else None,
    )  # fmt: skip
    return notice_for_run(record, event, project="canopy")


def settings(**values: Any) -> NotificationSettings:
    values.setdefault("timeout", 2)
    return NotificationSettings.model_validate(values)


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as opened:
        yield opened


@pytest.fixture
async def notifier() -> AsyncIterator[Notifier]:
    """A started notifier with millisecond backoff; stopped (drained) after the test."""
    started = Notifier(backoff=0.01, backoff_max=0.05)
    await started.start()
    yield started
    await started.stop(drain_timeout=1)


async def test_apprise_json_delivers_title_body_and_type(
    receiver: HttpReceiver, notifier: Notifier
) -> None:
    notifier.reconfigure(settings(urls=[receiver.url("/apprise", scheme="json")]))
    notice = run_notice(NotifyEvent.ROLLED_BACK)
    notifier.publish(notice)
    [got] = await receiver.wait_for(1)
    assert got.path == "/apprise"
    payload = got.json()
    assert payload["title"] == "canopy: update 1.4.1 → 1.4.2 rolled back"
    assert payload["message"] == notice.body
    assert "Data restored from snapshot 20240330T020012Z_1a2b3c4d." in payload["message"]
    assert payload["type"] == "warning"
    await notifier.stop()  # drained: the counts are final
    assert notifier.stats()[("apprise:json", "rolled_back")].sent == 1


async def test_the_webhook_is_signed_and_carries_the_notice(
    receiver: HttpReceiver, notifier: Notifier
) -> None:
    notifier.reconfigure(settings(webhook_url=receiver.url("/hook"), webhook_secret=KEY))
    notice = notice_frozen("1.4.2 rolled back", "1.4.2", "a1b2c3d4e5f6", project="canopy")
    before = int(time.time())
    notifier.publish(notice)
    [got] = await receiver.wait_for(1)
    timestamp, signature = got.headers["X-StackSup-Timestamp"], got.headers["X-StackSup-Signature"]
    assert got.headers["X-StackSup-Event"] == "frozen"
    assert got.headers["Content-Type"] == "application/json"
    assert before <= int(timestamp) <= int(time.time())
    assert signature.startswith("sha256=")
    assert verify_signature(KEY, timestamp, got.body, signature)
    assert not verify_signature("another-key-0123456789", timestamp, got.body, signature)
    assert not verify_signature(KEY, str(int(timestamp) + 1), got.body, signature)
    assert not verify_signature(KEY, timestamp, got.body.replace(b"1.4.2", b"1.4.3"), signature)
    body = got.json()
    assert body == {
        "event": "frozen",
        "title": "canopy: auto-apply frozen after 1.4.2",
        "body": notice.body,
        "fields": {"to_version": "1.4.2", "update_id": "a1b2c3d4e5f6", "reason": "1.4.2 rolled back"},
        "at": notice.at.isoformat(),
        "project": "canopy",
    }  # fmt: skip


async def test_mailto_reaches_a_local_smtp_server_with_login(notifier: Notifier) -> None:
    smtp = SmtpReceiver("alice", "SMTP-PASSWORD-7")
    url = (
        f"mailto://alice:SMTP-PASSWORD-7@127.0.0.1:{smtp.port}"
        "?from=supervisor@example.com&to=ops@example.com&smtp=127.0.0.1"
    )
    with smtp.running():
        notifier.reconfigure(settings(urls=[url], timeout=10))
        notice = run_notice(NotifyEvent.COMPLETED)
        notifier.publish(notice)
        [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["ops@example.com"]
    assert "supervisor@example.com" in mail.mail_from
    assert mail.message["Subject"] == "canopy: update 1.4.1 → 1.4.2 completed"
    content = mail.message.get_body(preferencelist=("plain", "html"))
    assert content is not None
    assert "Update a1b2c3d4e5f6 (auto) completed in 1 min 35 s" in content.get_content()
    assert [login.split(":")[1] for login in smtp.logins] == ["ok"]  # the password was sent


async def test_each_channel_gets_only_the_events_it_admits(receiver: HttpReceiver) -> None:
    notifier = Notifier(
        settings(
            urls=[receiver.url("/apprise", scheme="json")],
            events=["completed"],
            webhook_url=receiver.url("/hook"),
            webhook_secret=KEY,
            webhook_events=["rolled_back", "frozen"],
        )
    )
    await notifier.start()
    for event in (NotifyEvent.STARTED, NotifyEvent.COMPLETED, NotifyEvent.ROLLED_BACK):
        notifier.publish(run_notice(event))
    notifier.publish(notice_frozen("r", "1.4.2", None, project="canopy"))
    notifier.publish(run_notice(NotifyEvent.FAILED))  # admitted by no channel
    await notifier.stop(drain_timeout=10)
    apprise_titles = [r.json()["title"] for r in receiver.delivered if r.path == "/apprise"]
    webhook_events = [r.json()["event"] for r in receiver.delivered if r.path == "/hook"]
    assert apprise_titles == ["canopy: update 1.4.1 → 1.4.2 completed"]
    assert webhook_events == ["rolled_back", "frozen"]
    assert len(receiver.attempts) == 3
    stats = notifier.stats()
    assert stats[("apprise:json", "completed")].sent == 1
    assert ("apprise:json", "started") not in stats
    assert stats[("webhook", "frozen")].sent == 1
    assert ("webhook", "failed") not in stats


@pytest.mark.parametrize("channel", ["apprise", "webhook"])
async def test_a_receiver_failing_twice_gets_the_notice_on_the_third_attempt(
    channel: str, notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with HttpReceiver(fail_first=2, fail_status=503) as receiver:
        if channel == "apprise":
            notifier.reconfigure(settings(urls=[receiver.url("/a", scheme="json")], retries=3))
            kind = "apprise:json"
        else:
            notifier.reconfigure(settings(webhook_url=receiver.url("/a"), webhook_secret=KEY, retries=3))  # fmt: skip
            kind = "webhook"
        notifier.publish(run_notice(NotifyEvent.COMPLETED))
        await notifier.stop(drain_timeout=10)
    assert [r.status for r in receiver.attempts] == [503, 503, 200]
    assert len({r.body for r in receiver.attempts}) == 1  # the same notice each time
    counts = notifier.stats()[(kind, "completed")]
    assert (counts.sent, counts.failed, counts.retried) == (1, 0, 2)
    assert caplog.text.count("attempt 1 failed") == 1
    assert caplog.text.count("attempt 2 failed") == 1


async def test_failures_are_counted_and_logged_without_urls_or_tokens(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, Apprise's included
    async with HttpReceiver(fail_first=100) as receiver:
        port = receiver.url("/").split(":")[2].rstrip("/")
        apprise_url = f"json://bob:APPRISE-PASSWORD@127.0.0.1:{port}/hook/APPRISE-PATH-TOKEN"
        webhook_url = f"http://127.0.0.1:{port}/hook/WEBHOOK-PATH-TOKEN?key=WEBHOOK-QUERY-TOKEN"
        notifier.reconfigure(
            settings(urls=[apprise_url], webhook_url=webhook_url, webhook_secret=KEY, retries=3)
        )
        notifier.publish(run_notice(NotifyEvent.FAILED))
        await receiver.wait_for(6, ok=False)
        await notifier.stop(drain_timeout=5)
    for kind in ("apprise:json", "webhook"):
        counts = notifier.stats()[(kind, "failed")]
        assert (counts.sent, counts.failed, counts.retried) == (0, 1, 2), kind
    assert "notification failed via apprise json://… failed after 3 attempt(s)" in caplog.text
    assert (
        "notification failed via webhook http://… failed after 3 attempt(s): HTTP 500"
        in caplog.text
    )
    # Everything but the test receiver's own access log (the receiver is not the supervisor).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "Failed to send JSON POST notification" in ours  # Apprise's own log is captured
    for secret in ("APPRISE-PASSWORD", "APPRISE-PATH-TOKEN", "WEBHOOK-PATH-TOKEN", "WEBHOOK-QUERY-TOKEN", KEY):  # fmt: skip
        assert secret not in ours, secret
    assert notifier.channels == ["apprise json://…", "webhook http://…"]


async def test_a_webhook_answering_4xx_is_not_retried(notifier: Notifier) -> None:
    async with HttpReceiver(fail_first=100, fail_status=404) as receiver:
        notifier.reconfigure(settings(webhook_url=receiver.url("/gone"), webhook_secret=KEY))
        notifier.publish(run_notice(NotifyEvent.COMPLETED))
        await receiver.wait_for(1, ok=False)
        await notifier.stop(drain_timeout=5)
    assert len(receiver.attempts) == 1
    counts = notifier.stats()[("webhook", "completed")]
    assert (counts.failed, counts.retried) == (1, 0)


async def test_an_unreachable_receiver_fails_after_its_attempts(notifier: Notifier) -> None:
    async with HttpReceiver() as receiver:
        url = receiver.url("/x")
    # the server is closed now: connections are refused
    notifier.reconfigure(settings(webhook_url=url, webhook_secret=KEY, retries=2))
    notifier.publish(run_notice(NotifyEvent.COMPLETED))
    await notifier.stop(drain_timeout=5)
    counts = notifier.stats()[("webhook", "completed")]
    assert (counts.sent, counts.failed, counts.retried) == (0, 1, 1)


async def test_publish_returns_at_once_while_the_receivers_hang(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with HttpReceiver(hang=True) as receiver:
        notifier = Notifier(
            settings(
                urls=[receiver.url("/apprise", scheme="json")],
                webhook_url=receiver.url("/hook"),
                webhook_secret=KEY,
                timeout=0.5,
                retries=1,
            )
        )
        await notifier.start()
        events = [NotifyEvent.STARTED, NotifyEvent.COMPLETED, NotifyEvent.ROLLED_BACK] * 3
        notices = [run_notice(event) for event in events]
        began = time.perf_counter()
        for notice in notices:
            notifier.publish(notice)
        publishing = time.perf_counter() - began
        await receiver.wait_arrived(
            2
        )  # both channels are stuck on the first notice, the caller is not
        began = time.perf_counter()
        await notifier.stop(drain_timeout=1.2)
        stopping = time.perf_counter() - began
    assert publishing < 0.05, publishing
    assert 1.2 <= stopping < 2.5, stopping
    for kind in ("apprise:json", "webhook"):
        per_kind = [c for (k, _), c in notifier.stats().items() if k == kind]
        assert sum(c.sent for c in per_kind) == 0
        assert sum(c.failed for c in per_kind) >= 1  # timed out within the drain window
        assert sum(c.failed + c.dropped for c in per_kind) == len(events)  # nothing unaccounted
    assert caplog.text.count("failed after 1 attempt(s): no answer within 0.5 s") >= 4


async def test_a_full_queue_drops_and_counts_without_blocking(receiver: HttpReceiver) -> None:
    notifier = Notifier(
        settings(webhook_url=receiver.url("/hook"), webhook_secret=KEY), queue_size=2
    )
    for update_id in ("run1", "run2", "run3", "run4", "run5"):
        notifier.publish(run_notice(NotifyEvent.COMPLETED, update_id=update_id))
    assert notifier.stats()[("webhook", "completed")].dropped == 3
    registry = CollectorRegistry()
    registry.register(notifier.metrics())
    assert b"supervisor_notifications_queued 2.0" in generate_latest(registry)
    await notifier.start()  # the two that fitted are still sent
    got = await receiver.wait_for(2)
    assert [r.json()["fields"]["update_id"] for r in got] == ["run1", "run2"]
    await notifier.stop()
    counts = notifier.stats()[("webhook", "completed")]
    assert (counts.sent, counts.dropped) == (2, 3)


async def test_stop_drains_the_queue_in_order_and_refuses_later_notices(
    receiver: HttpReceiver,
) -> None:
    notifier = Notifier(settings(webhook_url=receiver.url("/hook"), webhook_secret=KEY))
    await notifier.start()
    order = [NotifyEvent.STARTED, NotifyEvent.ROLLED_BACK, NotifyEvent.FROZEN]
    for event in order[:2]:
        notifier.publish(run_notice(event))
    notifier.publish(notice_frozen("r", "1.4.2", None, project="canopy"))
    await notifier.stop(drain_timeout=10)
    assert [r.json()["event"] for r in receiver.delivered] == [str(e) for e in order]
    notifier.publish(run_notice(NotifyEvent.COMPLETED))
    assert notifier.stats()[("webhook", "completed")].dropped == 1
    assert len(receiver.attempts) == 3


async def test_reconfigure_sends_later_notices_to_the_new_channels(notifier: Notifier) -> None:
    async with HttpReceiver() as first, HttpReceiver() as second:
        notifier.reconfigure(settings(urls=[first.url("/one", scheme="json")]))
        notifier.publish(run_notice(NotifyEvent.STARTED))
        await first.wait_for(1)
        notifier.reconfigure(settings(urls=[second.url("/two", scheme="json")]))
        notifier.publish(run_notice(NotifyEvent.COMPLETED))
        [got] = await second.wait_for(1)
        await notifier.stop(drain_timeout=5)
    assert got.json()["title"].endswith("completed")
    assert len(first.attempts) == 1


async def test_reconfigure_with_a_vanished_urls_file_keeps_the_old_channels(
    tmp_path: Path, receiver: HttpReceiver, notifier: Notifier
) -> None:
    urls_file = tmp_path / "apprise-urls"
    urls_file.write_text(f"# team\n{receiver.url('/one', scheme='json')}\n{receiver.url('/two', scheme='json')}\n")  # fmt: skip
    loaded = settings(urls_file=urls_file)
    notifier.reconfigure(loaded)
    assert notifier.channels == ["apprise json://…", "apprise json://…"]
    urls_file.unlink()
    with pytest.raises(ValueError, match=f"urls_file {urls_file} cannot be read"):
        notifier.reconfigure(loaded)
    notifier.publish(run_notice(NotifyEvent.COMPLETED))
    got = await receiver.wait_for(2)
    assert sorted(r.path for r in got) == ["/one", "/two"]


async def test_metrics_show_zero_series_then_the_counts(receiver: HttpReceiver) -> None:
    notifier = Notifier(settings(webhook_url=receiver.url("/hook"), webhook_secret=KEY, events=["completed", "frozen"]))  # fmt: skip
    registry = CollectorRegistry()
    registry.register(notifier.metrics())
    text = generate_latest(registry).decode()
    assert (
        'supervisor_notifications_total{channel="webhook",event="frozen",outcome="failed"} 0.0'
        in text
    )
    assert 'event="started"' not in text
    await notifier.start()
    notifier.publish(run_notice(NotifyEvent.COMPLETED))
    await receiver.wait_for(1)
    await notifier.stop()
    text = generate_latest(registry).decode()
    assert (
        'supervisor_notifications_total{channel="webhook",event="completed",outcome="sent"} 1.0'
        in text
    )
    assert 'supervisor_notification_retries_total{channel="webhook",event="completed"} 0.0' in text
    assert "supervisor_notifications_queued 0.0" in text


async def test_publish_with_no_channel_is_a_no_op() -> None:
    notifier = Notifier()
    notifier.publish(run_notice(NotifyEvent.COMPLETED))
    assert notifier.stats() == {}
    await notifier.start()
    await notifier.stop()
    await asyncio.sleep(0)


async def test_the_documented_verification_snippet_accepts_a_real_delivery(
    receiver: HttpReceiver, notifier: Notifier
) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text()
    [snippet] = [b.split("```", 1)[0] for b in doc.split("```python\n")[1:] if "def verify_stacksup" in b]  # fmt: skip
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/notifications.md", "exec"), namespace)  # noqa: S102 (our own docs)
    verify = namespace["verify_stacksup"]
    notifier.reconfigure(settings(webhook_url=receiver.url("/hook"), webhook_secret=KEY))
    notifier.publish(run_notice(NotifyEvent.ROLLED_BACK))
    [got] = await receiver.wait_for(1)
    assert verify(KEY.encode(), got.headers, got.body)
    assert not verify(b"another-key-0123456789", got.headers, got.body)
    assert not verify(KEY.encode(), got.headers, got.body + b" ")
    old = str(int(got.headers["X-StackSup-Timestamp"]) - 301)  # validly signed, but stale
    stale = {"X-StackSup-Timestamp": old, "X-StackSup-Signature": sign(KEY.encode(), old, got.body)}
    assert verify_signature(KEY, old, got.body, stale["X-StackSup-Signature"])
    assert not verify(KEY.encode(), stale, got.body)
