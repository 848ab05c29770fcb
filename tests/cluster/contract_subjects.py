"""The runtimes under the contract (tests/cluster/test_runtime_contract.py), each on an event loop of its own thread,
with the little that differs between them: where their storage is, and how a test reaches an app's web processes.

The local runtime serves apps through its router (by Host header) and each web process at a loopback port; the test
cluster has no kube-proxy, so there the front door is a web pod's IP, as in test_runtime_on_cluster.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from controller.runtime.base import Capability, Runtime
from core.config import Settings
from tests.cluster.kubecluster import KubeCluster
from tests.localrt.harness import Harness, harness

T = TypeVar("T")
FRONT_TIMEOUT = aiohttp.ClientTimeout(total=5)


class Subject:
    """A runtime on an event loop of its own thread: tests stay plain functions and call into it."""

    name = ""
    runtime: Runtime
    settings: Settings

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"{type(self).__name__} loop", daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()
        self.http = self.call(self._open_http())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def lacks(self, capability: Capability) -> str:
        """The reason a test skips when the runtime lacks `capability` ("" when it has it)."""
        missing = capability not in self.runtime.capabilities
        return f"the {self.name} runtime lacks {capability.name}" if missing else ""

    async def web_addresses(self, app: str) -> list[str]:
        """The base URL of each of the app's web processes that is ready and serving."""
        raise NotImplementedError

    async def front(self, app: str) -> tuple[str, dict[str, str]]:
        """Where and how the app is reached as its users reach it: a URL and the request's headers."""
        raise NotImplementedError

    async def _open_http(self) -> aiohttp.ClientSession:
        return await self.stack.enter_async_context(aiohttp.ClientSession(timeout=FRONT_TIMEOUT))

    async def get(self, url: str, headers: dict[str, str] | None = None) -> tuple[int, str] | None:
        """An HTTP GET: (status, body), or None when nothing answers."""
        try:
            async with self.http.get(url, headers=headers or {}) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None

    def close(self) -> None:
        try:
            self.call(self.stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


class LocalSubject(Subject):
    """The local runtime of tests/localrt/harness.py: its router on a loopback port, storage in a directory."""

    name = "local"

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.harness: Harness = self.call(self.stack.enter_async_context(harness(tmp)))
        self.runtime, self.settings = self.harness.rt, self.harness.settings

    async def web_addresses(self, app: str) -> list[str]:
        supervisor = self.harness.rt.supervisor(app)
        return [f"http://127.0.0.1:{port}" for port in supervisor.serving_ports("web")]

    async def front(self, app: str) -> tuple[str, dict[str, str]]:
        return self.harness.base + "/", {"Host": f"{app}.{self.settings.domain}"}


class KubernetesSubject(Subject):
    """The KubernetesRuntime on the test cluster, as test_runtime_on_cluster.py builds it (SeaweedFS storage)."""

    name = "kubernetes"

    def __init__(self, cluster: KubeCluster, settings: Settings) -> None:
        super().__init__()
        import kubernetes.client
        from controller.runtime.kubernetes.runtime import KubernetesRuntime

        self.settings = settings
        self.runtime = runtime = KubernetesRuntime(settings, poll_interval=0.5)
        self.call(runtime.start())
        self.stack.push_async_callback(runtime.stop)
        admin = cluster.api_client()
        self.stack.callback(admin.close)
        self.core = kubernetes.client.CoreV1Api(admin)

    async def web_addresses(self, app: str) -> list[str]:
        from controller.runtime.kubernetes.pods import CONTAINER_PORT

        pods = await asyncio.to_thread(self.core.list_namespaced_pod, app, label_selector="teresa.io/process-type=web")
        return [f"http://{pod.status.pod_ip}:{CONTAINER_PORT}" for pod in pods.items
                if pod.metadata.deletion_timestamp is None and _ready(pod)]

    async def front(self, app: str) -> tuple[str, dict[str, str]]:
        addresses = await self.web_addresses(app)
        assert addresses, f"{app} has no ready web pod"
        return addresses[0] + "/", {}


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
