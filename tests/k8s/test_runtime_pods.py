"""KubernetesRuntime one-off pods against kmock and the kubelet fixture: builds, the release phase, `run`.

The slugbuilder and slug runner are the real ones, run by the kubelet fixture
with each pod's environment; their output reaches the runtime over the pod
log endpoint as they print it.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from builder.slugmeta import slug_digest
from controller.runtime import make_runtime
from controller.runtime.base import BuildFailed, ReleasePhaseFailed, RuntimeFailure
from controller.runtime.kubernetes.runtime import KubernetesRuntime
from core.storage import storage_for
from tests.fixtures.kube import KubeAPI
from tests.fixtures.kubelet import Kubelet
from tests.fixtures.teresa import BytesInput, MemoryOutput
from tests.k8s.runtime_helpers import (
    APP, SLUGBUILDER_IMAGE, Lines, build_request, eventually, release, runtime_settings,
)

PROCFILE_APP = {
    "Procfile": "web: python3 -m http.server $PORT\n"
                "release: echo migrating $GREETING; echo 'no table users' >&2; exit ${RELEASE_EXIT:-0}\n",
    "hello.txt": "hi\n",
}


def no_pods_left(kube_api: KubeAPI):
    return lambda: kube_api.names("v1/pods", APP) == []


def only_storage_secret(kube_api: KubeAPI):
    """No Secret but the releases' config and slug URLs: the build's is gone, and no storage Secret exists."""
    return lambda: [n for n in kube_api.names("v1/secrets", APP) if not n.startswith(("config-", "slug-"))] == []


async def built_slug(runtime: KubernetesRuntime, build_id: str = "b1") -> str:
    request = build_request(runtime.settings, build_id, PROCFILE_APP)
    await runtime.build(request, Lines())
    return request.slug_key


@pytest.mark.asyncio
async def test_build_lines_arrive_while_the_pod_runs(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                     kubelet: Kubelet, tmp_path: Path) -> None:
    go_ahead = tmp_path / "go-ahead"
    request = build_request(runtime.settings, "b1", {"README": "x"}, "wait_for_file",
                            {"GO_AHEAD_FILE": str(go_ahead)})
    out = Lines()
    build = asyncio.create_task(runtime.build(request, out))
    await out.wait_for("waiting for the go-ahead")
    # The pod is still running: the line came over the followed log, not at the end.
    assert not build.done()
    assert kube_api.names("v1/pods", APP) == ["slugbuilder-b1"]
    assert not any("got the go-ahead" in line for line in out.lines)
    go_ahead.touch()
    await build
    assert any("got the go-ahead" in line for line in out.lines)
    assert storage_for(runtime.settings.storage).exists(request.slug_key)
    await eventually(no_pods_left(kube_api), what="the build pod's deletion")
    await eventually(only_storage_secret(kube_api), what="the build secret's deletion")
    assert kubelet.seen_pods == ["slugbuilder-b1"]


def live_deployment(kube_api: KubeAPI) -> dict:
    found = kube_api.stored("apps/v1/deployments", APP, "web")
    return {"spec": found["spec"], "generation": found["metadata"]["generation"]}


@pytest.mark.asyncio
async def test_a_failed_build_names_its_exit_status(runtime: KubernetesRuntime, kube_api: KubeAPI) -> None:
    await runtime.deploy(release(1), None, Lines())
    before = live_deployment(kube_api)
    request = build_request(runtime.settings, "b2", {"README": "x"}, "no_detect")
    out = Lines()
    with pytest.raises(BuildFailed, match=r"^The build failed with exit status [1-9]\d*; see its output above\.$"):
        await runtime.build(request, out)
    assert live_deployment(kube_api) == before
    assert "Build failed: The buildpack" in out.text and "has no bin/detect" in out.text
    await eventually(lambda: not any(n.startswith("slugbuilder-") for n in kube_api.names("v1/pods", APP)),
                     what="the build pod's deletion")
    await eventually(only_storage_secret(kube_api), what="the build secret's deletion")


@pytest.mark.asyncio
async def test_a_cancelled_build_still_deletes_its_pod(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                       tmp_path: Path) -> None:
    request = build_request(runtime.settings, "b1", {"README": "x"}, "wait_for_file",
                            {"GO_AHEAD_FILE": str(tmp_path / "never")})
    out = Lines()
    build = asyncio.create_task(runtime.build(request, out))
    await out.wait_for("waiting for the go-ahead")
    build.cancel()  # the SSH client went away
    with pytest.raises(asyncio.CancelledError):
        await build
    await eventually(no_pods_left(kube_api), what="the cancelled build pod's deletion")
    await eventually(only_storage_secret(kube_api), what="the build secret's deletion")


@pytest.mark.asyncio
async def test_a_build_that_runs_too_long_is_stopped(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                     kubelet: Kubelet, tmp_path: Path) -> None:
    # A stand-in builder that ignores its own TERESA_BUILD_TIMEOUT: the runtime's deadline must stop it.
    kubelet.commands["teresa-slugbuilder"] = ["sh", "-c", "echo started; sleep 30"]
    request = build_request(runtime.settings, "b1", {"README": "x"}, timeout=1)
    out = Lines()
    with pytest.raises(BuildFailed, match=r"^The build took longer than 1 seconds and was stopped; "):
        await runtime.build(request, out)
    assert out.lines == ["started"]
    await eventually(no_pods_left(kube_api), what="the timed-out build pod's deletion")


@pytest.mark.asyncio
async def test_a_dropped_log_stream_resumes_without_losing_or_repeating_lines(
        runtime: KubernetesRuntime, kube_api: KubeAPI, kubelet: Kubelet) -> None:
    script = "for i in $(seq 1 40); do echo line $i; [ $i = 5 ] && sleep 0.3; done; sleep 0.2; echo done"
    kubelet.commands["teresa-slugbuilder"] = ["sh", "-c", script]
    kubelet.drop_log_stream("slugbuilder-", after_lines=3)
    out = Lines()
    await runtime.build(build_request(runtime.settings, "b1", {"README": "x"}), out)
    assert out.lines == [f"line {i}" for i in range(1, 41)] + ["done"]
    assert kubelet.drops == 1


@pytest.mark.asyncio
async def test_the_release_phase_runs_the_release_command_of_the_slug(runtime: KubernetesRuntime,
                                                                      kube_api: KubeAPI) -> None:
    slug_key = await built_slug(runtime)
    spec = release(2, slug_key, processes={"web": "x", "release": "y"})
    out = Lines()
    await runtime.release_phase(spec, out)
    assert "migrating hello" in out.lines
    await eventually(no_pods_left(kube_api), what="the release pod's deletion")


@pytest.mark.asyncio
async def test_a_failed_release_phase_names_the_exit_status_and_last_lines(runtime: KubernetesRuntime,
                                                                           kube_api: KubeAPI) -> None:
    slug_key = await built_slug(runtime)
    await runtime.deploy(release(1, slug_key), None, Lines())
    before = live_deployment(kube_api)
    spec = release(2, slug_key, processes={"web": "x", "release": "y"},
                   config={"GREETING": "hello", "RELEASE_EXIT": "3"})
    with pytest.raises(ReleasePhaseFailed, match=r"^The release command of v2 failed with exit status 3 "
                                                 r"\(last output: migrating hello / no table users\); "
                                                 r"v2 was not released\.$"):
        await runtime.release_phase(spec, Lines())
    await eventually(lambda: "release-v2" not in kube_api.names("v1/pods", APP), what="the release pod's deletion")
    assert live_deployment(kube_api) == before


@pytest.mark.asyncio
async def test_a_release_phase_whose_slug_is_missing_fails_clearly(runtime: KubernetesRuntime,
                                                                   kube_api: KubeAPI) -> None:
    spec = release(2, "apps/shop/builds/nope/slug.tgz", processes={"web": "x", "release": "y"})
    with pytest.raises(ReleasePhaseFailed, match=r"could not run: its fetch-slug step failed with exit status "
                                                 r"[1-9]\d*; last output: .*v2 was not released"):
        await runtime.release_phase(spec, Lines())
    await eventually(no_pods_left(kube_api), what="the release pod's deletion")


@pytest.mark.asyncio
async def test_a_slug_changed_in_storage_since_its_build_does_not_start(runtime: KubernetesRuntime,
                                                                       kube_api: KubeAPI) -> None:
    slug_key = await built_slug(runtime)
    storage = storage_for(runtime.settings.storage)
    spec = release(2, slug_key, processes={"web": "x", "release": "y"}, slug_digest=slug_digest(storage, slug_key))
    storage.put_stream(slug_key, io.BytesIO(b"written again through the build's PUT grant"))
    with pytest.raises(ReleasePhaseFailed, match=r"its fetch-slug step failed with exit status 1; last output: "
                                                 r"teresa-slugrunner: The slug was changed in storage since its build"):
        await runtime.release_phase(spec, Lines())
    await eventually(no_pods_left(kube_api), what="the release pod's deletion")


@pytest.mark.asyncio
async def test_run_streams_output_and_returns_the_exit_status(runtime: KubernetesRuntime, kube_api: KubeAPI) -> None:
    slug_key = await built_slug(runtime)
    out = MemoryOutput()
    status = await runtime.run(release(2, slug_key), ["sh", "-c", "cat hello.txt; echo $GREETING; exit 7"],
                               BytesInput(), out)
    assert status == 7
    assert out.text == "hi\nhello\n"
    await eventually(no_pods_left(kube_api), what="the run pod's deletion")


@pytest.mark.asyncio
async def test_run_without_a_command_is_one_sentence(runtime: KubernetesRuntime) -> None:
    with pytest.raises(RuntimeFailure, match=r"^The command could not run: run needs a command after --"):
        await runtime.run(release(2), [], BytesInput(), MemoryOutput())


def test_make_runtime_picks_kubernetes_from_the_settings(kube_api: KubeAPI, tmp_path: Path) -> None:
    s3 = {"TERESAFILESTORAGE_TYPE": "s3", "TERESAFILESTORAGE_AWS_BUCKET": "slugs"}
    assert isinstance(make_runtime(runtime_settings(kube_api, tmp_path, **s3)), KubernetesRuntime)
    local = runtime_settings(kube_api, tmp_path, TERESA_RUNTIME="local")
    assert type(make_runtime(local)).__name__ == "LocalRuntime"
