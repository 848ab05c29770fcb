"""KubernetesRuntime releases against kmock and the kubelet fixture: rollouts, their failures and undo, ps, logs, restart."""

from __future__ import annotations

import asyncio

import pytest

from controller.runtime.base import LOG_TIMESTAMP, RolloutFailed, split_log_timestamp
from controller.runtime.kubernetes.runtime import KubernetesRuntime
from controller.runtime.kubernetes.templates import RESTARTED_AT
from tests.fixtures.kube import KubeAPI
from tests.fixtures.kubelet import Kubelet
from tests.k8s.runtime_helpers import APP, Lines, eventually, release

V2_SLUG = "apps/shop/builds/b2/slug.tgz"


def web_pods(kube_api: KubeAPI) -> list[str]:
    return [n for n in kube_api.names("v1/pods", APP) if n.startswith("web-")]


def deployment_spec(kube_api: KubeAPI, name: str = "web") -> dict:
    return kube_api.stored("apps/v1/deployments", APP, name)["spec"]


@pytest.mark.asyncio
async def test_a_first_release_creates_deployments_and_the_service(runtime: KubernetesRuntime,
                                                                   kube_api: KubeAPI) -> None:
    out = Lines()
    await runtime.deploy(release(1), None, out)
    assert kube_api.names("apps/v1/deployments", APP) == ["web", "worker"]
    assert kube_api.names("v1/services", APP) == ["web"]
    assert out.lines[0] == "-----> Rolling out v1: web=2 worker=1"
    assert "       web: 2 of 2 updated, 2 available" in out.lines
    assert "       worker: 1 of 1 updated, 1 available" in out.lines
    processes = await runtime.ps(APP)
    assert sorted((p.type, p.state, p.release) for p in processes) == [
        ("web", "up", 1), ("web", "up", 1), ("worker", "up", 1)]
    assert all(p.replica.startswith(f"{p.type}-") and p.uptime_seconds is not None for p in processes)


@pytest.mark.asyncio
async def test_a_scale_only_release_does_not_restart_pods(runtime: KubernetesRuntime, kube_api: KubeAPI) -> None:
    await runtime.deploy(release(1), None, Lines())
    before, template = web_pods(kube_api), deployment_spec(kube_api)["template"]
    await runtime.deploy(release(2, formation={"web": 3, "worker": 1}, reason="scale"), release(1), Lines())
    assert deployment_spec(kube_api)["template"] == template
    assert set(before) < set(web_pods(kube_api)) and len(web_pods(kube_api)) == 3
    domains = release(3, formation={"web": 3, "worker": 1}, reason="domains", domains=("www.shop.example",))
    await runtime.deploy(domains, release(2), Lines())
    assert deployment_spec(kube_api)["template"] == template
    # A config change is a new template: every pod is replaced.
    await runtime.deploy(release(4, config={"GREETING": "bye"}, formation={"web": 3}, reason="config"),
                         domains, Lines())
    assert not set(before) & set(web_pods(kube_api))
    assert {p.release for p in await runtime.ps(APP) if p.type == "web"} == {4}


@pytest.mark.asyncio
async def test_restarts_roll_the_pods(runtime: KubernetesRuntime, kube_api: KubeAPI) -> None:
    await runtime.deploy(release(1), None, Lines())
    first = web_pods(kube_api)
    await runtime.deploy(release(2, reason="restart"), release(1), Lines(), restart=True)
    assert RESTARTED_AT in deployment_spec(kube_api)["template"]["metadata"]["annotations"]
    second = web_pods(kube_api)
    assert not set(first) & set(second)
    worker = kube_api.names("v1/pods", APP)
    await runtime.restart(APP, "web")
    await eventually(lambda: len(web_pods(kube_api)) == 2 and not set(second) & set(web_pods(kube_api)),
                     what="the web pods' replacement")
    assert [n for n in kube_api.names("v1/pods", APP) if n.startswith("worker-")] == [
        n for n in worker if n.startswith("worker-")]


@pytest.mark.asyncio
async def test_a_stalled_rollout_is_undone_with_the_reason(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                           kubelet: Kubelet) -> None:
    await runtime.deploy(release(1), None, Lines())
    spec_before, pods_before = deployment_spec(kube_api), web_pods(kube_api)
    kubelet.misbehave("v2", "never_ready", output=["booting", "waiting for the database at db:5432"])
    out = Lines()
    with pytest.raises(RolloutFailed, match=r"^v2 did not become ready: web made no progress within its deadline; "
                                            r"pod web-\w+-\w+: its readiness check \(GET /health\) never passed; "
                                            r"last output: booting / waiting for the database at db:5432; "
                                            r"v1 is still running\.$"):
        await runtime.deploy(release(2, V2_SLUG, formation={"web": 2}), release(1), out)
    assert "-----> Undoing v2: back to v1" in out.lines
    assert deployment_spec(kube_api) == spec_before
    await eventually(lambda: web_pods(kube_api) == pods_before, what="the v2 pods' removal")


