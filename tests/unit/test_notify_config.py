"""``[notifications]``: clear refusals that never repeat a secret, and files read at load."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from supervisor.notify import ALL_EVENTS, NotificationSettings, NotifyEvent

pytestmark = pytest.mark.unit

KEY = "k" * 16


class Policy(BaseModel):
    """How the lead embeds the table in the policy file's model."""

    notifications: NotificationSettings = NotificationSettings()


def refusal(data: dict[str, Any]) -> str:
    """Every message of the refusal of ``data`` (the ``msg`` only: what an operator sees)."""
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate({"notifications": data})
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors())


def test_the_defaults_send_nothing_and_admit_every_event() -> None:
    settings = NotificationSettings()
    assert settings.all_urls() == []
    assert settings.events == ALL_EVENTS
    assert settings.webhook_key() is None
    assert (settings.timeout, settings.retries) == (10.0, 5)


def test_a_toml_table_validates_into_settings() -> None:
    table = {
        "urls": ["json://127.0.0.1:8080/hook", "mailto://u:p@127.0.0.1:25?from=a@example.com&to=b@example.com"],
        "events": ["completed", "rolled_back"],
        "webhook_url": "https://hooks.example.com/stacksup",
        "webhook_events": ["frozen"],
        "webhook_secret": KEY,
        "timeout": 3,
        "retries": 2,
    }  # fmt: skip
    settings = Policy.model_validate({"notifications": table}).notifications
    assert settings.events == {NotifyEvent.COMPLETED, NotifyEvent.ROLLED_BACK}
    assert settings.webhook_events == frozenset({NotifyEvent.FROZEN})
    assert settings.all_urls() == table["urls"]
    assert settings.webhook_key() == KEY.encode()
    assert "u:p@" not in repr(settings)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"urls": ["not a url"]}, "notifications.urls: Value error, urls[0] is not an Apprise URL (expected scheme://…)"),
        ({"urls": ["json://h/x", "nosuchservice://TOKEN123@h"]}, "urls[1]: Apprise cannot use this nosuchservice:// URL"),
        ({"events": ["completed", "exploded"]}, "notifications.events.1: Input should be 'update_available', 'started'"),
        ({"webhook_url": "ftp://TOKEN123@host/x", "webhook_secret": KEY}, "notifications.webhook_url: Value error, must be an http:// or https:// URL with a host"),
        ({"webhook_url": "https://h/x"}, "webhook_url needs webhook_secret or webhook_secret_file (signing)"),
        ({"webhook_url": "https://h/x", "webhook_secret": "TOKEN123"}, "webhook_secret must be at least 16 characters"),
        ({"webhook_secret": KEY}, "webhook_secret/webhook_events are set but webhook_url is not"),
        ({"webhook_url": "https://h/x", "webhook_secret": KEY, "webhook_secret_file": "/x"}, "set webhook_secret or webhook_secret_file, not both"),
        ({"timeout": 0}, "notifications.timeout: Input should be greater than 0"),
        ({"retries": 0}, "notifications.retries: Input should be greater than or equal to 1"),
        ({"url": "json://h/x"}, "notifications.url: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_table_is_refused_clearly_without_repeating_a_secret(
    data: dict[str, Any], expected: str
) -> None:
    message = refusal(data)
    assert expected in message
    assert "TOKEN123" not in message


def test_the_settings_model_alone_hides_inputs_in_its_error_text() -> None:
    with pytest.raises(ValidationError) as caught:
        NotificationSettings.model_validate({"urls": ["nosuchservice://TOKEN123@h"]})
    assert "TOKEN123" not in str(caught.value)


