"""Rolling updates: readiness gating, failed rollouts undone, maxSurge/maxUnavailable, scale, restart."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from controller.runtime.base import RolloutFailed, RuntimeFailure
from tests.localrt.harness import PYTHON, WEB, async_test, harness, spec, until

READY = """
healthCheck:
  readiness: {path: %s, periodSeconds: 1, failureThreshold: 1}
lifecycle:
  preStop: {drainTimeoutSeconds: 1}
"""


async def load_loop(h, app: str, stop: asyncio.Event, results: list, limit: int = 3000) -> None:
    """Requests one after another until `stop` is set (or `limit` requests)."""
    while not stop.is_set() and len(results) < limit:
        results.append(await h.get(app))


@async_test
async def test_redeploy_gates_on_readiness_with_no_failed_requests(tmp_path):
    async with harness(tmp_path) as h:
        ready = spec(READY % "/ready")
        v1 = h.release("live", 1, formation={"web": 2}, config={"MESSAGE": "v1"}, app_spec=ready)
        await h.rt.deploy(v1, None, h.out)
        stop = asyncio.Event()
        results: list[tuple[int, str]] = []
        loop = asyncio.create_task(load_loop(h, "live", stop, results))
        await until(lambda: len(results) > 10, what="traffic on v1")
        v2 = h.release("live", 2, formation={"web": 2}, config={"MESSAGE": "v2"}, app_spec=ready)
        await h.rt.deploy(v2, v1, h.out)
        deployed = len(results)
        await until(lambda: len(results) > deployed + 10, what="traffic after the deploy")
        stop.set()
        await loop
        assert [r for r in results if r[0] != 200] == []
        bodies = [body.split()[0] for _, body in results]
        assert bodies[0] == "v1" and set(bodies[deployed + 1:]) == {"v2"}
        assert {s.release for s in await h.ps("live")} == {2}
        assert any(line.strip().endswith("is ready") for line in h.lines)


@async_test
async def test_rollout_that_never_becomes_ready_fails_and_keeps_old_release(tmp_path):
    async with harness(tmp_path, rollout_timeout=3) as h:
        v1 = h.release("stuck", 1, config={"MESSAGE": "v1"}, app_spec=spec(READY % "/ready"))
        await h.rt.deploy(v1, None, h.out)
        v2 = h.release("stuck", 2, config={"MESSAGE": "v2"}, app_spec=spec(READY % "/never"))
        with pytest.raises(RolloutFailed) as failure:
            await h.rt.deploy(v2, v1, h.out)
        message = str(failure.value)
        assert "v2 was not released: web.1 did not become ready within 3s (GET /never returned HTTP 500)" in message
        assert message.endswith('request "GET /never HTTP/1.1" 500 -. What ran before keeps running.')
        assert "\n" not in message
        assert (await h.get("stuck"))[1].startswith("v1")
        assert [(s.release, s.state) for s in await h.ps("stuck")] == [(1, "up")]
        assert h.rt.current("stuck") == v1


@pytest.mark.parametrize("surge, unavailable, most_alive, fewest_available", [(1, 0, 4, 3), (0, 1, 3, 2)])
@async_test
async def test_rolling_update_respects_max_surge_and_max_unavailable(
        tmp_path, surge, unavailable, most_alive, fewest_available):
    rolling = spec(f"rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}")
    async with harness(tmp_path) as h:
        v1 = h.release("roll", 1, formation={"web": 3}, app_spec=rolling)
        await h.rt.deploy(v1, None, h.out)
        supervisor = h.rt.supervisor("roll")
        seen: list[tuple[int, int]] = []
        supervisor.observers.append(
            lambda s: seen.append((len(s.live("web")), sum(r.available for r in s.live("web")))))
        v2 = h.release("roll", 2, formation={"web": 3}, app_spec=rolling)
        await h.rt.deploy(v2, v1, h.out)
        assert max(alive for alive, _ in seen) == most_alive
        assert min(available for _, available in seen) == fewest_available
        assert [s.release for s in await h.ps("roll")] == [2, 2, 2]


@async_test
async def test_scaling_keeps_running_replicas_and_adds_or_removes_the_difference(tmp_path):
    async with harness(tmp_path) as h:
        v1 = h.release("scale", 1)
        await h.rt.deploy(v1, None, h.out)
        (original,) = h.alive("scale")
        up = dataclasses.replace(v1, version=2, formation={"web": 3}, reason="scale")
        await h.rt.deploy(up, v1, h.out)
        assert original in h.alive("scale") and len(h.alive("scale")) == 3
        assert sorted(s.replica for s in await h.ps("scale")) == ["web.1", "web.2", "web.3"]
        down = dataclasses.replace(v1, version=3, formation={"web": 1}, reason="scale")
        await h.rt.deploy(down, up, h.out)
        assert len(h.alive("scale")) == 1 and (await h.get("scale"))[0] == 200
        zero = dataclasses.replace(v1, version=4, formation={"web": 0}, reason="scale")
        await h.rt.deploy(zero, down, h.out)
        assert await h.ps("scale") == [] and (await h.get("scale"))[0] == 503


@async_test
async def test_restart_replaces_every_replica_of_the_type(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("again", 1, formation={"web": 2}), None, h.out)
        before = set(h.alive("again"))
        await h.rt.restart("again", "web")
        after = set(h.alive("again"))
        assert len(after) == 2 and not before & after
        await h.rt.supervisor("again").wait_retired()
        assert all(r.state == "stopped" for r in before)
        assert (await h.get("again"))[0] == 200


@async_test
async def test_worker_types_roll_restart_and_stop_when_dropped(tmp_path):
    processes = {"web": WEB, "worker": f"{PYTHON} -u worker.py"}
    async with harness(tmp_path) as h:
        v1 = h.release("mixed", 1, processes=processes, formation={"worker": 2})
        await h.rt.deploy(v1, None, h.out)
        assert [(s.replica, s.state) for s in await h.ps("mixed")] == [
            ("web.1", "up"), ("worker.1", "up"), ("worker.2", "up")]
        workers = set(h.alive("mixed", "worker"))
        await h.rt.restart("mixed", None)
        assert len(h.alive("mixed", "worker")) == 2 and not workers & set(h.alive("mixed", "worker"))
        v2 = h.release("mixed", 2, processes={"web": WEB}, config={"MESSAGE": "v2"})
        await h.rt.deploy(v2, v1, h.out)
        assert [(s.type, s.release) for s in await h.ps("mixed")] == [("web", 2)]
        with pytest.raises(RuntimeFailure, match="no process type 'worker'"):
            await h.rt.restart("mixed", "worker")


@async_test
async def test_failed_rollout_restarts_old_replicas_it_had_already_stopped(tmp_path):
    no_surge = "rollingUpdate: {maxSurge: 0, maxUnavailable: 1}\n"
    async with harness(tmp_path, rollout_timeout=8) as h:
        v1 = h.release("undo", 1, formation={"web": 2}, config={"MESSAGE": "v1"}, app_spec=spec(no_surge))
        await h.rt.deploy(v1, None, h.out)
        v2 = h.release("undo", 2, formation={"web": 2}, config={"MESSAGE": "v2"},
                       app_spec=spec(no_surge + READY % "/never"))
        with pytest.raises(RolloutFailed, match="v2 was not released: web.. did not become ready"):
            await h.rt.deploy(v2, v1, h.out)
        assert [s.release for s in await h.ps("undo")] == [1, 1]
        await until(lambda: len(h.rt.supervisor("undo").serving_ports()) == 2, what="v1 back at full strength")
        assert (await h.get("undo"))[1].startswith("v1")
