"""`git push` with the real git and ssh clients to a Teresa server whose runtime is Kubernetes (kmock + kubelet)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import StorageSettings
from tests.fixtures.kube import KubeAPI
from tests.fixtures.kubelet import Kubelet
from tests.fixtures.teresa import Deploy, make_deploy
from tests.gitreceiver.conftest import BUILDPACKS, WEB_APP


@pytest.fixture
def kube_deploy(tmp_path: Path, local_storage: StorageSettings, ssh_keys: dict[str, Path], kube_api: KubeAPI,
                kubelet: Kubelet) -> Iterator[Deploy]:
    """A server on the Kubernetes runtime, its app created (a namespace), ready to push to."""
    yield from make_deploy(tmp_path, local_storage, ssh_keys, **kube_api.env(),
                           TERESAK8S_POLL_INTERVAL="0.05", TERESA_ROLLOUT_TIMEOUT="20")


def wait_until(condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_push_builds_in_a_pod_streams_live_and_deploys(kube_deploy: Deploy, kube_api: KubeAPI, kubelet: Kubelet,
                                                       tmp_path: Path) -> None:
    go_ahead = tmp_path / "go-ahead"
    status, _, err = kube_deploy.command(f"config:set shop BUILDPACK_URL={BUILDPACKS / 'wait_for_file'} "
                                         f"GO_AHEAD_FILE={go_ahead}")
    assert status == 0, err
    kube_deploy.git.commit(WEB_APP)
    push = kube_deploy.git.popen_push("shop")
    seen = []
    for line in push.stderr:  # remote: lines, as the build pod prints them
        seen.append(line)
        if "waiting for the go-ahead" in line:
            break
    assert push.poll() is None, "the push finished before the build was allowed to"
    assert [n for n in kube_api.names("v1/pods", "shop") if n.startswith("slugbuilder-")], "no build pod runs"
    go_ahead.touch()
    rest = push.stderr.read()
    assert push.wait(120) == 0, "".join(seen) + rest
    assert "got the go-ahead" in rest and "web: 1 of 1 updated, 1 available" in rest and "Released v1" in rest
    assert kube_api.names("apps/v1/deployments", "shop") == ["web"]
    assert kube_api.names("v1/services", "shop") == ["web"]
    assert any(n.startswith("slugbuilder-") for n in kubelet.seen_pods)
    wait_until(lambda: not any(n.startswith("slugbuilder-") for n in kube_api.names("v1/pods", "shop")))


def test_a_stalled_rollout_rejects_the_push_and_keeps_the_previous_release(
        kube_deploy: Deploy, kube_api: KubeAPI, kubelet: Kubelet) -> None:
    kube_deploy.git.commit(WEB_APP)
    assert kube_deploy.git.push("shop").returncode == 0
    before = kube_api.stored("apps/v1/deployments", "shop", "web")["spec"]
    kubelet.misbehave("v2", "crash_loop", output=["OSError: [Errno 98] Address already in use"])
    kube_deploy.git.commit({**WEB_APP, "index.html": "version two\n"})
    push = kube_deploy.git.push("shop")
    assert push.returncode != 0
    assert "v2 did not become ready: web has a replica that exited" in push.stderr
    assert "Address already in use" in push.stderr and "v1 is still running" in push.stderr
    assert kube_api.stored("apps/v1/deployments", "shop", "web")["spec"] == before
