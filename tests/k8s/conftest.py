"""The KubernetesRuntime under test: against kmock, with the kubelet fixture playing the cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from controller.runtime.kubernetes.runtime import KubernetesRuntime
from tests.fixtures.kube import KubeAPI
from tests.fixtures.kubelet import Kubelet
from tests.k8s.runtime_helpers import APP, runtime_settings


@pytest_asyncio.fixture
async def runtime(kube_api: KubeAPI, kubelet: Kubelet, tmp_path: Path) -> AsyncIterator[KubernetesRuntime]:
    """Started, with the app created; polls every 50 ms."""
    runtime = KubernetesRuntime(runtime_settings(kube_api, tmp_path), poll_interval=0.05)
    await runtime.start()
    await runtime.create_app(APP)
    yield runtime
    await runtime.stop()
