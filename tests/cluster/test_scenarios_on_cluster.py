"""What a user does after the first push, with the real git and ssh clients, on the real cluster.

One Teresa server (as deploy/base's ServiceAccount) and one app pushed once serve
the whole module, in file order: rejected pushes (each reset locally afterwards),
a stalled rollout fixed by a push, one-off commands, formation and config
releases, `logs -f` across a rollout, PodSecurity, and last the app destroyed and
created again. Pushes cost ~15 s each; the scenarios share them where they can.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest

from controller.runtime.kubernetes.meta import BUILD_LABEL, RUN_LABEL
from core.config import StorageSettings
from tests.cluster.conftest import TIMINGS
from tests.cluster.kubecluster import KubeCluster
from tests.cluster.test_push_on_cluster import HELLO, get, server_env
from tests.fixtures.teresa import Deploy, make_deploy, wait_for

pytestmark = pytest.mark.timeout(300)
APP = "market"


@pytest.fixture(scope="module")
def market_server(kube_cluster: KubeCluster, pod_storage: StorageSettings, teresa_kubeconfig: Path,
                ssh_keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    yield from make_deploy(tmp_path_factory.mktemp("scenarios"), pod_storage, ssh_keys,
                           **server_env(kube_cluster, teresa_kubeconfig, TERESA_ROLLOUT_TIMEOUT="20",
                                      # two builds fit on the node while the previous build pod is removed
                                      TERESA_BUILD_LIMIT_CPU="500m"))


@pytest.fixture(scope="module")
def market(market_server: Deploy, kube_cluster: KubeCluster) -> Deploy:
    """python-hello (with its release phase) pushed and serving as v1."""
    started = time.monotonic()
    # Its own app: the session's other push tests use `shop`, in the same bucket and cluster.
    assert market_server.server.local("apps:create", APP, "--team", "web").status == 0
    market_server.git.commit({p.name: p.read_text() for p in HELLO.iterdir() if p.is_file()})
    push = market_server.git.push(APP)
    assert push.returncode == 0 and "Released v1" in push.stderr, push.stderr
    assert "release phase: nothing to migrate" in push.stderr, push.stderr
    TIMINGS["scenarios: first push"] = time.monotonic() - started
    return market_server


def core(kube_cluster: KubeCluster) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_cluster.api_client())


def web_pods(kube_cluster: KubeCluster, app: str = APP) -> dict[str, str]:
    """Live web pods (not being deleted): name -> pod IP ('' before it has one)."""
    pods = core(kube_cluster).list_namespaced_pod(app, label_selector="teresa.io/process-type=web").items
    return {p.metadata.name: p.status.pod_ip or "" for p in pods if p.metadata.deletion_timestamp is None}


def ready_web_pods(kube_cluster: KubeCluster, app: str = APP) -> dict[str, str]:
    pods = core(kube_cluster).list_namespaced_pod(app, label_selector="teresa.io/process-type=web").items
    return {p.metadata.name: p.status.pod_ip for p in pods if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])}


def ok(result: tuple[int, str, str]) -> str:
    status, out, err = result
    assert status == 0, err
    return out


def serves(kube_cluster: KubeCluster, text: str = "python-hello") -> dict[str, str]:
    pods = ready_web_pods(kube_cluster)
    assert pods
    for ip in pods.values():
        status, body = get(f"http://{ip}:5000/")
        assert status == 200 and text in body, body
    return pods


def rejected(market: Deploy, files: dict[str, str | bytes]) -> str:
    """Push a commit that must be rejected, then put the local branch back; the push's output."""
    market.git.commit(files, message="broken")
    push = market.git.push(APP)
    market.git.git("reset", "-q", "--hard", "HEAD~1")
    assert push.returncode != 0, push.stderr
    return push.stderr


@pytest.mark.parametrize(("files", "expected"), [
    pytest.param({"requirements.txt": "./vendor/hello-db\n"},
                 ["pip could not install the requirements", "The build failed with exit status"], id="build"),
    pytest.param({"Procfile": "web: python app.py\nrelease: python -c \"import sys; print('migrating users', "
                              "flush=True); sys.exit('error: relation users already exists')\"\n"},
                 # (the log interleaves stdout and stderr by the kubelet's timestamps: either may come first)
                 ["failed with exit status 1 (last output: ", "error: relation users already exists",
                  "migrating users", "was not released"], id="release-phase"),
    pytest.param({"teresa.yaml": (HELLO / "teresa.yaml").read_text().replace("path: /healthz\n    periodSeconds: 2",
                                                                             "path: /ready\n    periodSeconds: 2")},
                 ["did not become ready: web", "its readiness check (GET /ready) never passed",
                  '"GET /ready HTTP/1.1" 404', "v1 is still running"], id="never-ready"),
])
def test_a_failing_push_is_rejected_with_its_reason_and_the_previous_release_keeps_serving(
    market: Deploy, kube_cluster: KubeCluster, files: dict[str, str | bytes], expected: list[str],
) -> None:
    before = serves(kube_cluster)
    output = rejected(market, files)
    for text in expected:
        assert text in output, output
    assert "Released" not in output, output
    assert ready_web_pods(kube_cluster) == before
    serves(kube_cluster)
    info = ok(market.command(f"apps:info {APP}"))
    assert re.search(r"\bv1\b", info) and not re.search(r"\bv[2-9]", info), info


