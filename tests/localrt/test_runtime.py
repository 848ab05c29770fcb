"""LocalRuntime as the controller uses it: build, release phase, slugs, persistence, destroy."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import stat
import sys

import pytest

from builder.job import BuildRequest
from builder.slugmeta import slug_digest
from controller.runtime.base import BuildFailed, ReleasePhaseFailed, RolloutFailed, RuntimeFailure
from controller.runtime.local import LocalRuntime
from tests.fixtures.teresa import BytesInput, MemoryOutput
from tests.localrt.harness import FAST, PYTHON, WEB, async_test, harness, slugrunner, until

FAKE_BUILDER = """
import json, os, sys, time
print("-----> Building", os.fdopen(int(os.environ["TERESA_SOURCE_URL"][3:])).read(), flush=True)
print("config", sorted(json.loads(os.environ["TERESA_BUILD_CONFIG"])), flush=True)
print("storage", sorted(k for k in os.environ if k.startswith("TERESAFILESTORAGE")), flush=True)
print("leaked" if "SERVER_SECRET" in os.environ else "clean", flush=True)
print("stack", sorted(k for k in os.environ if k.startswith("TERESA_STACK_")), flush=True)
print("mark", os.environ["TERESA_BUILDER_FOR"], flush=True)
with os.fdopen(int(os.environ["TERESA_SLUG_UPLOAD_URL"][3:]), "w") as slug:
    slug.write("slug")
if os.environ.get("BUILDPACK_URL") == "slow":
    time.sleep(60)
