"""The Kubernetes runtime's pod rules on the real cluster, as deploy/base's ServiceAccount (so every call passes
RBAC): the rollout timeout is a progress deadline, a PodDisruptionBudget follows web's replicas, apps get SIGTERM
through `teresa-slugrunner init`, a pod that cannot be pulled or scheduled gets a grace period, `run` pods stop at their deadline,
and at start the runtime removes what a crashed replica left and renews the slug URLs.

Slugs are made here (a tarball with a Procfile, as the slugbuilder leaves them): no build is needed to show any
of this, and the stack image's python3 runs the app.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest

from builder.job import BuildRequest
from builder.slugrunner import SLUG_URL
from controller.runtime.base import RolloutFailed, RuntimeFailure
from controller.runtime.kubernetes import manifests
from controller.runtime.kubernetes.runtime import KubernetesRuntime
from controller.spec import ReleaseSpec
from controller.teresa_yaml import parse
from core.config import Settings, StorageSettings
from core.storage import storage_for
from tests.cluster.conftest import TIMINGS
from tests.cluster.kubecluster import KubeCluster
from tests.fixtures.teresa import BytesInput, MemoryOutput
from tests.k8s.runtime_helpers import Lines, tarball

APP_PY = """\
import http.server, os, signal, sys, time

def stop(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
time.sleep(float(os.environ.get("START_DELAY", "0")))

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

print("listening", flush=True)
http.server.HTTPServer(("", int(os.environ["PORT"])), Hello).serve_forever()
"""
# Not a simple command: bash stays the app's parent, so only a signal sent to the process group reaches python,
# and bash, killed by it at once, must not end the container before python has run its handler.
PROCFILE = 'web: python3 app.py; echo "web exited"\n'
TERESA_YAML = "rollingUpdate:\n  maxSurge: 1\n  maxUnavailable: 0\nlifecycle:\n  preStop:\n    drainTimeoutSeconds: 0\n"
ROLLOUT_TIMEOUT = 24
START_DELAY = 8
GRACE = 4
RUN_TIMEOUT = 8
ME, OTHER_LIVE, OTHER_GONE = "teresa-me", "teresa-live", "teresa-gone"
PULL_SECRET = "regcred"


def settings_for(cluster: KubeCluster, storage: StorageSettings, kubeconfig: Path, tmp_path: Path,
                 **extra: str) -> Settings:
    return Settings.from_env({
        "TERESA_RUNTIME": "kubernetes", "TERESAK8S_CONFIG_FILE": str(kubeconfig),
        "TERESA_DATA_DIR": str(tmp_path / "data"), **storage.to_env(),
        "TERESA_SLUGBUILDER_IMAGE": cluster.stack_image, "TERESA_IMAGE_PULL_POLICY": "IfNotPresent",
        "TERESA_IMAGE_PULL_SECRETS": PULL_SECRET, "TERESA_REPLICA_NAME": ME,
        "TERESA_ROLLOUT_TIMEOUT": str(ROLLOUT_TIMEOUT), "TERESA_POD_START_GRACE": str(GRACE),
        "TERESA_RUN_TIMEOUT": str(RUN_TIMEOUT), "TERESA_APP_QUOTA_CPU": "200",
        "TERESA_DEFAULT_REQUEST_CPU": "10m", "TERESA_DEFAULT_REQUEST_MEMORY": "32Mi",
        **extra,
    })


@dataclasses.dataclass
class Scene:
    cluster: KubeCluster
    settings: Settings
    app: str
    slug: str
    core: kubernetes.client.CoreV1Api

    def release(self, version: int, formation: int, config: dict[str, str] | None = None, **extra: object) -> ReleaseSpec:
        return ReleaseSpec(app=self.app, version=version, build_id="b1", slug_key=self.slug, config=config or {},
                           processes={"web": "python3 app.py"}, formation={"web": formation}, spec=parse(TERESA_YAML),
                           reason="push", **extra)  # type: ignore[arg-type]

    def run(self, coroutine_of: object, settings: Settings | None = None) -> object:
        async def body() -> object:
            runtime = KubernetesRuntime(settings or self.settings, poll_interval=0.5)
            await runtime.start()
            try:
                return await coroutine_of(runtime)  # type: ignore[operator]
            finally:
                await runtime.stop()
        return asyncio.run(body())

    def web_pods(self) -> list[kubernetes.client.V1Pod]:
        pods = self.core.list_namespaced_pod(self.app, label_selector="teresa.io/process-type=web").items
        return [p for p in pods if p.metadata.deletion_timestamp is None]


def restricted_pod(name: str, image: str) -> dict[str, object]:
    """A pod standing in for a Teresa server replica in Teresa's (restricted) namespace."""
    return {"metadata": {"name": name}, "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "pause", "image": image, "imagePullPolicy": "IfNotPresent", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}


@pytest.fixture(scope="module")
def scene(kube_cluster: KubeCluster, pod_storage: StorageSettings, teresa_kubeconfig: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """An app created as the ServiceAccount, its slug in storage, replica pods `teresa-me` and `teresa-live`
    in Teresa's namespace, and the image pull Secret there."""
    admin = kube_cluster.api_client()
    core = kubernetes.client.CoreV1Api(admin)
    core.create_namespaced_secret("teresa", {"metadata": {"name": PULL_SECRET}, "type": "kubernetes.io/dockerconfigjson",
                                             "stringData": {".dockerconfigjson": '{"auths": {}}'}})
    for name in (ME, OTHER_LIVE):
        core.create_namespaced_pod("teresa", restricted_pod(name, kube_cluster.pause_image))
    settings = settings_for(kube_cluster, pod_storage, teresa_kubeconfig, tmp_path_factory.mktemp("pods"))
    app = f"pods-{secrets.token_hex(3)}"
    slug = f"apps/{app}/builds/b1/slug.tgz"
    storage_for(settings.storage).put_stream(slug, io.BytesIO(tarball({"Procfile": PROCFILE, "app.py": APP_PY})))
    made = Scene(kube_cluster, settings, app, slug, core)
    made.run(lambda runtime: runtime.create_app(app))
    try:
        yield made
    finally:
        made.run(lambda runtime: runtime.destroy_app(app))
        for name in (ME, OTHER_LIVE):
            core.delete_namespaced_pod(name, "teresa", grace_period_seconds=0)
        core.delete_namespaced_secret(PULL_SECRET, "teresa")
        admin.close()


def test_a_slow_rollout_that_progresses_outlives_the_rollout_timeout_and_web_gets_a_disruption_budget(
        scene: Scene) -> None:
    policy = kubernetes.client.PolicyV1Api(scene.core.api_client)
    scene.run(lambda runtime: runtime.deploy(scene.release(1, 2), None, Lines()))
    (budget,) = policy.list_namespaced_pod_disruption_budget(scene.app).items
    assert budget.spec.max_unavailable == 1 and budget.spec.selector.match_labels["teresa.io/process-type"] == "web"
    assert budget.status.expected_pods == 2 or budget.status.expected_pods is None  # counted by the controller

    # Each new pod takes START_DELAY + 5 (minReadySeconds) seconds and more, one after the other (surge 1,
    # unavailable 0): longer in all than the rollout timeout, never that long without progress (a pod created,
    # ready or available).
    started = time.monotonic()
    out = Lines()
    slow = scene.release(2, 2, {"START_DELAY": str(START_DELAY)})
    try:
        scene.run(lambda runtime: runtime.deploy(slow, scene.release(1, 2), out))
    except RolloutFailed as failed:
        raise AssertionError(f"{failed} after {time.monotonic() - started:.1f}s: {out.lines}") from None
    took = time.monotonic() - started
    TIMINGS["pods: slow rollout"] = took
    assert took > ROLLOUT_TIMEOUT, f"{took:.1f}s: not slow enough to show anything"
    assert "       web: 2 of 2 updated, 2 available" in out.lines, out.lines
    pods = scene.web_pods()
    assert {p.metadata.labels["teresa.io/release"] for p in pods} == {"v2"}
    assert all(p.spec.image_pull_secrets[0].name == PULL_SECRET for p in pods)
    assert scene.core.read_namespaced_secret(PULL_SECRET, scene.app).type == "kubernetes.io/dockerconfigjson"

    # Scaled to one replica: no budget (it would block every node drain).
    scene.run(lambda runtime: runtime.deploy(scene.release(3, 1, {"START_DELAY": str(START_DELAY)}), slow, Lines()))
    assert policy.list_namespaced_pod_disruption_budget(scene.app).items == []


def test_the_app_gets_sigterm_when_its_pod_is_deleted(scene: Scene) -> None:
    scene.run(lambda runtime: runtime.deploy(scene.release(4, 1), None, Lines()))
    (pod,) = [p for p in scene.web_pods() if p.metadata.labels["teresa.io/release"] == "v4"]
    assert pod.spec.containers[0].command[:3] == ["teresa-slugrunner", "init", "--"]
    lines: list[str] = []
    stream = scene.core.read_namespaced_pod_log(pod.metadata.name, scene.app, container="web", follow=True,
                                                _preload_content=False)
    reader = threading.Thread(target=lambda: lines.extend(line.decode() for line in stream), daemon=True)
    reader.start()
    started = time.monotonic()
    scene.core.delete_namespaced_pod(pod.metadata.name, scene.app)  # its grace period: 30 seconds
    reader.join(timeout=25)
    assert not reader.is_alive(), f"the app did not stop on SIGTERM: {lines}"
    assert any("got SIGTERM" in line for line in "".join(lines).splitlines()), lines
    assert time.monotonic() - started < 20


def test_an_image_that_cannot_be_pulled_fails_after_the_grace_period_and_v4_keeps_serving(
        scene: Scene, tmp_path: Path) -> None:
    broken = dataclasses.replace(scene.settings, kubernetes=dataclasses.replace(
        scene.settings.kubernetes, slugrunner_image="teresa.local/missing:1"))
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as failed:
        scene.run(lambda runtime: runtime.deploy(scene.release(5, 1, {"V": "5"}), scene.release(4, 1), Lines()),
                  settings=broken)
    message = str(failed.value)
    assert message.startswith("v5 did not become ready: web cannot start its pods (pod web-"), message
    assert "the image teresa.local/missing:1 could not be pulled (" in message, message
    assert message.endswith(f"for {GRACE} seconds (TERESA_POD_START_GRACE)); v4 is still running."), message
    assert GRACE <= time.monotonic() - started < GRACE + 30
    deadline = time.monotonic() + 30  # the undo scales the v5 ReplicaSet down; its pod goes soon after
    while {p.metadata.labels["teresa.io/release"] for p in scene.web_pods()} != {"v4"}:
        assert time.monotonic() < deadline, [p.metadata.name for p in scene.web_pods()]
        time.sleep(0.5)


def test_a_run_pod_no_node_can_take_fails_after_the_grace_period(scene: Scene) -> None:
    huge = scene.release(4, 1, limits={"run": {"cpu": "100"}})
    started = time.monotonic()
    with pytest.raises(RuntimeFailure) as failed:
        scene.run(lambda runtime: runtime.run(huge, ["true"], BytesInput(), MemoryOutput()))
    message = str(failed.value)
    assert message.startswith("The command could not run: no node can run it (0/1 nodes are available"), message
    assert "Insufficient cpu" in message and message.endswith(f"for {GRACE} seconds (TERESA_POD_START_GRACE)."), message
    assert time.monotonic() - started >= GRACE


def test_a_run_pod_stops_at_its_deadline_and_exit_codes_pass_through_init(scene: Scene) -> None:
    out = MemoryOutput()
    status = scene.run(lambda runtime: runtime.run(scene.release(4, 1), ["sh", "-c", "echo hi; exit 3"],
                                                   BytesInput(), out))
    assert status == 3 and "hi" in out.text
    started = time.monotonic()
    with pytest.raises(RuntimeFailure) as failed:
        scene.run(lambda runtime: runtime.run(scene.release(4, 1), ["sleep", "600"], BytesInput(), MemoryOutput()))
    assert str(failed.value) == (f"The command ran longer than {RUN_TIMEOUT} seconds and was stopped; ask the "
                                 "operator to raise TERESA_RUN_TIMEOUT.")
    assert time.monotonic() - started < RUN_TIMEOUT + 30
    assert scene.core.list_namespaced_pod(scene.app, label_selector="teresa.io/run").items == []


def _orphans(scene: Scene) -> dict[str, str]:
    """Run pods and build Secrets as replicas ME, OTHER_LIVE and OTHER_GONE left them: name -> kind."""
    made: dict[str, str] = {}
    for owner in (ME, OTHER_LIVE, OTHER_GONE):
        settings = dataclasses.replace(scene.settings, replica_name=owner)
        pod = manifests.run_pod(settings, scene.release(4, 1), ["sleep", "600"], name=f"run-{owner}")
        request = BuildRequest(app=scene.app, build_id=f"b-{owner}", source_key="s", slug_key="s", cache_key="c",
                               config={}, timeout_seconds=60)
        secret = manifests.build_secret(settings, request)
        made[pod["metadata"]["name"]], made[secret["metadata"]["name"]] = "Pod", "Secret"

        async def create(runtime: KubernetesRuntime, objects: list[object] = [secret, pod]) -> None:
            for obj in objects:
                await runtime.kube.create(obj)  # type: ignore[arg-type]
        scene.run(create)
    return made


def test_at_start_orphans_of_gone_replicas_are_removed_and_slug_urls_renewed(scene: Scene) -> None:
    made = _orphans(scene)
    web_before = sorted(p.metadata.name for p in scene.web_pods())
    apps = kubernetes.client.AppsV1Api(scene.core.api_client)
    generation = apps.read_namespaced_deployment("web", scene.app).metadata.generation
    (slug_secret,) = [s for s in scene.core.list_namespaced_secret(scene.app).items if s.metadata.name == "slug-b1"]
    stale = base64.b64encode(b"http://x.invalid/").decode()
    scene.core.patch_namespaced_secret("slug-b1", scene.app, {"data": {SLUG_URL: stale}})

    scene.run(lambda runtime: runtime.reconcile({}))

    pods = {p.metadata.name for p in scene.core.list_namespaced_pod(scene.app).items if not p.metadata.deletion_timestamp}
    secrets_left = {s.metadata.name for s in scene.core.list_namespaced_secret(scene.app).items}
    left = {name for name, kind in made.items() if name in (pods if kind == "Pod" else secrets_left)}
    assert left == {f"run-{OTHER_LIVE}", f"slugbuilder-b-{OTHER_LIVE}"}, left
    assert sorted(p.metadata.name for p in scene.web_pods()) == web_before
    assert apps.read_namespaced_deployment("web", scene.app).metadata.generation == generation  # nothing rolled
    renewed = base64.b64decode(scene.core.read_namespaced_secret("slug-b1", scene.app).data[SLUG_URL]).decode()
    assert renewed.startswith(scene.settings.storage.aws_endpoint) and slug_secret.metadata.annotations
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(renewed, timeout=10) as response:
        assert response.status == 200 and response.read()[:2] == b"\x1f\x8b"  # the slug, gzipped


def test_domains_tls_and_the_cluster_issuer_reach_the_live_ingress(scene: Scene) -> None:
    networking = kubernetes.client.NetworkingV1Api(scene.core.api_client)
    issuing = dataclasses.replace(scene.settings, kubernetes=dataclasses.replace(
        scene.settings.kubernetes, cluster_issuer="letsencrypt"))
    scene.run(lambda runtime: runtime.set_domains(scene.app, ["www.pods.test"]), settings=issuing)
    live = networking.read_namespaced_ingress("web", scene.app)
    assert live.metadata.annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert [(t.hosts, t.secret_name) for t in live.spec.tls] == [
        ([f"{scene.app}.localhost", "www.pods.test"], f"{scene.app}-tls")]

    scene.run(lambda runtime: runtime.set_domains(scene.app, ["www.pods.test"], tls_secret="pods-test-tls"),
              settings=issuing)
    live = networking.read_namespaced_ingress("web", scene.app)
    assert "cert-manager.io/cluster-issuer" not in (live.metadata.annotations or {})  # apply took it away
    assert [t.secret_name for t in live.spec.tls] == ["pods-test-tls"]