def test_a_stalled_rollout_left_behind_does_not_block_the_deploy_that_fixes_it(
    market: Deploy, kube_cluster: KubeCluster,
) -> None:
    # What a deploy interrupted mid-rollout leaves: a new ReplicaSet that never gets ready, past its deadline
    # (the shortest one allowed: longer than minReadySeconds).
    kube_cluster.kubectl("-n", APP, "patch", "deployment", "web", "--type=json", "-p",
                         '[{"op": "replace", "path": "/spec/progressDeadlineSeconds", "value": 6},'
                         ' {"op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/httpGet/path",'
                         ' "value": "/stalled"}]')

    def deadline_exceeded() -> bool:
        status = kubernetes.client.AppsV1Api(kube_cluster.api_client()).read_namespaced_deployment(
            "web", APP).status
        return any(c.reason == "ProgressDeadlineExceeded" for c in status.conditions or [])
    wait_for(deadline_exceeded, timeout=60, interval=0.5)

    market.git.commit({"CHANGES": "the fix\n"}, message="fix")
    push = market.git.push(APP)
    assert push.returncode == 0 and "Released v" in push.stderr, push.stderr
    pods = serves(kube_cluster)
    assert len(pods) == 1
    deployment = kubernetes.client.AppsV1Api(kube_cluster.api_client()).read_namespaced_deployment("web", APP)
    assert deployment.spec.template.spec.containers[0].readiness_probe.http_get.path == "/healthz"


def test_run_exits_with_the_commands_status_and_leaves_no_pod_or_build_secret(
    market: Deploy, kube_cluster: KubeCluster,
) -> None:
    result = market.ssh.run(f"run {APP} -- sh -c 'echo one-off here; exit 3'", key=market.key)
    assert result.returncode == 3, result.stderr
    assert b"one-off here" in result.stdout + result.stderr
    api = core(kube_cluster)
    assert api.list_namespaced_secret(APP, label_selector=BUILD_LABEL).items == []
    # Deleted when the command ended; the kubelet then removes it (the container has exited already).
    assert all(p.metadata.deletion_timestamp for p in api.list_namespaced_pod(APP, label_selector=RUN_LABEL).items)
    wait_for(lambda: not api.list_namespaced_pod(APP, label_selector=RUN_LABEL).items, timeout=30, interval=0.2)
    assert [p.metadata.name for p in api.list_namespaced_pod(APP).items
            if "teresa.io/process-type" not in (p.metadata.labels or {})] == []


def test_scale_and_domains_keep_the_pods_and_config_set_rolls_them_at_the_live_replica_count(
    market: Deploy, kube_cluster: KubeCluster,
) -> None:
    first = set(ready_web_pods(kube_cluster))
    ok(market.command(f"ps:scale {APP} web=2"))
    scaled = set(ready_web_pods(kube_cluster))
    assert len(scaled) == 2 and first < scaled
    ok(market.command(f"domains:add {APP} www.market.example"))
    assert set(web_pods(kube_cluster)) == scaled
    ok(market.command(f"autoscale:set --min 1 --max 4 --cpu 70 {APP}"))
    assert set(web_pods(kube_cluster)) == scaled
    # The HorizontalPodAutoscaler's move, made by hand: the cluster has no metrics to scale on.
    kube_cluster.kubectl("-n", APP, "scale", "deployment/web", "--replicas=1")
    wait_for(lambda: len(web_pods(kube_cluster)) == 1, timeout=60, interval=0.2)

    ok(market.command(f"config:set {APP} GREETING=Howdy"))
    rolled = serves(kube_cluster, "Howdy from")
    assert len(rolled) == 1 and not set(rolled) & scaled
    deployment = kubernetes.client.AppsV1Api(kube_cluster.api_client()).read_namespaced_deployment("web", APP)
    assert deployment.spec.replicas == 1


