"""How big a step a release is, and which steps auto-apply may take on its own.

Versions are read with :mod:`packaging` (PEP 440, which accepts semantic versions such as
``1.4.2`` and ``2.0.0rc1``). A step is ``major`` when the first number changes, ``minor`` when
the second does, otherwise ``patch``; a pre-release is that same step of its final version
(``1.5.0rc1`` from ``1.4.2`` is minor) and is only ever considered on the ``beta`` channel.
"""

from __future__ import annotations

from enum import StrEnum

from packaging.version import Version


class AutoApply(StrEnum):
    """Which steps the periodic check may apply on its own, inside a maintenance window."""

    OFF = "off"
    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"

    @property
    def rank(self) -> int:
        return list(AutoApply).index(self)


def step(current: Version, target: Version) -> AutoApply:
    """The kind of step from ``current`` to a newer ``target`` (``patch`` … ``major``)."""
    if target.major != current.major:
        return AutoApply.MAJOR
    if target.minor != current.minor:
        return AutoApply.MINOR
    return AutoApply.PATCH


def allowed(policy: AutoApply, kind: AutoApply) -> bool:
    """Whether ``policy`` lets auto-apply take a step of ``kind``."""
    return policy is not AutoApply.OFF and kind.rank <= policy.rank
