"""``[notifications]`` in the policy file: where notices go and which ones.

Apprise URLs and the webhook URL routinely carry tokens and passwords
(``tgram://BOT_TOKEN/CHAT``, ``mailto://user:password@host``), so they are
:class:`~pydantic.SecretStr` and no validation message ever repeats one: problems name the
entry (``urls[1]``) and at most its scheme. Files (``urls_file``,
``webhook_secret_file``) are read when the policy is loaded, so an unreadable file is
refused at load time (a reload keeps the old policy) rather than discovered at the first
failed run; :meth:`NotificationSettings.all_urls` reads them again whenever the notifier
is (re)configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .events import ALL_EVENTS, NotifyEvent

MIN_WEBHOOK_SECRET = 16  # characters: an HMAC key short enough to guess protects nothing


def read_url_file(path: Path) -> list[str]:
    """One Apprise URL per line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise ValueError(f"urls_file {path} cannot be read: {reason}") from err
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def scheme(url: str) -> str:
    """The scheme of a URL (``json``, ``mailto`` …): all of one that may be shown."""
    return url.split("://", 1)[0] if "://" in url else ""


def check_apprise_url(url: str, where: str) -> None:
    """Refuse a URL Apprise cannot use, naming ``where`` and the scheme, never the URL.

    Apprise is imported here, not at module level: the policy model must load without it.
    """
    kind = scheme(url)
    if not kind:
        raise ValueError(f"{where} is not an Apprise URL (expected scheme://…)")
    import apprise

    if apprise.Apprise.instantiate(url) is None:
        raise ValueError(
            f"{where}: Apprise cannot use this {kind}:// URL (unknown service or a "
            "missing/invalid part; see the Apprise wiki for the service's URL form)"
        )


class NotificationSettings(BaseModel):
    """Where notifications go (Apprise URLs, a signed webhook) and which events are sent."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    urls: list[SecretStr] = Field(
        default_factory=list,
        description="Apprise URLs (json://, mailto://, tgram://, ntfy://, …), one channel each",
    )
    urls_file: Path | None = Field(
        None,
        description="a file with one Apprise URL per line (# comments allowed), e.g. a "
        "Docker secret; read at load and at every reload",
    )
    events: frozenset[NotifyEvent] = Field(
        ALL_EVENTS, description="the events sent to the Apprise URLs (default: all)"
    )
    webhook_url: SecretStr | None = Field(
        None, description="an http:// or https:// URL that receives each notice as signed JSON"
    )
    webhook_events: frozenset[NotifyEvent] | None = Field(
        None, description="the events sent to the webhook (default: the same as events)"
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description=f"the HMAC-SHA256 key of the webhook signature (at least "
        f"{MIN_WEBHOOK_SECRET} characters), or use webhook_secret_file",
    )
    webhook_secret_file: Path | None = Field(
        None, description="a file holding the webhook key (surrounding whitespace is ignored)"
    )
    timeout: float = Field(10.0, gt=0, le=300, description="seconds one delivery attempt may take")
    retries: int = Field(
        5, ge=1, le=20, description="delivery attempts per channel, the first one included"
    )

    @field_validator("urls")
    @classmethod
    def _known_urls(cls, urls: list[SecretStr]) -> list[SecretStr]:
        for index, url in enumerate(urls):
            check_apprise_url(url.get_secret_value().strip(), f"urls[{index}]")
        return urls

    @field_validator("urls_file")
    @classmethod
    def _readable_urls_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            for number, url in enumerate(read_url_file(path), start=1):
                check_apprise_url(url, f"urls_file {path}, URL {number}")
        return path

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            parts = urlsplit(url.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @model_validator(mode="after")
    def _webhook_key(self) -> Self:
        if self.webhook_secret is not None and self.webhook_secret_file is not None:
            raise ValueError("set webhook_secret or webhook_secret_file, not both")
        has_key = self.webhook_secret is not None or self.webhook_secret_file is not None
        if self.webhook_url is None:
            if has_key or self.webhook_events is not None:
                raise ValueError("webhook_secret/webhook_events are set but webhook_url is not")
            return self
        if not has_key:
            raise ValueError("webhook_url needs webhook_secret or webhook_secret_file (signing)")
        self.webhook_key()  # readable and long enough, now rather than at the first send
        return self

    def all_urls(self) -> list[str]:
        """``urls`` and then the URLs in ``urls_file`` (read now); ValueError naming the
        file when it cannot be read."""
        urls = [url.get_secret_value().strip() for url in self.urls]
        if self.urls_file is not None:
            urls += read_url_file(self.urls_file)
        return urls

    def webhook_key(self) -> bytes | None:
        """The webhook's HMAC key (``webhook_secret_file`` read now), None without a webhook."""
        if self.webhook_secret is not None:
            key = self.webhook_secret.get_secret_value()
            where = "webhook_secret"
        elif self.webhook_secret_file is not None:
            where = f"webhook_secret_file {self.webhook_secret_file}"
            try:
                key = self.webhook_secret_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as err:
                reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
                raise ValueError(f"{where} cannot be read: {reason}") from err
        else:
            return None
        if len(key) < MIN_WEBHOOK_SECRET:
            raise ValueError(f"{where} must be at least {MIN_WEBHOOK_SECRET} characters")
        return key.encode()
