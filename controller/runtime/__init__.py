"""Where releases run: the one place that reads which runtime the settings name (TERESA_RUNTIME, validated by
core.config); everything else asks the runtime's `capabilities`."""

from __future__ import annotations

from controller.runtime.base import Capability, Runtime
from core.config import Settings
from core.kubesettings import require_cluster_ready


def make_runtime(settings: Settings) -> Runtime:
    """KubernetesRuntime when settings.runtime is "kubernetes", else LocalRuntime (imported only when chosen)."""
    if _on_kubernetes(settings):
        require_cluster_ready(settings.kubernetes, settings.storage.type)
        from controller.runtime.kubernetes.runtime import KubernetesRuntime

        return KubernetesRuntime(settings)
    from controller.runtime.local.runtime import LocalRuntime

    return LocalRuntime(settings)


def declared_capabilities(settings: Settings) -> Capability:
    """The capabilities of the runtime `make_runtime` would make, without making it: for a command run without
    the server (and without importing the kubernetes library)."""
    if _on_kubernetes(settings):
        from controller.runtime.kubernetes.capabilities import KUBERNETES_CAPABILITIES

        return KUBERNETES_CAPABILITIES
    from controller.runtime.local.capabilities import local_capabilities

    return local_capabilities(settings)


def _on_kubernetes(settings: Settings) -> bool:
    return settings.runtime == "kubernetes"