sys.exit(0 if os.environ.get("BUILDPACK_URL") != "broken" else 2)
"""


def build_request(**kwargs) -> BuildRequest:
    return BuildRequest(app="b", build_id="1", source_key="apps/b/builds/1/source.tgz",
                        slug_key="apps/b/builds/1/slug.tgz", cache_key="apps/b/cache/cache.tgz",
                        config={"SECRET_TOKEN": "x"}, **kwargs)


@async_test
async def test_build_streams_lines_and_reports_failure_and_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_SECRET", "do-not-pass-on")
    async with harness(tmp_path) as h:
        # The stack's settings reach the build; the storage settings, even when the server has them, do not.
        h.rt.settings = dataclasses.replace(h.settings, env={"TERESA_STACK_PYTHONS": "/usr/bin/python3",
                                                             "TERESAFILESTORAGE_AWS_SECRET": "s3-secret"})
        h.rt.slugbuilder = [sys.executable, "-c", FAKE_BUILDER]
        h.store_source("apps/b/builds/1/source.tgz", "the source")
        await h.rt.build(build_request(), h.out)
        assert h.lines == ["-----> Building the source", "config ['SECRET_TOKEN']", "storage []", "clean",
                           "stack ['TERESA_STACK_PYTHONS']", f"mark {h.rt.tenancy.work_root.resolve()}"]
        assert (h.settings.storage.root / "apps/b/builds/1/slug.tgz").read_text() == "slug"
        with pytest.raises(BuildFailed, match="exit status 2"):
            await h.rt.build(build_request(buildpack_url="broken"), h.out)
        with pytest.raises(BuildFailed, match="longer than 1 seconds"):
            await h.rt.build(build_request(buildpack_url="slow", timeout_seconds=1), h.out)


@async_test
async def test_release_phase_runs_once_and_its_failure_names_the_status_and_output(tmp_path):
    async with harness(tmp_path) as h:
        ok = h.release("rel", 1, processes={"web": WEB, "release": "echo migrating $MESSAGE"},
                       config={"MESSAGE": "now"})
        await h.rt.release_phase(ok, h.out)
        assert "migrating now" in h.lines
        bad = h.release("rel", 2, processes={"web": WEB, "release": "echo cannot migrate; exit 3"})
        with pytest.raises(ReleasePhaseFailed) as failure:
            await h.rt.release_phase(bad, h.out)
        assert "exit status 3" in str(failure.value) and "cannot migrate" in str(failure.value)
        assert "v2 was not released" in str(failure.value)
        assert await h.ps("rel") == []


@async_test
async def test_slug_is_fetched_from_storage_and_unpacked_once(tmp_path):
    async with harness(tmp_path) as h:
        key = "apps/fetched/builds/b1/slug.tgz"
        h.store_slug(key, {"web": WEB})
        release = h.release("fetched", 1, slug=False, config={"MESSAGE": "unpacked"})
        release = dataclasses.replace(release, slug_key=key)
        await h.rt.deploy(release, None, h.out)
        assert (await h.get("fetched"))[1] == "unpacked from web.1\n"
        unpacked = h.rt.tenancy.releases_dir("fetched") / "v1"
        assert (unpacked / "Procfile").exists()
        assert await h.rt.slugs.ensure(release) == unpacked
        with pytest.raises(RuntimeFailure, match="could not be fetched"):
            await h.rt.run(dataclasses.replace(release, version=2, slug_key="missing"), ["true"], BytesInput(), MemoryOutput())


@async_test
async def test_a_slug_changed_in_storage_since_its_build_does_not_start(tmp_path):
    async with harness(tmp_path) as h:
        key = "apps/swapped/builds/b1/slug.tgz"
        h.store_slug(key, {"web": WEB})
        built = slug_digest(h.rt.storage, key)  # recorded when the build ended
        h.store_slug(key, {"web": f"{PYTHON} -c 'print(1)'"})  # written again through the build's grant
        release = dataclasses.replace(h.release("swapped", 1, slug=False), slug_key=key, slug_digest=built)
        with pytest.raises(RolloutFailed) as refused:
            await h.rt.deploy(release, None, h.out)
        assert str(refused.value) == ("The slug was changed in storage since its build (its SHA-256 digest is not "
                                      "the one recorded then), so it is not run; push again to rebuild it.")
        assert h.alive("swapped") == [] and not (h.rt.tenancy.releases_dir("swapped") / "v1").exists()


@async_test
async def test_new_runtime_on_the_same_data_dir_brings_the_app_back(tmp_path):
    async with harness(tmp_path) as h:
        release = h.release("phoenix", 1, formation={"web": 2}, config={"MESSAGE": "back"}, domains=("ph.test",))
        await h.rt.deploy(release, None, h.out)
        await h.rt.set_domains("phoenix", ["ph.test", "www.ph.test"])
        current = h.settings.data_dir / "apps/phoenix/current.json"
        assert stat.S_IMODE(current.stat().st_mode) == 0o600
        assert json.loads(current.read_text())["config"] == {"MESSAGE": "back"}
        old = h.alive("phoenix")
        await h.rt.stop()
        assert all(r._proc.returncode is not None for r in old)

        h.rt = LocalRuntime(h.settings, slugrunner=slugrunner(), timings=FAST)
        await h.rt.start()
        await h.rt.wait_restored()
        await until(lambda: len(h.rt.supervisor("phoenix").serving_ports()) == 2, what="both replicas ready")
        history = [line async for line in h.rt.logs("phoenix", 1000, False, "web")]
        assert sum(line.split(" ", 1)[1].startswith("web.") and "listening on" in line for line in history) >= 4
        assert (await h.get("phoenix"))[1].startswith("back from web.")
        assert (await h.get("phoenix", headers={"Host": "www.ph.test"}))[0] == 200
        assert h.rt.current("phoenix") == dataclasses.replace(release, domains=("ph.test", "www.ph.test"))


@async_test
async def test_destroy_app_stops_processes_and_forgets_it(tmp_path):
    async with harness(tmp_path) as h:
        await h.rt.create_app("gone")
        await h.rt.deploy(h.release("gone", 1), None, h.out)
        (replica,) = h.alive("gone")
        await h.rt.destroy_app("gone")
        assert replica.state == "stopped" and replica._proc.returncode is not None
        assert not (h.settings.data_dir / "apps/gone").exists()
        assert (await h.get("gone"))[0] == 404
        assert await h.ps("gone") == []


@async_test
async def test_start_stops_processes_left_behind_by_a_dead_server(tmp_path):
    async with harness(tmp_path, start=False) as h:
        app_dir = h.slug("left", 1, {"web": WEB})
        env = {"PATH": os.environ["PATH"], "DYNO": "web.1", "TERESA_APP_DIR": str(app_dir)}
        orphan = await asyncio.create_subprocess_exec("sleep", "60", env=env, start_new_session=True)
        bystander = await asyncio.create_subprocess_exec("sleep", "60", env={**env, "TERESA_APP_DIR": "/elsewhere"})
        await h.rt.start()
        assert await asyncio.wait_for(orphan.wait(), 10) == -signal.SIGTERM
        assert bystander.returncode is None
        bystander.kill()
        await bystander.wait()


def test_the_local_runtime_says_which_release_features_it_does_not_run() -> None:
    from controller.runtime.base import ignored_features
    from controller.runtime.kubernetes.capabilities import KUBERNETES_CAPABILITIES
    from controller.runtime.local.capabilities import local_capabilities
    from controller.spec import Autoscale, ReleaseSpec
    from core.config import Settings

    local = local_capabilities(Settings())
    plain = ReleaseSpec(app="a", version=1, build_id="b", slug_key="k", config={}, processes={"web": "x"},
                        formation={})
    assert ignored_features(plain, local) == ""
    full = ReleaseSpec(app="a", version=1, build_id="b", slug_key="k", config={},
                       processes={"web": "x", "cron-nightly": "y"}, formation={},
                       limits={"web": {"cpu": "1"}}, autoscale=Autoscale(1, 3, 70))
    assert ignored_features(full, local) == "cron process types (cron-nightly), CPU and memory limits, autoscaling"
    assert ignored_features(full, KUBERNETES_CAPABILITIES) == ""