@pytest.mark.asyncio
async def test_a_crash_loop_is_undone_with_the_last_lines(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                          kubelet: Kubelet) -> None:
    await runtime.deploy(release(1), None, Lines())
    spec_before = deployment_spec(kube_api)
    kubelet.misbehave("v2", "crash_loop", output=["Traceback (most recent call last):", "KeyError: 'SECRET_KEY'"])
    with pytest.raises(RolloutFailed, match=r"it keeps crashing \(CrashLoopBackOff, exit status 1, 3 restarts\); "
                                            r"last output: Traceback \(most recent call last\): / "
                                            r"KeyError: 'SECRET_KEY'; v1 is still running\.$"):
        await runtime.deploy(release(2, V2_SLUG, formation={"web": 2}), release(1), Lines())
    assert deployment_spec(kube_api) == spec_before


@pytest.mark.asyncio
async def test_a_failed_first_release_leaves_nothing_running(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                             kubelet: Kubelet) -> None:
    kubelet.misbehave("v1", "never_ready")
    with pytest.raises(RolloutFailed, match=r"nothing of it is left running\.$"):
        await runtime.deploy(release(1), None, Lines())
    assert kube_api.names("apps/v1/deployments", APP) == []
    assert kube_api.names("v1/services", APP) == []
    await eventually(lambda: kube_api.names("v1/pods", APP) == [], what="the pods' removal")


@pytest.mark.asyncio
async def test_a_removed_process_type_is_pruned(runtime: KubernetesRuntime, kube_api: KubeAPI) -> None:
    await runtime.deploy(release(1), None, Lines())
    await runtime.deploy(release(2, V2_SLUG, processes={"web": "x"}), release(1), Lines())
    assert kube_api.names("apps/v1/deployments", APP) == ["web"]
    await eventually(lambda: not any(n.startswith("worker-") for n in kube_api.names("v1/pods", APP)),
                     what="the worker pods' removal")


@pytest.mark.asyncio
async def test_logs_of_every_pod_prefixed_and_followed(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                       kubelet: Kubelet) -> None:
    await runtime.deploy(release(1), None, Lines())
    stamped = [split_log_timestamp(line) for line in [line async for line in runtime.logs(APP, 10, False, None)]]
    assert all(LOG_TIMESTAMP.fullmatch(stamp) for stamp, _ in stamped)  # the kubelet's, as logs shows them
    shown = [text for _, text in stamped]
    assert sorted(line.split(".")[0] for line in shown) == ["web", "web", "worker"]
    assert all(line.endswith(" started") and " | " in line for line in shown)
    only_worker = [line async for line in runtime.logs(APP, 10, False, "worker")]
    assert [line.split(" | ")[1] for line in only_worker] == ["worker started"]

    followed = runtime.logs(APP, 0, True, "web")
    first = asyncio.ensure_future(anext(followed))
    await eventually(lambda: kubelet.followers == 2, what="two followed log streams")
    assert not first.done()
    pod = web_pods(kube_api)[0]
    kubelet.say(APP, pod, "GET / 200")
    stamp, line = split_log_timestamp(await asyncio.wait_for(first, timeout=5))
    assert LOG_TIMESTAMP.fullmatch(stamp) and line == f"web.{pod.rsplit('-', 1)[-1]} | GET / 200"
    await followed.aclose()


@pytest.mark.asyncio
async def test_destroying_the_app_deletes_its_namespace(runtime: KubernetesRuntime, kube_api: KubeAPI) -> None:
    await runtime.deploy(release(1), None, Lines())
    await runtime.destroy_app(APP)
    assert kube_api.names("v1/namespaces", None) == []
    assert await runtime.ps(APP) == []


@pytest.mark.asyncio
async def test_domains_change_the_ingress_without_a_release(runtime: KubernetesRuntime, kube_api: KubeAPI) -> None:
    await runtime.set_domains(APP, ["www.shop.example"])  # no web process yet: nothing to route
    assert kube_api.names("networking.k8s.io/v1/ingresses", APP) == []
    await runtime.deploy(release(1), None, Lines())
    template = deployment_spec(kube_api)["template"]
    await runtime.set_domains(APP, ["www.shop.example"])
    rules = kube_api.stored("networking.k8s.io/v1/ingresses", APP, "web")["spec"]["rules"]
    assert "www.shop.example" in [rule["host"] for rule in rules]
    assert deployment_spec(kube_api)["template"] == template
    await runtime.health()


@pytest.mark.asyncio
async def test_a_rollout_cancelled_by_the_client_is_undone(runtime: KubernetesRuntime, kube_api: KubeAPI,
                                                           kubelet: Kubelet) -> None:
    await runtime.deploy(release(1), None, Lines())
    spec_before = deployment_spec(kube_api)
    kubelet.misbehave("v2", "never_ready")
    out = Lines()
    rollout = asyncio.create_task(runtime.deploy(release(2, V2_SLUG), release(1), out))
    await out.wait_for("web: 2 of 2 updated, 2 available")  # the v2 pods exist, the v1 pods still serve
    rollout.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rollout
    await eventually(lambda: deployment_spec(kube_api) == spec_before, what="the undo to v1")
