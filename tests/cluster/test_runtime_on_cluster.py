"""The Teresa KubernetesRuntime on the real cluster: build python-hello in a slugbuilder pod, roll it out, get
HTTP 200 at the pod IP; a crash-looping release and one whose pods cannot be created are rejected with the reason
while the previous release keeps serving.

The runtime is driven directly (as in tests/k8s/), not through git+ssh, and authenticates with the cluster's admin
kubeconfig (system:masters), not deploy/base's ServiceAccount. Storage is SeaweedFS listening on the node's address
on the pods' bridge, so the slugbuilder and the fetch-slug init containers reach it.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import time
import urllib.request
from pathlib import Path

import kubernetes.client
import pytest

from builder.job import BuildRequest
from controller.runtime.base import BuildFailed, RolloutFailed
from controller.runtime.kubernetes.runtime import KubernetesRuntime
from controller.spec import ReleaseSpec
from controller.teresa_yaml import parse
from core.config import Settings, StorageSettings
from core.storage import storage_for
from tests.cluster.conftest import TIMINGS
from tests.cluster.kubecluster import KubeCluster
from tests.k8s.runtime_helpers import Lines, tarball

HELLO = Path(__file__).resolve().parents[2] / "examples" / "python-hello"
CRASHING_PROCFILE = "web: python3 -c \"import sys; print('boom: no module named wsgi', flush=True); sys.exit(3)\"\n"


def settings_for(cluster: KubeCluster, storage: StorageSettings, tmp_path: Path) -> Settings:
    return Settings.from_env({
        "TERESA_RUNTIME": "kubernetes",
        "TERESAK8S_CONFIG_FILE": str(cluster.kubeconfig),
        "TERESA_DATA_DIR": str(tmp_path / "data"),
        **storage.to_env(),
        "TERESA_SLUGBUILDER_IMAGE": cluster.stack_image,
        "TERESA_SLUGRUNNER_IMAGE": cluster.stack_image,
        "TERESA_ROLLOUT_TIMEOUT": "120",
        "TERESA_BUILD_TIMEOUT": "300",
        "TERESA_BUILD_LIMIT_MEMORY": "512Mi",
        "TERESA_DEFAULT_REQUEST_CPU": "10m",
        "TERESA_DEFAULT_REQUEST_MEMORY": "32Mi",
    })


async def build(runtime: KubernetesRuntime, settings: Settings, app: str, build_id: str,
                files: dict[str, str]) -> tuple[str, Lines]:
    prefix = f"apps/{app}/builds/{build_id}"
    storage_for(settings.storage).put_stream(f"{prefix}/source.tgz", io.BytesIO(tarball(files)))
    request = BuildRequest(app=app, build_id=build_id, source_key=f"{prefix}/source.tgz",
                           slug_key=f"{prefix}/slug.tgz", cache_key=f"apps/{app}/cache/cache.tgz", config={},
                           timeout_seconds=300)
    out = Lines()
    try:
        await runtime.build(request, out)
    except BuildFailed as failed:
        raise AssertionError(f"{failed}\n{out.text}") from None
    return request.slug_key, out


def web_pods(core: kubernetes.client.CoreV1Api, app: str, release: int) -> list[kubernetes.client.V1Pod]:
    pods = core.list_namespaced_pod(app, label_selector="teresa.io/process-type=web").items
    return [p for p in pods if p.metadata.deletion_timestamp is None
            and (p.metadata.labels or {}).get("teresa.io/release") == f"v{release}"]


def get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.mark.timeout(600)
@pytest.mark.asyncio
async def test_python_hello_builds_serves_and_a_crashing_release_is_rejected(
    kube_cluster: KubeCluster, pod_storage: StorageSettings, tmp_path: Path,
) -> None:
    started = time.monotonic()
    app = f"hello-{secrets.token_hex(3)}"
    settings = settings_for(kube_cluster, pod_storage, tmp_path)
    runtime = KubernetesRuntime(settings, poll_interval=0.5)
    await runtime.start()
    admin = kube_cluster.api_client()
    core = kubernetes.client.CoreV1Api(admin)
    try:
        await runtime.create_app(app)
        files = {p.name: p.read_text() for p in HELLO.iterdir() if p.is_file()}
        slug, built = await build(runtime, settings, app, "b1", files)
        TIMINGS["runtime: python-hello build"] = time.monotonic() - started
        assert any("remote" not in line and line for line in built.lines), built.lines

        spec = parse(files["teresa.yaml"])
        v1 = ReleaseSpec(app=app, version=1, build_id="b1", slug_key=slug, config={"GREETING": "Howdy"},
                         processes={"web": "python app.py"}, formation={"web": 1}, spec=spec, reason="push")
        out = Lines()
        await runtime.deploy(v1, None, out)
        assert "       web: 1 of 1 updated, 1 available" in out.lines, out.lines
        (pod,) = await asyncio.to_thread(web_pods, core, app, 1)
        status, body = await asyncio.to_thread(get, f"http://{pod.status.pod_ip}:5000/")
        assert status == 200 and body.startswith("Howdy from web"), body
        TIMINGS["runtime: build + first rollout"] = time.monotonic() - started

        # A web process that exits at once: rejected as soon as it exits, with its own last line; v1 serves on.
        crash_started = time.monotonic()
        crash_slug, _ = await build(runtime, settings, app, "b2", {"Procfile": CRASHING_PROCFILE})
        v2 = ReleaseSpec(app=app, version=2, build_id="b2", slug_key=crash_slug, config={"GREETING": "Howdy"},
                         processes={"web": "python3 -c ..."}, formation={"web": 1}, spec=parse(""), reason="push")
        rollout_started = time.monotonic()
        with pytest.raises(RolloutFailed) as failed:
            await runtime.deploy(v2, v1, Lines())
        message = str(failed.value)
        assert message.startswith("v2 did not become ready: web has a replica that exited"), message
        assert "exit status 3" in message and "boom: no module named wsgi" in message, message
        assert message.endswith("v1 is still running."), message
        assert time.monotonic() - rollout_started < 60  # not the rollout timeout (120 s)
        TIMINGS["runtime: crashing release rejected"] = time.monotonic() - crash_started
        status, body = await asyncio.to_thread(get, f"http://{pod.status.pod_ip}:5000/")
        assert status == 200 and body.startswith("Howdy from web")
        assert [p.metadata.name for p in await asyncio.to_thread(web_pods, core, app, 1)] == [pod.metadata.name]

        # An init container that fails (the slug is not in storage): its own log is shown, not the main one's.
        v3 = ReleaseSpec(app=app, version=3, build_id="b3", slug_key=f"apps/{app}/builds/b3/slug.tgz",
                         config={"GREETING": "Howdy"}, processes={"web": "python app.py"}, formation={"web": 1},
                         spec=spec, reason="push")
        with pytest.raises(RolloutFailed) as failed:
            await runtime.deploy(v3, v1, Lines())
        message = str(failed.value)
        assert "web has a replica that exited (pod web-" in message and "container fetch-slug)" in message, message
        assert "its init container fetch-slug" in message and "last output: " in message, message
        assert message.endswith("v1 is still running."), message

        # Pods the API refuses to create (a quota): the ReplicaFailure condition's message, at once.
        await asyncio.to_thread(core.create_namespaced_resource_quota, app, {
            "metadata": {"name": "no-more-pods"}, "spec": {"hard": {"pods": "1"}}})
        for _ in range(60):  # until the quota controller has counted the pods (admission relies on it)
            quota = await asyncio.to_thread(core.read_namespaced_resource_quota, "no-more-pods", app)
            if (quota.status.used or {}).get("pods") == "1":
                break
            await asyncio.sleep(0.5)
        v4 = ReleaseSpec(app=app, version=4, build_id="b1", slug_key=slug, config={"GREETING": "Bye"},
                         processes={"web": "python app.py"}, formation={"web": 1}, spec=spec, reason="config")
        with pytest.raises(RolloutFailed) as failed:
            await runtime.deploy(v4, v1, Lines())
        message = str(failed.value)
        assert message.startswith("v4 did not become ready: web cannot create its pods ("), message
        assert "exceeded quota: no-more-pods" in message and message.endswith("v1 is still running."), message
        status, body = await asyncio.to_thread(get, f"http://{pod.status.pod_ip}:5000/")
        assert status == 200 and body.startswith("Howdy from web")
    finally:
        await runtime.destroy_app(app)
        await runtime.stop()
        admin.close()
    TIMINGS["runtime test"] = time.monotonic() - started