def api_404s_on_pods(kube_cluster: KubeCluster) -> float:
    """How many requests for pods (or their logs) the apiserver answered 404 so far."""
    metrics = kube_cluster.kubectl("get", "--raw", "/metrics").stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("apiserver_request_total{") and 'resource="pods"' in line and 'code="404"' in line)


def test_logs_follow_new_pods_across_a_rollout_and_stop_following_deleted_ones(
    market: Deploy, kube_cluster: KubeCluster,
) -> None:
    (old,) = ready_web_pods(kube_cluster)
    argv = ["ssh", *market.ssh.options(market.key), "git@127.0.0.1", f"logs -f -n 1 {APP}"]
    follower = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=market.ssh.env(None))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        ok(market.command(f"config:set {APP} GREETING=Hola"))
        (new, ip), = serves(kube_cluster, "Hola from").items()
        assert new != old
        wait_for(lambda: any(f"web.{new.rsplit('-', 1)[-1]} |" in line and '"GET / HTTP' in line for line in lines),
                 timeout=30, interval=0.2)
        wait_for(lambda: not core(kube_cluster).list_namespaced_pod(
            APP, field_selector=f"metadata.name={old}").items, timeout=60, interval=0.2)
        time.sleep(2)   # the old pod's follower notices it is gone (one 404) ...
        gone = api_404s_on_pods(kube_cluster)
        time.sleep(3)   # ... and then asks no more: a follower polling it would draw a 404 every 0.5 s
        assert api_404s_on_pods(kube_cluster) == gone
        with contextlib.suppress(urllib.error.HTTPError):  # python-hello answers 404, and logs the request
            get(f"http://{ip}:5000/followed")
        wait_for(lambda: any("/followed" in line for line in lines), timeout=15, interval=0.2)
        assert follower.poll() is None
    finally:
        follower.terminate()
        follower.wait(10)


def test_app_namespaces_enforce_restricted_and_no_pod_teresa_made_drew_a_warning(
    market: Deploy, kube_cluster: KubeCluster,
) -> None:
    labels = core(kube_cluster).read_namespace(APP).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    kube = market.server.runtime.kube  # type: ignore[attr-defined]
    # Every pod so far (builds, release phases, web, one-off) and every template were admitted without a warning.
    assert list(kube.warnings) == []
    # ... and a warning would have been seen: a template the restricted level refuses, created as a dry run.
    unrestricted = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "rogue", "namespace": APP},
                    "spec": {"selector": {"matchLabels": {"x": "y"}}, "template": {
                        "metadata": {"labels": {"x": "y"}},
                        "spec": {"containers": [{"name": "c", "image": kube_cluster.stack_image}]}}}}
    market.server.call(kube.request("POST", f"/apis/apps/v1/namespaces/{APP}/deployments", "create a rogue",
                                  body=unrestricted, query=[("dryRun", "All")]))
    assert any('violate PodSecurity "restricted' in warning for warning in kube.warnings), list(kube.warnings)
    kube.warnings.clear()


def test_foreign_namespaces_are_neither_adopted_nor_destroyed(market_server: Deploy, kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("create", "namespace", "legacy")
    status, _out, err = market_server.command("apps:create legacy --team web")
    assert status != 0
    assert err.strip() == ("error: The cluster already has a namespace legacy that Teresa did not create; "
                           "choose another app name, or ask the operator to remove that namespace."), err
    assert "legacy" not in ok(market_server.command("apps:list"))
    assert "managed-by" not in str(core(kube_cluster).read_namespace("legacy").metadata.labels)

    # An app whose namespace was replaced behind Teresa's back by one that is not the app's.
    ok(market_server.command("apps:create ghost --team web"))
    kube_cluster.kubectl("delete", "namespace", "ghost", "--wait=true")
    kube_cluster.kubectl("create", "namespace", "ghost")
    ok(market_server.command("apps:destroy --confirm ghost ghost"))
    assert core(kube_cluster).read_namespace("ghost").metadata.deletion_timestamp is None


def test_an_app_destroyed_then_created_again_at_once_takes_a_push(market: Deploy, kube_cluster: KubeCluster) -> None:
    ok(market.command(f"apps:destroy --confirm {APP} {APP}"))
    started = time.monotonic()
    ok(market.command(f"apps:create {APP} --team web"))
    TIMINGS["scenarios: apps:create waiting for the destroyed namespace"] = time.monotonic() - started
    push = market.git.push(APP)
    assert push.returncode == 0 and "Released v1" in push.stderr, push.stderr
    serves(kube_cluster, "Hello from")   # the config went with the app: the default greeting
