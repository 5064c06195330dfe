"""Benchmark: user-visible downtime of an update and of a rollback, ours against the manual runbook.

    python bench/downtime.py [--gb 1.0] [--repeat 3] [--items 400000] [--points 100000]
                             [--json bench/results/downtime-<date>-<gb>gb.json]

Each round brings up the shipped stack as the tests do (tests/support/demo_stack.py:
the sidecar container behind the docker-proxy, the real registry, signed releases
1.0.0, 1.1.0 and 1.3.0 of the fake app, which never becomes healthy at 1.3.0),
publishes the app on a fixed host port, seeds about ``--gb`` GB of PostgreSQL rows
(``events``, a table the migrations do not touch, plus ``--items`` rows the 1.1.0
migration backfills) and ``--points`` InfluxDB points, then, with one poller asking
the app's published ``/health`` every 50 ms and ``docker events`` followed throughout:

1. baseline A, the manual runbook with the Compose CLI: 1.0.0 → 1.1.0 (stop app and
   backend, ``pg_dump -Fc`` in the postgres container, the new image pinned in
   ``.env``, ``compose run migrations``, ``compose up -d --no-deps`` the app services);
   then back to 1.0.0 with its data (``pg_restore --clean``; not measured);
2. ours: the same update through ``POST /admin/update/start``, followed to the end;
3. the runbook's "second outage": ``compose.sh up -d`` as the operator's next routine
   command; does Compose recreate the app containers, and for how long is it down;
4. ours, a never-healthy release: 1.1.0 → 1.3.0, rolled back; the time from the first
   ``unhealthy`` or exit of a new container (engine events) to the old version answering
   again (poller), rows counted, pulls counted (engine pull events and the registry's
   blob GETs for the release repository) in that window;
5. baseline B, the same by hand: a manual update to 1.3.0 with the old containers kept
   aside; from the first bad signal: new containers removed, ``pg_restore --clean`` of
   the dump, old containers renamed back and started, until the poller sees 200.

Rounds run every path once each, so a change of the machine's load hits both sides; the
table shows medians with min-max and per-round ratios. Needs the test environment
(``scripts/testenv up && scripts/testenv images``). Writes a JSON file of every
measurement (default ``bench/results/downtime-<UTC date>-<gb>gb.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _downtime_probe import (  # noqa: E402
    EngineEvents,
    Poller,
    iso_to_unix,
    load,
    machine,
    outages,
    registry_blob_bytes,
)
from _downtime_stack import (  # noqa: E402
    after_manual_restore,
    app_container_ids,
    app_version,
    counts,
    is_run_container,
    manual_failed_update,
    manual_reset,
    manual_restore,
    manual_update,
    milestones,
    publish_app_on_fixed_port,
    seed,
    sidecar_log,
    sidecar_update,
)

from tests.support.demo_stack import (  # noqa: E402
    REGISTRY_CONTAINER,
    DemoStack,
    demo_stack,
    wait_until_healthy,
)
from tests.support.testenv import load_testenv  # noqa: E402

FROM, GOOD, NEVER_HEALTHY = "1.0.0", "1.1.0", "1.3.0"
DUMP_A, DUMP_B = "/tmp/bench-manual-a.dump", "/tmp/bench-manual-b.dump"
TARGETS = {"downtime_ratio": 0.5, "back_within_s": 15.0, "rollback_ratio": 1.2}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def stage_times(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The run record's stages as (stage, start, end, seconds), Unix times."""
    out = []
    for stage in record.get("stages") or []:
        start = iso_to_unix(stage["started_at"])
        end = iso_to_unix(stage.get("finished_at"))
        assert start is not None
        out.append({
            "stage": stage["stage"], "start": start, "end": end, "ok": stage.get("ok"),
            "seconds": round(end - start, 3) if end is not None else None,
        })  # fmt: skip
    return out


