"""The configuration in force: environment, overlaid by the policy file, overlaid by labels.

Precedence, most specific first: a **label** on a service's container (``supervisor.role``,
``supervisor.signature_policy``, ``supervisor.start_order``) over the **policy file** over the
**environment** (``SUPERVISOR_*``) over the built-in default. The merged values are validated
by the same :class:`~supervisor.config.Settings` model as the environment alone, so a file
cannot put the sidecar into a state the environment could not.

:meth:`EffectivePolicy.reload` (``SIGHUP``, ``POST /admin/policy/reload``) re-reads the file and
the labels; if anything is wrong it keeps the policy in force and says why, every problem at
once. A run that is already going keeps the settings it started with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from supervisor._config_env import problems_from
from supervisor.config import SECRET_FIELDS, Settings
from supervisor.const import ROLE_LABEL, Role
from supervisor.engine.models import StackService
from supervisor.exceptions import ConfigError, PolicyInvalid
from supervisor.notify.config import NotificationSettings, scheme
from supervisor.policy.decide import Rules
from supervisor.policy.document import FIELDS, PolicyDocument, read_document, settings_values
from supervisor.signatures.models import Policy
from supervisor.update.models import iso_z, utcnow
from supervisor.update.update_order import START_FIRST, STOP_FIRST

_LOGGER = logging.getLogger(__name__)
SIGNATURE_LABEL = "supervisor.signature_policy"
ORDER_LABEL = "supervisor.start_order"
UPDATE_ORDER_LABEL = "supervisor.update_order"
UPDATE_ORDERS = (STOP_FIRST, START_FIRST)
# The settings an operator decides (the policy file may set them); shown with their source.
POLICY_FIELDS = (*FIELDS.values(), "services", "start_order", "update_order")

Listener = Callable[[Settings, NotificationSettings | None], None]


class ServiceLabels:
    """The per-service settings read from the stack's container labels."""

    def __init__(self, services: Mapping[str, StackService] | None = None) -> None:
        self.roles: dict[str, Role] = {}
        self.signature: dict[str, Policy] = {}
        self.order: dict[str, int] = {}
        self.update_order: dict[str, str] = {}
        self.problems: list[str] = []
        for name, service in (services or {}).items():
            labels: dict[str, str] = {}
            for container in service.containers:
                labels.update(container.labels)
            self._read(name, labels)

    def _read(self, name: str, labels: Mapping[str, str]) -> None:
        readers: list[tuple[str, Callable[[str], Any], dict[str, Any]]] = [
            (ROLE_LABEL, Role, self.roles),
            (SIGNATURE_LABEL, Policy, self.signature),
            (ORDER_LABEL, int, self.order),
            (UPDATE_ORDER_LABEL, _update_order, self.update_order),
        ]
        for label, parse, into in readers:
            if label not in labels:
                continue
            try:
                into[name] = parse(labels[label])
            except ValueError:
                self.problems.append(f"service {name}: label {label}={labels[label]!r} is invalid")


