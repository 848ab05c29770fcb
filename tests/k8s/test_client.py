"""The Kubernetes client against the kmock API emulator over real HTTP."""

from __future__ import annotations

import base64
import socket

import pytest

from controller.runtime.kubernetes import manifests
from controller.runtime.kubernetes.client import KubeClient, KubeError, kind_of
from core.config import KubernetesSettings, Settings
from tests.fixtures.kube import KubeAPI
from tests.k8s import samples

PASSWORD = "kube-pa55"


def client_settings(kube_api: KubeAPI, **extra: str) -> KubernetesSettings:
    return Settings.from_env({**kube_api.env(), **extra}).kubernetes


def without_server_fields(obj: dict) -> dict:
    meta = {k: v for k, v in obj["metadata"].items()
            if k not in ("uid", "resourceVersion", "generation", "creationTimestamp")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


@pytest.mark.asyncio
async def test_applies_a_rendered_release_and_reads_it_back(kube_api: KubeAPI) -> None:
    objects = manifests.render_release(samples.settings(), samples.release(), samples.AUTOSCALE)
    async with await KubeClient.connect(client_settings(kube_api)) as kube:
        applied = await kube.apply_all(objects)
        assert [a["metadata"]["name"] for a in applied] == [o["metadata"]["name"] for o in objects]
        for obj in objects:
            meta = obj["metadata"]
            live = await kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            assert live is not None, f"{obj['kind']} {meta['name']} was not stored"
            assert without_server_fields(live) == obj
            assert live["metadata"]["uid"]
        deployments = await kube.list("apps/v1", "Deployment", "shop")
        assert sorted(d["metadata"]["name"] for d in deployments) == ["mail-sender", "web", "worker"]
    # What the API server holds, seen from the emulator's side.
    secret = kube_api.stored("v1/secrets", "shop", samples.CONFIG_SECRET)
    assert base64.b64decode(secret["data"]["API_TOKEN"]).decode() == samples.CONFIG["API_TOKEN"]
    assert kube_api.names("v1/namespaces", None) == ["shop"]
    assert kube_api.names("batch/v1/cronjobs", "shop") == ["cron", "cron-report"]


@pytest.mark.asyncio
async def test_applying_again_makes_the_live_object_what_the_manifest_says(kube_api: KubeAPI) -> None:
    settings = samples.settings()
    async with await KubeClient.connect(client_settings(kube_api)) as kube:
        await kube.apply_all(manifests.render_release(settings, samples.release()))
        first = await kube.get("apps/v1", "Deployment", "web", "shop")
        await kube.apply_all(manifests.render_release(settings, samples.release("", version=5, processes={"web": "x"})))
        second = await kube.get("apps/v1", "Deployment", "web", "shop")
    container = second["spec"]["template"]["spec"]["containers"][0]
    # teresa.yaml's probes are gone; only the default readiness (a TCP connection to $PORT) is left
    assert "livenessProbe" not in container and "httpGet" not in container["readinessProbe"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert second["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v5: config"
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["generation"] == first["metadata"]["generation"] + 1
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


@pytest.mark.asyncio
async def test_objects_need_their_namespace_first(kube_api: KubeAPI) -> None:
    secret = manifests.config_secret(samples.release())
    async with await KubeClient.connect(client_settings(kube_api)) as kube:
        with pytest.raises(KubeError, match=r'Kubernetes refused to apply Secret config-[0-9a-f]+: namespaces "shop" not found') as err:
            await kube.apply(secret)
        assert err.value.status == 404
        assert kube_api.stored("v1/secrets", "shop", samples.CONFIG_SECRET) is None


@pytest.mark.asyncio
async def test_deleting_the_namespace_deletes_what_is_in_it(kube_api: KubeAPI) -> None:
    async with await KubeClient.connect(client_settings(kube_api)) as kube:
        await kube.apply_all(manifests.render_release(samples.settings(), samples.release()))
        assert await kube.delete("v1", "Namespace", "shop") is True
        assert await kube.get("v1", "Namespace", "shop") is None
        assert await kube.get("apps/v1", "Deployment", "web", "shop") is None
        assert await kube.delete("v1", "Namespace", "shop") is False
    assert kube_api.names("v1/secrets", "shop") == []


@pytest.mark.asyncio
async def test_create_refuses_an_existing_object(kube_api: KubeAPI) -> None:
    settings, request = samples.settings(), samples.build_request()
    async with await KubeClient.connect(client_settings(kube_api)) as kube:
        await kube.apply_all(manifests.app_objects(settings, "shop"))
        await kube.create(manifests.build_secret(settings, request))
        pod = await kube.create(manifests.slugbuilder_pod(settings, request, samples.GRANTS))
        assert pod["metadata"]["uid"] and pod["metadata"]["labels"]["teresa.io/build"] == request.build_id
        with pytest.raises(KubeError, match="refused to create Pod slugbuilder-20261122-abc123") as err:
            await kube.create(manifests.slugbuilder_pod(settings, request, samples.GRANTS))
        assert err.value.status == 409
        assert [p["metadata"]["name"] for p in await kube.list("v1", "Pod", "shop")] == [pod["metadata"]["name"]]
        assert await kube.delete("v1", "Pod", pod["metadata"]["name"], "shop") is True
        assert await kube.list("v1", "Pod", "shop") == []


@pytest.mark.asyncio
async def test_basic_auth_from_settings(kube_api: KubeAPI) -> None:
    settings = client_settings(kube_api, TERESAK8S_USERNAME="admin", TERESAK8S_PASSWORD=PASSWORD)
    async with await KubeClient.connect(settings) as kube:
        await kube.apply(manifests.namespace(samples.settings(), "shop"))
        await kube.apply(manifests.service_account("shop"))
    (request,) = [r for r in kube_api.requests() if r.url.path.startswith("/api/v1/namespaces/shop/serviceaccounts")]
    assert request.headers.get("Authorization") == "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


@pytest.mark.asyncio
async def test_unreachable_api_is_one_clear_sentence() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    settings = Settings.from_env({"TERESAK8S_HOST": f"http://127.0.0.1:{port}"}).kubernetes
    kube = await KubeClient.connect(settings)
    with pytest.raises(KubeError, match="Cannot reach the Kubernetes API to read Namespace shop"):
        await kube.get("v1", "Namespace", "shop")
    await kube.close()


@pytest.mark.asyncio
async def test_a_bad_kubeconfig_is_one_clear_sentence(tmp_path) -> None:
    missing = tmp_path / "kubeconfig"
    with pytest.raises(KubeError, match="Cannot configure the Kubernetes client from TERESAK8S_CONFIG_FILE"):
        await KubeClient.connect(KubernetesSettings(config_file=str(missing)))


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="Teresa does not manage DaemonSet objects of apps/v1"):
        kind_of("apps/v1", "DaemonSet")
