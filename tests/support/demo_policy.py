"""``config/policy.toml`` of a demo or test stack: ``compose/policy.toml.example`` with a few
keys set, as an operator edits it (runbook, sections 1 and 8).

``python -m tests.support.demo_policy STACK_DIR`` writes the demo's (``scripts/demo``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.support.testenv import ROOT

EXAMPLE = ROOT / "compose" / "policy.toml.example"
# Modest waits, so the demo does not take all day.
DEMO_POLICY = {"health_timeout": "40", "stability_window": "5"}


def policy_text(values: dict[str, str]) -> str:
    """The example with each ``key = value`` set (a commented ``# key =`` line is used)."""
    text = EXAMPLE.read_text()
    for key, value in values.items():
        text, hits = re.subn(rf"^#? ?{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert hits, f"{key} is not in compose/policy.toml.example"
    return text


def write_policy(stack_dir: Path, values: dict[str, str] = DEMO_POLICY) -> Path:
    path = stack_dir / "config" / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(policy_text(values))
    path.chmod(0o644)  # the sidecar (uid 10001) reads it
    return path


if __name__ == "__main__":
    print(write_policy(Path(sys.argv[1])))