class EffectivePolicy:
    def __init__(self, env: Settings) -> None:
        self.env = env
        self.document: PolicyDocument | None = None
        self.labels = ServiceLabels()
        self.settings = env
        self.sources: dict[str, str] = {}
        self.loaded_at: datetime | None = None
        self.listeners: list[Listener] = []
        self._merge_or_raise()

    # --- loading -------------------------------------------------------------------

    def load(self) -> None:
        """At start-up: an invalid file refuses the start (ConfigError), like a bad variable."""
        try:
            self._apply(self._read(), self.labels)
        except PolicyInvalid as err:
            raise ConfigError(err.message, problems=err.details.get("problems", [])) from None

    def reload(self, labels: ServiceLabels | None = None) -> dict[str, Any]:
        """Re-read the file (and take new labels); keep the old policy if anything is wrong."""
        document = self._read()
        self._apply(document, labels or self.labels)
        _LOGGER.info("policy reloaded from %s", self.env.policy_file or "the environment")
        return self.describe()

    def observe(self, services: Mapping[str, StackService]) -> None:
        """New labels from the stack; a bad label keeps the previous effective policy."""
        labels = ServiceLabels(services)
        if _same(labels, self.labels):
            return
        try:
            self._apply(self.document, labels)
        except PolicyInvalid as err:
            _LOGGER.error("service labels refused, the policy in force stays: %s", err.message)

    def _read(self) -> PolicyDocument | None:
        path = self.env.policy_file
        if path is None:
            return None
        try:
            return read_document(path)
        except ValueError as err:
            lines = str(err).splitlines()
            raise PolicyInvalid(
                "the policy file has problems; the policy in force is kept: " + "; ".join(lines),
                problems=lines,
            ) from None

    def _apply(self, document: PolicyDocument | None, labels: ServiceLabels) -> None:
        if labels.problems:
            raise PolicyInvalid("; ".join(labels.problems), problems=labels.problems)
        settings, sources = self._merge(document, labels)
        self.document, self.labels, self.settings, self.sources = (
            document, labels, settings, sources,
        )  # fmt: skip
        self.loaded_at = utcnow()
        for listener in self.listeners:
            listener(settings, self.notifications)

    def _merge_or_raise(self) -> None:
        self.settings, self.sources = self._merge(None, self.labels)

    def _merge(
        self, document: PolicyDocument | None, labels: ServiceLabels
    ) -> tuple[Settings, dict[str, str]]:
        env = self.env
        values: dict[str, Any] = {name: getattr(env, name) for name in env.model_fields_set}
        sources = {name: "env" for name in env.model_fields_set if name in POLICY_FIELDS}
        file_values = settings_values(document) if document is not None else {}
        where = f"file {env.policy_file}"
        values.update(file_values)
        sources.update(dict.fromkeys(file_values, where))
        services: dict[str, Any] = dict(env.services)
        overrides: dict[str, Any] = dict(
            values.get("signature_policy_overrides", env.signature_policy_overrides)
        )
        order: dict[str, Any] = {}
        update_order: dict[str, Any] = dict(env.update_order)
        # per-service settings: (setting, the [services.NAME] key, the label layer, merged)
        layers = (
            ("services", "role", labels.roles, services),
            ("signature_policy_overrides", "signature_policy", labels.signature, overrides),
            ("start_order", "start_order", labels.order, order),
            ("update_order", "update_order", labels.update_order, update_order),
        )
        per_service = document.services if document is not None else {}
        for field, key, _, into in layers:
            for name, table in per_service.items():
                if getattr(table, key) is not None:
                    into[name] = getattr(table, key)
                    sources[field] = where
        for field, _, layer, into in layers:  # labels last: they win
            if layer:
                into.update(layer)
                sources[field] = "label " + ",".join(sorted(layer))
        values["services"] = services
        values["update_order"] = update_order
        values["signature_policy_overrides"] = {n: Policy(p) for n, p in overrides.items()}
        if order:
            listed = list(values.get("start_order", env.start_order))
            apps = [n for n, r in services.items() if r is Role.APP]
            rest = [n for n in listed if n not in order] + [
                n for n in apps if n not in order and n not in listed
            ]
            values["start_order"] = sorted(order, key=lambda n: (order[n], n)) + rest
        try:
            return Settings.model_validate(values), sources
        except ValidationError as err:
            problems = [
                p.render() for p in problems_from(err, Settings.model_fields, SECRET_FIELDS)
            ]
            raise PolicyInvalid(
                "the policy (file and labels over the environment) is refused; the policy in "
                "force is kept: " + "; ".join(problems),
                problems=problems,
            ) from None

    # --- reading -------------------------------------------------------------------

    @property
    def notifications(self) -> NotificationSettings | None:
        return self.document.notifications if self.document is not None else None

    def rules(self) -> Rules:
        settings = self.settings
        return Rules(
            auto_apply=settings.auto_apply,
            windows=list(settings.maintenance_window),
            maturity=timedelta(hours=settings.maturity_hours),
            maturity_from=settings.maturity_from,
            hard_pin=settings.hard_pin,
            channel=settings.channel.value,
        )

    def describe(self) -> dict[str, Any]:
        """Each policy setting's effective value and where it came from."""
        settings = self.settings.model_dump(mode="json", include=set(POLICY_FIELDS))
        settings["maintenance_window"] = [str(w) for w in self.settings.maintenance_window]
        notifications = self.notifications
        return {
            "policy_file": str(self.env.policy_file) if self.env.policy_file else None,
            "loaded_at": iso_z(self.loaded_at),
            "settings": {
                name: {"value": settings[name], "source": self.sources.get(name, "default")}
                for name in POLICY_FIELDS
            },
            "notifications": None if notifications is None else _channels(notifications),
        }


def _update_order(value: str) -> str:
    if value not in UPDATE_ORDERS:
        raise ValueError(value)
    return value


def _same(a: ServiceLabels, b: ServiceLabels) -> bool:
    def key(labels: ServiceLabels) -> tuple[object, ...]:
        return (labels.roles, labels.signature, labels.order, labels.update_order, labels.problems)

    return key(a) == key(b)


def _channels(notifications: NotificationSettings) -> dict[str, Any]:
    """Where notices go, without a URL or token: the Apprise schemes and the events."""
    try:
        schemes = [scheme(url) for url in notifications.all_urls()]
    except ValueError as err:
        schemes = [f"unreadable: {err}"]
    return {
        "apprise": schemes,
        "webhook": notifications.webhook_url is not None,
        "events": sorted(event.value for event in notifications.events),
    }