def test_urls_file_is_read_skipping_comments_and_blank_lines(tmp_path: Path) -> None:
    urls_file = tmp_path / "apprise-urls"
    urls_file.write_text(
        "# ops team\njson://127.0.0.1:1/a\n\n   \n  json://127.0.0.1:1/b  \n# end\n"
    )
    settings = NotificationSettings(urls=["json://127.0.0.1:1/first"], urls_file=urls_file)
    assert settings.all_urls() == [
        "json://127.0.0.1:1/first",
        "json://127.0.0.1:1/a",
        "json://127.0.0.1:1/b",
    ]
    urls_file.write_text("json://127.0.0.1:1/c\n")
    assert settings.all_urls()[1:] == ["json://127.0.0.1:1/c"]  # read again, not cached


def test_an_unreadable_urls_file_is_refused_at_load_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert refusal({"urls_file": str(missing)}) == (
        f"notifications.urls_file: Value error, urls_file {missing} cannot be read: No such file or directory"
    )


def test_a_urls_file_that_vanishes_after_load_raises_a_value_error_naming_it(
    tmp_path: Path,
) -> None:
    urls_file = tmp_path / "urls"
    urls_file.write_text("json://127.0.0.1:1/a\n")
    settings = NotificationSettings(urls_file=urls_file)
    urls_file.unlink()
    with pytest.raises(ValueError, match=f"urls_file {urls_file} cannot be read"):
        settings.all_urls()


def test_a_bad_url_in_the_urls_file_is_refused_by_line_without_the_url(tmp_path: Path) -> None:
    urls_file = tmp_path / "urls"
    urls_file.write_text("# first\njson://127.0.0.1:1/a\nnosuchservice://TOKEN123@h\n")
    message = refusal({"urls_file": str(urls_file)})
    assert f"urls_file {urls_file}, URL 2: Apprise cannot use this nosuchservice:// URL" in message
    assert "TOKEN123" not in message


def test_the_webhook_key_comes_from_its_file_stripped(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    settings = NotificationSettings(
        webhook_url="https://h/x",
        webhook_secret_file=key_file,
    )
    assert settings.webhook_key() == KEY.encode()


def test_an_unreadable_or_short_webhook_key_file_is_refused_at_load(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert f"webhook_secret_file {missing} cannot be read: No such file or directory" in refusal(
        {"webhook_url": "https://h/x", "webhook_secret_file": str(missing)}
    )
    short = tmp_path / "short"
    short.write_text("TOKEN123\n")
    message = refusal({"webhook_url": "https://h/x", "webhook_secret_file": str(short)})
    assert f"webhook_secret_file {short} must be at least 16 characters" in message
    assert "TOKEN123" not in message


def test_every_field_is_described_for_the_policy_documentation() -> None:
    for name, field in NotificationSettings.model_fields.items():
        assert field.description, name


DOC = Path(__file__).parents[2] / "docs" / "notifications.md"


def doc_block(language: str, containing: str) -> str:
    blocks = DOC.read_text().split(f"```{language}\n")[1:]
    [block] = [b.split("```", 1)[0] for b in blocks if containing in b]
    return block


def test_the_documented_table_validates_and_lists_every_key(tmp_path: Path) -> None:
    urls_file, key_file = tmp_path / "apprise_urls", tmp_path / "key"
    urls_file.write_text("# from the docs\njson://127.0.0.1:1/x\n")
    key_file.write_text(KEY)
    text = doc_block("toml", "[notifications]")
    text = text.replace("/run/secrets/apprise_urls", str(urls_file))
    text = text.replace("/run/secrets/stacksup_webhook_key", str(key_file))
    table = tomllib.loads(text)["notifications"]
    assert set(table) == set(NotificationSettings.model_fields) - {"webhook_secret"}
    settings = NotificationSettings.model_validate(table)
    assert settings.all_urls() == ["json://receiver.internal:8080/stacksup", "json://127.0.0.1:1/x"]
    assert NotifyEvent.STARTED not in settings.events
    documented = {line.split("|")[1].strip(" `") for line in DOC.read_text().splitlines() if line.startswith("| `")}  # fmt: skip
    assert set(NotificationSettings.model_fields) <= documented
    assert {str(event) for event in NotifyEvent} <= documented
