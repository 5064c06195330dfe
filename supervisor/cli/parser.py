"""The argument parser: one sub-command per operator task (see ``supervisor --help``)."""

from __future__ import annotations

import argparse

from .exit_codes import EPILOG


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (``SUPPRESS``: the command's copy does
    not overwrite a value given before it)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=argparse.SUPPRESS, help="the sidecar's API (env SUPERVISOR_URL)"
    )
    common.add_argument(
        "--token-file",
        default=argparse.SUPPRESS,
        help="file holding the bearer token (env SUPERVISOR_TOKEN_FILE)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON object instead of text",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="supervisor",
        description="Safe updates of a Docker Compose stack: the sidecar and its operator CLI.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=text,
            description=text,
            parents=[common],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    add("serve", "run the sidecar: the API and the periodic tasks")
    add("check", "look for a new release now")
    plan = add("plan", "dry run: what an update would change and what would block it")
    plan.add_argument("version", nargs="?", help="target version (default: the latest)")
    plan.add_argument("--force", action="store_true", help="plan as if forced")

    update = add("update", "update the stack to VERSION (default: the latest in the channel)")
    update.add_argument("version", nargs="?", help="target version, e.g. 1.4.2")
    update.add_argument("--channel", choices=["stable", "beta"])
    update.add_argument(
        "--force", action="store_true", help="allow the current version again, or a downgrade"
    )
    _changing(update)

    status = add("status", "the current (or last) update, or --id")
    status.add_argument("--id", dest="update_id", help="a run id")
    history = add("history", "finished updates, newest first")
    history.add_argument("--limit", type=int, default=20)

    snapshots = add("snapshots", "list snapshots (or take one with --create)")
    snapshots.add_argument("--create", action="store_true", help="take a manual snapshot")
    snapshots.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)

    restore = add("restore", "overwrite the databases with SNAPSHOT (in the sidecar container)")
    restore.add_argument("snapshot", help="a snapshot id from `supervisor snapshots`")
    restore.add_argument(
        "--remote",
        action="store_true",
        help="ask the API (needs SUPERVISOR_RESTORE_OVER_HTTP there)",
    )
    restore.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    _changing(restore, follow=False)

    acknowledge = add(
        "acknowledge", "take over a run that ended needs_intervention; updates may start again"
    )
    acknowledge.add_argument("update_id", metavar="ID", help="the run id (supervisor status)")
    acknowledge.add_argument("--note", default="", help="what you did; recorded in history")
    acknowledge.add_argument("--operator", help="who you are (default: cli)")
    _changing(acknowledge, follow=False)

    rollback = add("rollback", "go back to the version before the last completed update")
    _changing(rollback)

    verify = add("verify", "check IMAGE's signature under the configured policy")
    verify.add_argument("image", help="name@sha256:… (a digest, as the run verifies it)")
    freeze = add("freeze", "block updates (manual and automatic) until unfreeze")
    freeze.add_argument("--reason", help="written into the freeze file")
    add("unfreeze", "allow updates again")

    policy = add("policy", "unattended updates: the policy in force, decisions, marks")
    policy.add_argument("--decisions", type=int, default=10, help="how many decisions to show")
    actions = policy.add_subparsers(dest="policy_action", metavar="ACTION")
    for name, text in (("skip", "never auto-apply VERSION"),
                       ("snooze", "do not auto-apply VERSION for --hours"),
                       ("clear", "remove VERSION's skip, snooze or bad mark")):  # fmt: skip
        action = actions.add_parser(name, help=text, description=text, parents=[common])
        action.add_argument("version", help="e.g. 1.4.2")
        if name == "snooze":
            action.add_argument("--hours", type=float, required=True)
        action.add_argument("--note", default="", help="why; shown with the mark")
        action.add_argument("--operator", help="who you are (default: cli)")
    lift = actions.add_parser(
        "unfreeze", parents=[common],
        help="lift the self-freeze of auto-apply (not the FREEZE file: see `unfreeze`)",
    )  # fmt: skip
    lift.add_argument("--note", default="", help="what you did")
    lift.add_argument("--operator", help="who you are (default: cli)")
    actions.add_parser("reload", parents=[common], help="re-read the policy file (as SIGHUP)")
    return parser


def _changing(parser: argparse.ArgumentParser, follow: bool = True) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    if follow:
        parser.add_argument(
            "--detach", action="store_true", help="start and return; do not follow the run"
        )
