"""The FakeEngine behaves like the real engine where the domain's tests depend on it.

Each behaviour below is proven on the real engine by tests/docker/test_engine_converge.py
and tests/docker/test_engine_retained.py; these keep the fake honest about the same cases.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from supervisor.exceptions import EngineConflict, RetainedContainerLost
from tests.support.fakes import FakeEngine, image_of

pytestmark = pytest.mark.unit


async def test_restore_twice_converges_and_recreates_a_removed_old_container() -> None:
    engine = FakeEngine("1.0.0")
    (app,) = engine.by_service("app")
    engine.present.add(image_of("1.1.0"))
    intent = await engine.prepare_recreate(app.id, "r1")
    retained = await engine.recreate(app.id, image_of("1.1.0"), "r1", 5)
    assert dataclasses.replace(retained, new_id="") == intent
    assert (await engine.restore_retained(retained)).id == app.id
    assert (await engine.restore_retained(retained)).id == app.id
    assert engine.version_running() == "1.0.0"

    retained = await engine.recreate(app.id, image_of("1.1.0"), "r2", 5)
    assert engine.remove_retained_by_hand() == [app.id]
    restored = await engine.restore_retained(dataclasses.replace(retained, new_id=""))
    assert restored.id != app.id
    assert restored.running
    assert engine.version_running() == "1.0.0"
    assert ("pull", "") not in engine.calls  # the image is present
    assert (await engine.restore_retained(retained)).id == restored.id


async def test_restore_pulls_only_when_the_image_is_gone_and_fails_without_a_spec() -> None:
    engine = FakeEngine("1.0.0")
    (app,) = engine.by_service("app")
    retained = await engine.recreate(app.id, image_of("1.1.0"), "r1", 5)
    engine.remove_retained_by_hand()
    engine.present.discard(image_of("1.0.0"))
    await engine.restore_retained(retained)
    assert ("pull", "") in engine.calls

    (app,) = engine.by_service("app")
    retained = await engine.recreate(app.id, image_of("1.1.0"), "r2", 5)
    engine.remove_retained_by_hand()
    with pytest.raises(RetainedContainerLost):
        await engine.restore_retained(dataclasses.replace(retained, old_spec={}))


async def test_restore_leaves_a_name_holder_of_another_run_alone() -> None:
    engine = FakeEngine("1.0.0")
    (app,) = engine.by_service("app")
    retained = await engine.recreate(app.id, image_of("1.1.0"), "r1", 5)
    engine.containers[retained.new_id].labels = {}
    with pytest.raises(EngineConflict):
        await engine.restore_retained(dataclasses.replace(retained, new_id=""))


async def test_a_stale_stop_lands_after_a_plain_start_but_not_after_ensure_running() -> None:
    for stop_timeout, ends_running in ((None, False), (5.0, True)):
        engine = FakeEngine("1.0.0")
        (app,) = engine.by_service("app")
        engine.hang.add("stop")
        killed = asyncio.create_task(engine.stop(app.id, 5))
        await asyncio.sleep(0)
        killed.cancel()  # the sidecar died; the engine still finishes the stop
        engine.hang.clear()
        assert (await engine.container(app.id)).running
        await engine.ensure_running(app.id, 30, stop_timeout=stop_timeout)
        assert (await engine.container(app.id)).running is ends_running
