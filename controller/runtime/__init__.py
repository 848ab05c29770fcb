"""Where releases run: `make_runtime` picks the runtime the settings name."""

from __future__ import annotations

from controller.runtime.base import Runtime
from core.config import Settings
from core.kubesettings import require_cluster_ready


def make_runtime(settings: Settings) -> Runtime:
    """KubernetesRuntime when settings.runtime is "kubernetes", else LocalRuntime (imported only when chosen)."""
    if settings.runtime == "kubernetes":
        require_cluster_ready(settings.kubernetes, settings.storage.type)
        from controller.runtime.kubernetes.runtime import KubernetesRuntime

        return KubernetesRuntime(settings)
    from controller.runtime.local.runtime import LocalRuntime

    return LocalRuntime(settings)
