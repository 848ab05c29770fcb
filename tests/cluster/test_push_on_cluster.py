"""`git push` with the real git and ssh clients to a Teresa server on the Kubernetes runtime, on the real cluster,
authenticated as the ServiceAccount deploy/base binds (its RBAC objects rendered with `kubectl kustomize`)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest
import yaml

from core.config import StorageSettings
from tests.cluster.conftest import TIMINGS
from tests.cluster.kubecluster import REPO, KubeCluster
from tests.fixtures.teresa import Deploy, make_deploy

HELLO = REPO / "examples" / "python-hello"
CRASHING_PROCFILE = "web: python3 -c \"import sys; print('boom: no module named wsgi', flush=True); sys.exit(3)\"\n"


def server_env(kube_cluster: KubeCluster, kubeconfig: Path, **extra: str) -> dict[str, str]:
    """A Teresa server on the Kubernetes runtime of the test cluster, as deploy/base's ServiceAccount."""
    return dict(
        TERESA_RUNTIME="kubernetes", TERESAK8S_CONFIG_FILE=str(kubeconfig),
        TERESA_SLUGBUILDER_IMAGE=kube_cluster.stack_image, TERESA_SLUGRUNNER_IMAGE=kube_cluster.stack_image,
        TERESA_ROLLOUT_TIMEOUT="120", TERESA_BUILD_TIMEOUT="300", TERESAK8S_POLL_INTERVAL="0.5",
        TERESA_DEFAULT_REQUEST_CPU="10m", TERESA_DEFAULT_REQUEST_MEMORY="32Mi", TERESA_BUILD_LIMIT_MEMORY="512Mi",
    ) | extra


@pytest.fixture
def cluster_deploy(tmp_path: Path, kube_cluster: KubeCluster, pod_storage: StorageSettings,
                   teresa_kubeconfig: Path, ssh_keys: dict[str, Path]) -> Iterator[Deploy]:
    yield from make_deploy(tmp_path, pod_storage, ssh_keys, **server_env(kube_cluster, teresa_kubeconfig))


def web_pod_ips(kube_cluster: KubeCluster, app: str, release: str) -> list[str]:
    with kube_cluster.api_client() as client:
        pods = kubernetes.client.CoreV1Api(client).list_namespaced_pod(
            app, label_selector=f"teresa.io/process-type=web,teresa.io/release={release}").items
    return [p.status.pod_ip for p in pods if p.metadata.deletion_timestamp is None and p.status.pod_ip]


def get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.mark.timeout(600)
def test_git_push_of_python_hello_serves_and_a_crashing_push_is_rejected(
    cluster_deploy: Deploy, kube_cluster: KubeCluster,
) -> None:
    started = time.monotonic()
    files: dict[str, str | bytes] = {p.name: p.read_text() for p in HELLO.iterdir() if p.is_file()}
    cluster_deploy.git.commit(files)
    push = cluster_deploy.git.push("shop")
    assert push.returncode == 0, push.stderr
    assert "remote: -----> Python app detected" in push.stderr or "remote: -----> " in push.stderr, push.stderr
    assert "web: 1 of 1 updated, 1 available" in push.stderr and "Released v1" in push.stderr, push.stderr
    (ip,) = web_pod_ips(kube_cluster, "shop", "v1")
    status, body = get(f"http://{ip}:5000/")
    assert status == 200 and "python-hello" in body, body
    TIMINGS["push: python-hello served"] = time.monotonic() - started

    crash = time.monotonic()
    cluster_deploy.git.commit({"Procfile": CRASHING_PROCFILE})
    push = cluster_deploy.git.push("shop")
    assert push.returncode != 0
    assert "v2 did not become ready: web has a replica that exited" in push.stderr, push.stderr
    assert "boom: no module named wsgi" in push.stderr and "v1 is still running" in push.stderr, push.stderr
    assert web_pod_ips(kube_cluster, "shop", "v1") == [ip]
    assert get(f"http://{ip}:5000/")[0] == 200
    TIMINGS["push: crashing push rejected"] = time.monotonic() - crash
