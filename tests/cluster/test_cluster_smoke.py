"""The test cluster itself: real controllers, scheduler, kubelet, containerd and CNI, PodSecurity `restricted`."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.rest import ApiException

from tests.cluster.conftest import TIMINGS
from tests.cluster.kubecluster import KubeCluster

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def pod_log(core: kubernetes.client.CoreV1Api, name: str, namespace: str) -> str:
    """The pod's log as text, read raw: kubernetes 36's client returns the repr of the bytes
    (`"b'...'"`) from read_namespaced_pod_log (kubernetes-client/python#2596)."""
    response = core.read_namespaced_pod_log(name, namespace, _preload_content=False)
    try:
        return response.data.decode()
    finally:
        response.release_conn()


def restricted_pod_spec(image: str, args: list[str], restart_policy: str = "Always", **extra: Any) -> dict[str, Any]:
    """A pod spec PodSecurity `restricted` admits without a warning; the image's entrypoint (teresa-slugrunner init) stays."""
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 5,
        "restartPolicy": restart_policy,
        "containers": [
            {
                "name": "main",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": args,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                },
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                **extra,
            }
        ],
    }


def test_restricted_deployment_rolls_out_serves_logs_and_a_job_completes(
    kube_cluster: KubeCluster,
) -> None:
    started = time.monotonic()
    client = kube_cluster.api_client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    batch = kubernetes.client.BatchV1Api(client)
    ns = f"smoke-{secrets.token_hex(3)}"
    labels = {"app.kubernetes.io/name": "smoke"}

    core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
    try:
        # Admission: a pod without the restricted securityContext is refused by PodSecurity.
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_pod(ns, {
                "metadata": {"name": "unrestricted"},
                "spec": {"containers": [{"name": "c", "image": kube_cluster.stack_image}]},
            })
        assert refused.value.status == 403, refused.value.body
        assert 'violates PodSecurity "restricted:latest"' in json.loads(refused.value.body)["message"]

        deployment = {
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": restricted_pod_spec(
                        kube_cluster.stack_image,
                        ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0", "--directory", "/etc"],
                        ports=[{"containerPort": 8000, "name": "http"}],
                        readinessProbe={"httpGet": {"path": "/hostname", "port": 8000}, "periodSeconds": 1},
                    ),
                },
            },
        }
        _, _, headers = apps.create_namespaced_deployment_with_http_info(ns, deployment)
        assert "Warning" not in headers, headers.get("Warning")

        def rolled_out() -> bool:
            d = apps.read_namespaced_deployment_status("web", ns)
            s = d.status
            return bool(
                (s.observed_generation or 0) >= d.metadata.generation
                and s.updated_replicas == 1 and s.ready_replicas == 1 and s.available_replicas == 1
            )

        wait_until("the Deployment to roll out", rolled_out)
        (pod,) = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=smoke").items
        assert pod.spec.node_name == kube_cluster.node_name
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"

        # The pod answers at its IP from the host (no proxy in the way).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{pod.status.pod_ip}:8000/hostname", timeout=10) as response:
            assert response.status == 200

        # Its log, through the API server and the kubelet.
        log = wait_until(
            "the request in the pod's log",
            lambda: (text := pod_log(core, pod.metadata.name, ns)) and '"GET /hostname' in text and text,
        )
        assert "Serving HTTP on 0.0.0.0 port 8000" in log

        # A Job runs to completion.
        batch.create_namespaced_job(ns, {
            "metadata": {"name": "once"},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": restricted_pod_spec(
                    kube_cluster.stack_image, ["sh", "-c", "echo job-done"], restart_policy="Never"
                )},
            },
        })

        def job_complete() -> bool:
            status = batch.read_namespaced_job_status("once", ns).status
            if status.failed:
                raise AssertionError(f"the Job failed: {status}")
            return any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])

        wait_until("the Job to complete", job_complete)
        (job_pod,) = core.list_namespaced_pod(ns, label_selector="job-name=once").items
        assert pod_log(core, job_pod.metadata.name, ns).strip() == "job-done"
    finally:
        # Namespace deletion completes: the namespace controller empties it, the kubelet stops its pods.
        core.delete_namespace(ns)

        def namespace_gone() -> bool:
            try:
                core.read_namespace(ns)
            except ApiException as error:
                return error.status == 404
            return False

        wait_until("the namespace to be deleted", namespace_gone, timeout=120)
        client.close()

    TIMINGS["smoke test"] = time.monotonic() - started


def test_service_account_token_is_authorized_by_rbac(kube_cluster: KubeCluster) -> None:
    """A ServiceAccount's token (TokenRequest) authenticates; RBAC grants exactly its Role."""
    ns = f"sa-{secrets.token_hex(3)}"
    with kube_cluster.api_client() as admin:
        core = kubernetes.client.CoreV1Api(admin)
        rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
        core.create_namespace({"metadata": {"name": ns}})
        try:
            core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
            rbac.create_namespaced_role(ns, {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            })
            rbac.create_namespaced_role_binding(ns, {
                "metadata": {"name": "robot-reads-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}],
            })
            token = kube_cluster.service_account_token(ns, "robot", seconds=600)

            with kube_cluster.api_client(token=token) as robot:
                review = kubernetes.client.AuthenticationV1Api(robot).create_self_subject_review({})
                assert review.status.user_info.username == f"system:serviceaccount:{ns}:robot"
                robot_core = kubernetes.client.CoreV1Api(robot)
                # RBAC is cached in the authorizer's informers: the binding is visible within moments.
                wait_until("the RoleBinding to apply", lambda: _allowed(lambda: robot_core.list_namespaced_pod(ns)),
                           timeout=30)
                with pytest.raises(ApiException) as denied:
                    robot_core.list_namespaced_secret(ns)
                assert denied.value.status == 403
                with pytest.raises(ApiException) as denied:
                    robot_core.list_pod_for_all_namespaces()
                assert denied.value.status == 403

            can_i = kube_cluster.kubectl("auth", "can-i", "--list", "-n", ns, f"--as=system:serviceaccount:{ns}:robot")
            assert any(line.split()[:1] == ["pods"] and "[get list]" in line for line in can_i.stdout.splitlines())
        finally:
            core.delete_namespace(ns)


def _allowed(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ApiException as error:
        if error.status == 403:
            return False
        raise
    return True
