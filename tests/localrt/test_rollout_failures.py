"""Rollouts that cannot release a broken app: the default readiness check, the stability window,
failing at once when a new replica exits or binds the wrong port, progress while waiting, DYNO numbers."""

from __future__ import annotations

import dataclasses
import time

import pytest

from controller.runtime.base import Fault, RolloutFailed
from tests.localrt.harness import FAST, PYTHON, async_test, harness

# Long enough that only failing at once (not the rollout timeout) can pass these tests.
PATIENT = 120


async def deploy_v1_then_fail_v2(h, app: str, config: dict[str, str], **kwargs) -> RolloutFailed:
    v1 = h.release(app, 1, config={"MESSAGE": "v1"})
    await h.rt.deploy(v1, None, h.out)
    v2 = h.release(app, 2, config={"MESSAGE": "v2", **config}, **kwargs)
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as failure:
        await h.rt.deploy(v2, v1, h.out)
    assert time.monotonic() - started < PATIENT / 2, "the rollout failed by its timeout, not at once"
    assert (await h.get(app))[1].startswith("v1 from web.1")
    assert [(s.release, s.state) for s in await h.ps(app)] == [(1, "up")]
    assert h.rt.current(app) == v1
    return failure.value


@async_test
async def test_a_replica_that_exits_while_starting_fails_the_rollout_at_once_with_its_last_lines(tmp_path):
    crash = tmp_path / "crash"
    crash.touch()
    async with harness(tmp_path, rollout_timeout=PATIENT) as h:
        failure = await deploy_v1_then_fail_v2(h, "crashy", {"CRASH_FILE": str(crash)})
    assert failure.outcome is not None and failure.outcome.fault is Fault.EXITED
    assert str(failure).startswith("v2 was not released: web.1 exited with status 4 before it became ready; ")
    assert failure.last_lines[-1] == "crashing on purpose"
    assert "its last output: crashing on purpose." in str(failure)


@async_test
async def test_an_app_on_a_fixed_port_is_rejected_naming_port_and_its_port(tmp_path):
    fixed = 47000 + int(time.time()) % 1000
    async with harness(tmp_path, rollout_timeout=PATIENT) as h:
        failure = await deploy_v1_then_fail_v2(h, "fixed", {"LISTEN_PORT": str(fixed)})
    assert failure.outcome is not None and failure.outcome.fault is Fault.WRONG_PORT
    message = str(failure)
    assert f"web.1 listens on port {fixed} but not on $PORT (" in message
    assert f"its last output: listening on {fixed}." in message


@async_test
async def test_a_web_process_that_never_listens_says_so_and_names_port(tmp_path):
    async with harness(tmp_path, rollout_timeout=3) as h:
        v1 = h.release("quiet", 1, processes={"web": f"{PYTHON} -u worker.py"})
        with pytest.raises(RolloutFailed) as failure:
            await h.rt.deploy(v1, None, h.out)
        assert await h.ps("quiet") == []
    message = str(failure.value)
    assert message.startswith("v1 was not released: web.1 did not become ready within 3s (nothing is listening "
                              "on port ")
    assert "nothing ever listened on $PORT (" in message and "tick" in message


@async_test
async def test_a_replica_that_exits_soon_after_it_is_ready_fails_the_rollout(tmp_path):
    window = dataclasses.replace(FAST, min_ready=5.0)
    async with harness(tmp_path, rollout_timeout=PATIENT, timings=window) as h:
        failure = await deploy_v1_then_fail_v2(h, "flaky", {"EXIT_AFTER": "0.5"})
    assert str(failure).startswith("v2 was not released: web.1 exited with status 5 within seconds of becoming ready")


@async_test
async def test_any_http_answer_on_port_counts_as_ready_by_default(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("errors", 1, config={"ROOT_STATUS": "500"}), None, h.out)
        assert (await h.get("errors"))[0] == 500
        (replica,) = h.alive("errors")
        assert replica.last_check == "GET / returned HTTP 500"


@async_test
async def test_progress_lines_keep_coming_while_a_slow_replica_starts(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.deploy(h.release("slow", 1, config={"START_DELAY": "3.5"}), None, h.out)
    waiting = [line for line in h.lines if line.startswith("       Waiting for web.1 starting for ")]
    assert len(waiting) >= 2, h.lines
    assert "nothing is listening on port" in waiting[0]
    assert h.lines[1] == "       Starting web.1 (v1)" and h.lines[-1] == "       web.1 is ready"


@async_test
async def test_dyno_names_are_web_1_to_n_and_reused_as_replicas_are_replaced(tmp_path):
    async with harness(tmp_path) as h:
        v1 = h.release("dynos", 1, formation={"web": 3})
        await h.rt.deploy(v1, None, h.out)
        for version in (2, 3):
            release = h.release("dynos", version, formation={"web": 3}, config={"MESSAGE": f"v{version}"})
            await h.rt.deploy(release, None, h.out)
            assert sorted(s.replica for s in await h.ps("dynos")) == ["web.1", "web.2", "web.3"]
        seen = {(await h.get("dynos"))[1].strip() for _ in range(12)}
        assert seen == {"v3 from web.1", "v3 from web.2", "v3 from web.3"}
        down = dataclasses.replace(release, version=4, formation={"web": 1}, reason="scale")
        await h.rt.deploy(down, release, h.out)
        assert [s.replica for s in await h.ps("dynos")] == ["web.1"]
