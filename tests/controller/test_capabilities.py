"""What the controller and the server decide from a runtime's capabilities, not from its name."""

from __future__ import annotations

from pathlib import Path

from controller.controller import Controller
from controller.runtime import declared_capabilities
from controller.runtime.base import Capability
from controller.runtime.kubernetes.capabilities import KUBERNETES_CAPABILITIES
from controller.runtime.local import LocalRuntime
from core.config import Settings
from core.services import Services
from server.serve import tenancy

KUBERNETES = {"TERESA_RUNTIME": "kubernetes"}


class DeclaredRuntime:
    """Only what these tests read of a runtime: what it declares it can do."""

    def __init__(self, capabilities: Capability) -> None:
        self.capabilities = capabilities


def controller(settings: Settings, runtime: DeclaredRuntime | None = None) -> Controller:
    return Controller(Services(settings=settings, db=None, storage=None), runtime)  # type: ignore[arg-type]


def test_the_app_url_has_the_routers_port_only_when_the_runtime_serves_apps_itself() -> None:
    local, on_kubernetes = Settings.from_env({}), Settings.from_env(KUBERNETES)
    assert controller(local).url("shop") == "http://shop.localhost:8080"  # no server: the runtime the settings name
    assert controller(on_kubernetes).url("shop") == "http://shop.localhost"
    assert controller(on_kubernetes, DeclaredRuntime(Capability.ROUTER)).url("shop") == "http://shop.localhost:8080"
    assert controller(local, DeclaredRuntime(KUBERNETES_CAPABILITIES)).url("shop") == "http://shop.localhost"


def test_what_a_runtime_declares_is_what_commands_without_the_server_assume(tmp_path: Path) -> None:
    for isolation in ("auto", "off"):
        settings = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path), "TERESA_APP_ISOLATION": isolation})
        assert LocalRuntime(settings).capabilities == declared_capabilities(settings)
    from controller.runtime.kubernetes.runtime import KubernetesRuntime

    assert KubernetesRuntime.capabilities == declared_capabilities(Settings.from_env(KUBERNETES))


def test_the_start_up_line_names_how_the_runtime_keeps_apps_apart() -> None:
    assert tenancy(KUBERNETES_CAPABILITIES) == "one namespace per app"
    assert tenancy(Capability.ROUTER | Capability.USER_PER_APP) == "one user per app"
    assert tenancy(Capability.ROUTER).startswith("the local runtime is single-tenant")
