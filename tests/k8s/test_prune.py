"""Which live objects a new release leaves to be deleted."""

from __future__ import annotations

import pytest

from controller.runtime.kubernetes import manifests
from controller.runtime.kubernetes.client import KubeClient
from controller.runtime.kubernetes.meta import config_secret_name
from controller.runtime.kubernetes.pods import slug_secret_name
from controller.runtime.kubernetes.prune import PRUNABLE_KINDS, stale
from core.config import Settings
from tests.fixtures.kube import KubeAPI
from tests.k8s import samples


def as_listed(objects: list[dict], kind: str) -> list[dict]:
    """List calls return items without apiVersion and kind."""
    return [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in objects if o["kind"] == kind]


def test_removed_process_types_and_autoscaler_are_stale() -> None:
    settings = samples.settings()
    before = manifests.render_release(settings, samples.release(), samples.AUTOSCALE)
    after = manifests.render_release(settings, samples.release("", version=5, processes={"web": "x", "worker": "y"}))
    assert stale(after, "apps/v1", "Deployment", as_listed(before, "Deployment"), 5) == ["mail-sender"]
    assert stale(after, "batch/v1", "CronJob", as_listed(before, "CronJob"), 5) == ["cron", "cron-report"]
    assert stale(after, "autoscaling/v2", "HorizontalPodAutoscaler",
                 as_listed(before, "HorizontalPodAutoscaler"), 5) == ["web"]
    assert stale(after, "v1", "Service", as_listed(before, "Service"), 5) == []
    without_web = manifests.render_release(settings, samples.release("", version=6, processes={"worker": "y"}))
    assert stale(without_web, "networking.k8s.io/v1", "Ingress", as_listed(before, "Ingress"), 5) == ["web"]


def test_config_secrets_of_recent_releases_are_kept() -> None:
    settings = samples.settings()
    olds = [manifests.config_secret(samples.release(version=v, config={"V": str(v)})) for v in range(1, 10)]
    live = olds + [manifests.build_secret(samples.settings(), samples.build_request())]
    desired = manifests.render_release(settings, samples.release(version=10))
    assert stale(desired, "v1", "Secret", as_listed(live, "Secret"), 3) == sorted(
        s["metadata"]["name"] for s in olds[:7])


def test_objects_teresa_did_not_make_are_left_alone() -> None:
    desired = manifests.render_release(samples.settings(), samples.release())
    foreign = {"metadata": {"name": "sidecar", "labels": {"teresa.io/app": "shop"}}}
    other_app = {"metadata": {"name": "x", "labels": {"app.kubernetes.io/managed-by": "teresa", "teresa.io/app": "blog"}}}
    assert stale(desired, "apps/v1", "Deployment", [foreign, other_app], 5) == []
    assert stale(desired, "v1", "Namespace", [other_app], 5) == []


@pytest.mark.asyncio
async def test_pruning_against_the_api(kube_api: KubeAPI) -> None:
    settings = samples.settings()
    async with await KubeClient.connect(Settings.from_env(kube_api.env()).kubernetes) as kube:
        await kube.apply_all(manifests.render_release(settings, samples.release()))
        desired = manifests.render_release(settings, samples.release("", version=5, processes={"web": "x"}, config={}))
        await kube.apply_all(desired)
        for api_version, kind in PRUNABLE_KINDS:
            live = await kube.list(api_version, kind, "shop", labels={"app.kubernetes.io/managed-by": "teresa"})
            for name in stale(desired, api_version, kind, live, 2):
                await kube.delete(api_version, kind, name, "shop")
    assert kube_api.names("apps/v1/deployments", "shop") == ["web"]
    assert kube_api.names("batch/v1/cronjobs", "shop") == []
    assert kube_api.names("v1/secrets", "shop") == sorted(
        [samples.CONFIG_SECRET, config_secret_name({}), slug_secret_name(samples.release().build_id)])
