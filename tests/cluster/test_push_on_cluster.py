"""`git push` with the real git and ssh clients to a Teresa server on the Kubernetes runtime, on the real cluster,
authenticated as the ServiceAccount deploy/base binds (its RBAC objects rendered with `kubectl kustomize`)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pexpect
import pytest

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


@pytest.fixture(scope="module")
def cluster_deploy(tmp_path_factory: pytest.TempPathFactory, kube_cluster: KubeCluster, pod_storage: StorageSettings,
                   teresa_kubeconfig: Path, ssh_keys: dict[str, Path]) -> Iterator[Deploy]:
    """One Teresa server on the cluster for the module; its tests run in order and share the pushed app."""
    yield from make_deploy(tmp_path_factory.mktemp("cluster-deploy"), pod_storage, ssh_keys,
                           **server_env(kube_cluster, teresa_kubeconfig))


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


def pushed(deploy: Deploy) -> None:
    """python-hello released (by the test above, or now when this test runs alone)."""
    status, out, err = deploy.command("releases shop --json")
    assert status == 0, err
    if not json.loads(out):
        deploy.git.commit({p.name: p.read_text() for p in HELLO.iterdir() if p.is_file()})
        push = deploy.git.push("shop")
        assert push.returncode == 0, push.stderr


@pytest.mark.timeout(300)
def test_ssh_t_run_attaches_a_terminal_to_the_pod_and_exits_with_the_shell_status(cluster_deploy: Deploy) -> None:
    pushed(cluster_deploy)
    started = time.monotonic()
    shell = pexpect.spawn("ssh", [*cluster_deploy.ssh.options(cluster_deploy.key), "-t", "git@127.0.0.1",
                                  "run shop -- sh"], env=cluster_deploy.ssh.env(None), timeout=120, encoding="utf-8")
    try:
        # typed before the pod has started: it waits in the SSH channel until Teresa attaches
        shell.sendline('tty; echo "answer=$((6 * 7)) term=$TERM"')
        shell.expect(r"/dev/pts/\d+\r\n")  # a terminal in the pod
        shell.expect(r"answer=42 term=\S+\r\n")
        shell.sendline("exit 5")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert shell.exitstatus == 5, shell.before
    # a command done before Teresa could attach: its output comes from the log instead
    quick = subprocess.run(["ssh", *cluster_deploy.ssh.options(cluster_deploy.key), "-tt", "git@127.0.0.1",
                            "run shop -- echo done quickly"], capture_output=True, timeout=180,
                           env=cluster_deploy.ssh.env(None))
    assert (quick.returncode, quick.stdout.replace(b"\r", b"")) == (0, b"done quickly\n"), (quick.stdout, quick.stderr)
    TIMINGS["run: ssh -t sh through an attached pod"] = time.monotonic() - started


@pytest.mark.timeout(300)
def test_run_forwards_piped_stdin_to_the_pod(cluster_deploy: Deploy) -> None:
    pushed(cluster_deploy)
    data = b"".join(b"line %d of the piped input\n" % n for n in range(2000))  # several WebSocket messages
    result = cluster_deploy.ssh.run("run shop -- cat", key=cluster_deploy.key, stdin=data, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    status = cluster_deploy.ssh.run("run shop -- sh -c 'read word; echo \"got $word\"; exit 3'",
                                    key=cluster_deploy.key, stdin=b"hello\n", timeout=180)
    assert (status.returncode, status.stdout) == (3, b"got hello\n"), status.stderr


@pytest.mark.timeout(300)
def test_run_without_the_attach_permission_is_one_sentence_and_its_pod_is_deleted(
    cluster_deploy: Deploy, kube_cluster: KubeCluster,
) -> None:
    pushed(cluster_deploy)
    role = json.loads(kube_cluster.kubectl("get", "clusterrole", "teresa", "-o", "json").stdout)
    role["metadata"] = {"name": "teresa", "labels": role["metadata"].get("labels", {})}
    narrowed = {**role, "rules": [r for r in role["rules"] if "pods/attach" not in r["resources"]]}
    kube_cluster.kubectl("replace", "-f", "-", input=json.dumps(narrowed))
    try:
        result = cluster_deploy.ssh.run("run shop -- cat", key=cluster_deploy.key, stdin=b"never read\n", timeout=180)
    finally:
        kube_cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
    assert result.returncode != 0 and result.stdout == b""
    assert result.stderr.decode().strip() == (
        "error: The command could not run: Kubernetes refused to attach to its pod (HTTP 403); "
        "the operator must grant Teresa get and create on pods/attach."
    )
    pods = json.loads(kube_cluster.kubectl("get", "pods", "-n", "shop", "-l", "teresa.io/run", "-o", "json").stdout)
    assert all(pod["metadata"].get("deletionTimestamp") for pod in pods["items"]), pods  # going, or gone
