"""What the local runtime does beyond the common ground: its own router, and a user per app when it can."""

from __future__ import annotations

from controller.runtime.base import Capability
from controller.runtime.local.tenancy import multi_tenant
from core.config import Settings


def local_capabilities(settings: Settings) -> Capability:
    """The router always; a user per app as root unless TERESA_APP_ISOLATION=off. Cron process types, limits and
    autoscaling it does not run (and says so at each deploy); its slugs reach processes through no grant that expires."""
    return Capability.ROUTER | (Capability.USER_PER_APP if multi_tenant(settings.app_isolation) else Capability(0))