def overlap(stages: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """Seconds of each stage inside [start, end]: where a user-visible outage went."""
    spent: dict[str, float] = {}
    for stage in stages:
        s_end = stage["end"] if stage["end"] is not None else end
        seconds = min(end, s_end) - max(start, stage["start"])
        if seconds > 0:
            spent[stage["stage"]] = round(spent.get(stage["stage"], 0) + seconds, 3)
    return spent


def run_seconds(record: dict[str, Any]) -> float:
    return (iso_to_unix(record["finished_at"]) or 0) - (iso_to_unix(record["started_at"]) or 0)


def repository_of(image: str) -> str:
    """``127.0.0.1:5000/stacksup/e2e-x@sha256:…`` → ``stacksup/e2e-x``."""
    return image.split("@")[0].split("/", 1)[1]


# --- the phases --------------------------------------------------------------------------


def phase_manual_update(stack: DemoStack, poller: Poller) -> dict[str, Any]:
    started = time.time()
    steps = manual_update(stack, stack.images[GOOD], DUMP_A)
    commands_done = time.time()
    answering = poller.wait_answering(commands_done)
    steps["up -d → answering"] = round(answering - commands_done, 3)
    version = app_version(stack)
    assert version == GOOD, f"manual update ended on {version}"
    down = outages(poller.window(started, answering), answering)
    return {"steps": steps, "wall_s": round(answering - started, 3), **down.as_dict()}


def phase_ours_update(stack: DemoStack, poller: Poller) -> dict[str, Any]:
    started = time.time()
    record = sidecar_update(stack, GOOD)
    ended = time.time()
    assert record["result"] == "completed", f"our update ended {record['result']}: {record}"
    version = app_version(stack)
    assert version == GOOD, f"our update ended on {version}"
    down = outages(poller.window(started, ended), ended)
    stages = stage_times(record)
    spent: dict[str, float] = {}
    for outage in down.outages:
        for name, seconds in overlap(stages, outage.start, outage.end or ended).items():
            spent[name] = round(spent.get(name, 0) + seconds, 3)
    return {
        "update_id": record["update_id"],
        "stages": {s["stage"]: s["seconds"] for s in stages},
        "outage_by_stage": spent,
        "wall_s": round(ended - started, 3),
        "run_s": round(run_seconds(record), 3),
        **down.as_dict(),
    }


def phase_second_outage(stack: DemoStack, poller: Poller) -> dict[str, Any]:
    before = app_container_ids(stack)
    started = time.time()
    stack.compose("up", "-d")
    returned = time.time()
    wait_until_healthy(stack)
    answering = poller.wait_answering(returned)
    after = app_container_ids(stack)
    down = outages(poller.window(started, answering), answering)
    return {
        "recreated": sorted(s for s in before if before[s] != after[s]),
        "compose_s": round(returned - started, 3),
        **down.as_dict(),
    }


def phase_ours_rollback(stack: DemoStack, poller: Poller, events: EngineEvents) -> dict[str, Any]:
    rows_before, version_before = counts(stack), app_version(stack)
    started = time.time()
    record = sidecar_update(stack, NEVER_HEALTHY)
    ended = time.time()
    assert record["result"] == "rolled_back", f"expected rolled_back: {record['result']}"
    bad = events.first_bad_signal(is_run_container(record["update_id"]), started)
    assert bad is not None, "no unhealthy/exit event of the run's new containers"
    back = poller.first_success_after(bad.at, time.time() + 60)
    assert back is not None, "the old version never answered after the rollback"
    rows_after, version_after = counts(stack), app_version(stack)
    stages = stage_times(record)
    health = next(s for s in stages if s["stage"] == "healthcheck")
    # The engine's events are engine-wide (other tests pull too): the stack's releases
    # live in a repository of their own, the only one its sidecar pulls from.
    repository = repository_of(stack.images[NEVER_HEALTHY])
    pulls_window = events.pulls(bad.at, ended)
    ours = [e.actor for e in pulls_window if f"/{repository}@" in e.actor]
    registry = registry_blob_bytes(REGISTRY_CONTAINER, repository, bad.at, ended)
    down = outages(poller.window(started, back), back)
    log = sidecar_log(stack, record["update_id"], started)
    return {
        "update_id": record["update_id"],
        "first_bad_signal": {
            "action": bad.action,
            "at": bad.at,
            "service": bad.attributes.get("com.docker.compose.service"),
        },
        "back_s": round(back - bad.at, 3),
        "gate_wait_after_bad_s": round((health["end"] or ended) - bad.at, 3),
        "new_started_to_bad_s": round(bad.at - health["start"], 3),
        "stages": {s["stage"]: s["seconds"] for s in stages},
        "rows_kept": rows_after == rows_before,
        "version_after": version_after,
        "version_before": version_before,
        "pull_events_in_rollback": ours,
        "pull_events_in_rollback_other_repositories": [
            e.actor for e in pulls_window if e.actor not in ours
        ],
        "pull_events_whole_run": [
            e.actor for e in events.pulls(started, ended) if f"/{repository}@" in e.actor
        ],
        "registry_in_rollback": registry,
        "milestones_after_bad": milestones(log, bad.at),
        "sidecar_log": log,
        "wall_s": round(ended - started, 3),
        **down.as_dict(),
    }


def phase_manual_rollback(
    stack: DemoStack, poller: Poller, events: EngineEvents, label: str
) -> dict[str, Any]:
    rows_before = counts(stack)
    started = time.time()
    kept = manual_failed_update(stack, stack.images[NEVER_HEALTHY], DUMP_B, label)
    bad = events.first_bad_signal(is_run_container(label), started, timeout=300)
    assert bad is not None, "the manual 1.3.0 containers never reported unhealthy"
    reacted = time.time()
    steps = manual_restore(stack, kept, DUMP_B)
    back = poller.wait_answering(bad.at)
    # The old app may answer before ``docker start`` of both returns: from its start.
    before_start = sum(v for k, v in steps.items() if not k.startswith("rename"))
    steps["rename + start old → answering"] = round(back - reacted - before_start, 3)
    rows_after, version = counts(stack), app_version(stack)
    after_manual_restore(stack, kept, DUMP_B)
    down = outages(poller.window(started, back), back)
    return {
        "first_bad_signal": {
            "action": bad.action,
            "at": bad.at,
            "service": bad.attributes.get("com.docker.compose.service"),
        },
        "back_s": round(back - bad.at, 3),
        "reaction_s": round(reacted - bad.at, 3),
        "steps": steps,
        "rows_kept": rows_after == rows_before,
        "version_after": version,
        **down.as_dict(),
    }


def one_round(number: int, args: argparse.Namespace) -> dict[str, Any]:
    env = load_testenv()
    if env is None:
        raise SystemExit("the test images are not built: scripts/testenv up && images")
    result: dict[str, Any] = {"round": number, "load_at_start": load()}
    with tempfile.TemporaryDirectory(prefix="downtime-") as tmp:
        say(f"round {number}: bringing up the stack")
        with demo_stack(env, Path(tmp)) as stack:
            health_url = publish_app_on_fixed_port(stack)
            say(f"seeding ~{args.gb:g} GB, {args.items} items, {args.points} points")
            result["data"] = seed(stack, args.gb, args.items, args.points)
            say(f"  {result['data']}")
            with EngineEvents() as events, Poller(health_url) as poller:
                poller.wait_answering(time.time() - 1, timeout=60)
                say("A: manual update 1.0.0 → 1.1.0 (Compose CLI)")
                result["manual_update"] = phase_manual_update(stack, poller)
                say(f"  down {result['manual_update']['total_s']} s")
                say("   back to 1.0.0 with its data (not measured)")
                manual_reset(stack, stack.images[FROM], DUMP_A)
                say("ours: update 1.0.0 → 1.1.0 through the API")
                result["ours_update"] = phase_ours_update(stack, poller)
                say(f"  down {result['ours_update']['total_s']} s")
                say("second outage: compose.sh up -d after our update")
                result["second_outage"] = phase_second_outage(stack, poller)
                say(f"  recreated {result['second_outage']['recreated']}, "
                    f"down {result['second_outage']['total_s']} s")  # fmt: skip
                say("ours: 1.1.0 → 1.3.0 (never healthy), rolled back")
                result["ours_rollback"] = phase_ours_rollback(stack, poller, events)
                say(f"  back {result['ours_rollback']['back_s']} s after the first bad signal")
                say("B: manual 1.1.0 → 1.3.0, restored by hand")
                result["manual_rollback"] = phase_manual_rollback(
                    stack, poller, events, f"bench-manual-{number}"
                )
                say(f"  back {result['manual_rollback']['back_s']} s after the first bad signal")
    result["load_at_end"] = load()
    return result


# --- the report ----------------------------------------------------------------------------


def stat(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def ratio(ours: list[float], theirs: list[float]) -> str:
    per_round = [o / t for o, t in zip(ours, theirs, strict=True) if t > 0]
    if not per_round:
        return "-"
    med = statistics.median(ours) / statistics.median(theirs)
    spread = f" ({min(per_round):.2f}-{max(per_round):.2f})" if len(per_round) > 1 else ""
    return f"{med:.2f}x{spread}"


def pick(rounds: list[dict[str, Any]], phase: str, key: str) -> list[float]:
    return [float(r[phase][key]) for r in rounds]


def report(rounds: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    data = rounds[0]["data"]
    add(f"machine: {info['cores']} cores ({info['cpu']}), {info['ram_gib']} GiB RAM, kernel "
        f"{info['kernel']}, Docker {info['docker']}, {info['compose']}; load "
        f"{info['load_at_start']} at start, {load()} at end")  # fmt: skip
    add(f"data: PostgreSQL {data['postgres_bytes'] / 1e9:.2f} GB ({data['events_rows']} event "
        f"rows, {data['items_rows']} items), InfluxDB {data['influx_points']} points; "
        f"poller every 50 ms on the app's published /health; median of {len(rounds)} "
        f"(min-max); ratios: of the medians (per round)")  # fmt: skip
    add("")
    add("| measure | manual | ours | ours / manual | target |")
    add("|---|---:|---:|---:|---|")
    a_down, o_down = pick(rounds, "manual_update", "total_s"), pick(rounds, "ours_update",
                                                                     "total_s")  # fmt: skip
    add(f"| update 1.0.0→1.1.0: user-visible downtime, s | {stat(a_down)} | {stat(o_down)} "
        f"| {ratio(o_down, a_down)} | ≤ {TARGETS['downtime_ratio']}x |")  # fmt: skip
    a, o = pick(rounds, "manual_update", "longest_s"), pick(rounds, "ours_update", "longest_s")
    add(f"| update: longest outage, s | {stat(a)} | {stat(o)} | {ratio(o, a)} | |")
    a = pick(rounds, "manual_update", "failed_requests")
    o = pick(rounds, "ours_update", "failed_requests")
    add(f"| update: failed requests | {stat(a, 0)} | {stat(o, 0)} | {ratio(o, a)} | |")
    a, o = pick(rounds, "manual_update", "wall_s"), pick(rounds, "ours_update", "wall_s")
    add(f"| update: wall time (start → answering / run ended), s | {stat(a)} | {stat(o)} "
        f"| {ratio(o, a)} | |")  # fmt: skip
    b_back = pick(rounds, "manual_rollback", "back_s")
    o_back = pick(rounds, "ours_rollback", "back_s")
    add(f"| never-healthy 1.3.0: first unhealthy/exit → old version answering, s "
        f"| {stat(b_back)} | {stat(o_back)} | {ratio(o_back, b_back)} "
        f"| ours ≤ {TARGETS['back_within_s']:g} s; ≤ {TARGETS['rollback_ratio']}x |")  # fmt: skip
    b = pick(rounds, "manual_rollback", "failed_requests")
    o = pick(rounds, "ours_rollback", "failed_requests")
    add(f"| never-healthy: failed requests (stop → answering again) | {stat(b, 0)} "
        f"| {stat(o, 0)} | {ratio(o, b)} | |")  # fmt: skip
    b = pick(rounds, "manual_rollback", "total_s")
    o = pick(rounds, "ours_rollback", "total_s")
    add(f"| never-healthy: user-visible downtime (stop → answering again), s | {stat(b)} "
        f"| {stat(o)} | {ratio(o, b)} | |")  # fmt: skip
    pulls = [len(r["ours_rollback"]["pull_events_in_rollback"]) for r in rounds]
    blobs = [r["ours_rollback"]["registry_in_rollback"]["blob_bytes"] for r in rounds]
    gets = [r["ours_rollback"]["registry_in_rollback"]["blob_gets"] for r in rounds]
    add(f"| never-healthy: re-pulled during our rollback | - | {max(pulls)} pull events of "
        f"the release repository, "
        f"{max(gets)} blob GETs, {max(blobs)} bytes (max of rounds) | | 0 bytes |")  # fmt: skip
    rows_ok = all(r["ours_rollback"]["rows_kept"] and r["manual_rollback"]["rows_kept"]
                  for r in rounds)  # fmt: skip
    add(f"| never-healthy: rows and version after (both) | "
        f"{'same rows, ' + rounds[0]['manual_rollback']['version_after']} "
        f"| {'same rows' if rows_ok else 'ROWS DIFFER'}, "
        f"{rounds[0]['ours_rollback']['version_after']} | | data intact |")  # fmt: skip
    s_down = pick(rounds, "second_outage", "total_s")
    recreated = sorted({s for r in rounds for s in r["second_outage"]["recreated"]})
    add(f"| second outage: next `compose.sh up -d` after our update, s | - | {stat(s_down)} "
        f"(recreates: {', '.join(recreated) or 'nothing'}) | | 0 |")  # fmt: skip
    add("")
    add("Where the time goes (median seconds per step):")
    add("")
    add("| manual A (runbook) | s | ours, update (stage) | s | of it user-visible, s |")
    add("|---|---:|---|---:|---:|")
    a_steps = list(rounds[0]["manual_update"]["steps"])
    o_stages = list(rounds[0]["ours_update"]["stages"])
    for i in range(max(len(a_steps), len(o_stages))):
        left = right = ""
        if i < len(a_steps):
            name = a_steps[i]
            left = f"{name} | {stat([r['manual_update']['steps'][name] for r in rounds])}"
        else:
            left = " | "
        if i < len(o_stages):
            name = o_stages[i]
            vals = [r["ours_update"]["stages"].get(name) or 0 for r in rounds]
            vis = [r["ours_update"]["outage_by_stage"].get(name, 0) for r in rounds]
            right = f"{name} | {stat(vals)} | {stat(vis)}"
        else:
            right = " | | "
        add(f"| {left} | {right} |")
    add("")
    add("Never-healthy release, seconds after the first bad signal (cumulative, median):")
    add("")
    add("| manual B, by hand | s | ours (run log, engine timestamps) | s |")
    add("|---|---:|---|---:|")
    left_rows: list[tuple[str, list[float]]] = [
        ("bad signal seen (event watcher)", pick(rounds, "manual_rollback", "reaction_s"))
    ]
    for name in rounds[0]["manual_rollback"]["steps"]:
        if name.startswith("rename + start old →"):
            continue
        values = [r["manual_rollback"]["steps"][name] for r in rounds]
        previous = left_rows[-1][1]
        left_rows.append((f"+ {name}", [p + v for p, v in zip(previous, values, strict=True)]))
    left_rows.append(("old version answering (poller)", b_back))
    right_rows: list[tuple[str, list[float]]] = []
    for label in rounds[0]["ours_rollback"]["milestones_after_bad"]:
        values = [r["ours_rollback"]["milestones_after_bad"].get(label) for r in rounds]
        right_rows.append((label, [v for v in values if v is not None]))
    right_rows.insert(
        next((i for i, (_, v) in enumerate(right_rows) if statistics.median(v or [0])
              > statistics.median(o_back)), len(right_rows)),
        ("old version answering (poller)", o_back),
    )  # fmt: skip
    for i in range(max(len(left_rows), len(right_rows))):
        left = f"{left_rows[i][0]} | {stat(left_rows[i][1])}" if i < len(left_rows) else " | "
        right = f"{right_rows[i][0]} | {stat(right_rows[i][1])}" if i < len(right_rows) else " | "
        add(f"| {left} | {right} |")
    add("")
    add("Ours, never-healthy run, stage durations (median s): " + ", ".join(
        f"{name} {stat([r['ours_rollback']['stages'].get(name) or 0 for r in rounds])}"
        for name in rounds[0]["ours_rollback"]["stages"]
    ) + f"; new containers started → first bad signal "
        f"{stat(pick(rounds, 'ours_rollback', 'new_started_to_bad_s'))}; "
        f"health gate after the first bad signal "
        f"{stat(pick(rounds, 'ours_rollback', 'gate_wait_after_bad_s'))}")  # fmt: skip
    add("")
    verdicts = [
        ("update downtime ≤ 0.5x manual",
         statistics.median(o_down) <= TARGETS["downtime_ratio"] * statistics.median(a_down)),
        ("never-healthy back ≤ 15 s after the first bad signal",
         statistics.median(o_back) <= TARGETS["back_within_s"]),
        ("rollback ≤ 1.2x manual restore",
         statistics.median(o_back) <= TARGETS["rollback_ratio"] * statistics.median(b_back)),
        ("zero bytes re-pulled in the rollback", max(blobs) == 0 and max(pulls) == 0),
        ("no second outage on the next compose up -d", max(s_down) == 0),
    ]  # fmt: skip
    add("targets: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in verdicts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="PostgreSQL data to seed (GB)")
    parser.add_argument(
        "--items",
        type=int,
        default=400_000,
        help="rows in the app's items table (the 1.1.0 migration backfills them)",
    )
    parser.add_argument("--points", type=int, default=100_000, help="InfluxDB points")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median and min-max)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="do not run scripts/testenv images first (the sidecar image as is)",
    )
    args = parser.parse_args()  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = args.json or ROOT / "bench" / "results" / f"downtime-{stamp}-{args.gb:g}gb.json"
    if not args.no_build:
        # The sidecar runs from its image: build it from the working tree first (cached by a
        # hash of its inputs), or the figures are those of whatever was built last.
        say("scripts/testenv images (the sidecar image from the working tree; cached)")
        subprocess.run([str(ROOT / "scripts" / "testenv"), "images"], check=True)
    info = machine()
    rounds: list[dict[str, Any]] = []
    for number in range(1, args.repeat + 1):
        rounds.append(one_round(number, args))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "machine": info,
             "rounds": rounds}, indent=2))  # fmt: skip
    table = report(rounds, info)
    print("\n" + table)
    document = json.loads(target.read_text())
    document["table"] = table
    target.write_text(json.dumps(document, indent=2))
    print(f"\nresults: {target}")


if __name__ == "__main__":
    main()
