"""What the Kubernetes runtime does beyond the common ground: declared apart from the runtime, so that a
command run without the server learns it without importing the kubernetes library."""

from __future__ import annotations

from controller.runtime.base import Capability

# CronJobs, resource limits, HorizontalPodAutoscalers, slug URLs that expire (renewed by controller/grant_renewal.py),
# one namespace per app; apps are reached through an Ingress, not a router of Teresa's.
KUBERNETES_CAPABILITIES = (Capability.CRON | Capability.LIMITS | Capability.AUTOSCALE | Capability.GRANT_RENEWAL
                           | Capability.NAMESPACE_PER_APP)
