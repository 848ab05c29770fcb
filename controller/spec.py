"""What a runtime is asked to run: one release of one app, fully resolved."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from controller.teresa_yaml import AppSpec, Probe, RollingUpdate


@dataclass(frozen=True)
class Autoscale:
    """`autoscale:set APP --min N --max N --cpu PERCENT`: a HorizontalPodAutoscaler for one process type."""

    min_replicas: int
    max_replicas: int
    cpu_percent: int
    process_type: str = "web"

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ValueError(f"--min {self.min_replicas} is too small; autoscaling needs at least 1 replica.")
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"--max {self.max_replicas} is below --min {self.min_replicas}; raise --max.")
        if not 1 <= self.cpu_percent <= 1000:
            raise ValueError(f"--cpu {self.cpu_percent} is not a target CPU percentage; use a number from 1 to 1000.")

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


@dataclass(frozen=True)
class ReleaseSpec:
    app: str
    version: int                      # v1, v2, ... as an integer
    build_id: str
    slug_key: str                     # storage key of the slug: apps/<app>/builds/<id>/slug.tgz
    config: dict[str, str]            # the app's config vars (secrets: never log them)
    processes: dict[str, str]         # Procfile: process type -> command
    formation: dict[str, int]         # process type -> replicas (missing types: web=1, others 0)
    spec: AppSpec = field(default_factory=AppSpec)
    reason: str = "push"              # push, config, scale, restart, rollback
    domains: tuple[str, ...] = ()     # custom domains, besides <app>.<TERESA_DOMAIN>
    limits: dict[str, dict[str, str]] = field(default_factory=dict)  # type -> {"cpu": .., "memory": ..}
    autoscale: Autoscale | None = None  # Kubernetes only: a HorizontalPodAutoscaler
    tls_secret: str = ""              # Kubernetes only: the TLS Secret the Ingress serves the app's hosts with
    slug_digest: str = ""             # the slug's SHA-256 at the end of its build, checked where it is fetched

    @property
    def label(self) -> str:
        return f"v{self.version}"

    def replicas(self, process_type: str) -> int:
        if process_type in self.formation:
            return self.formation[process_type]
        return 1 if process_type == "web" else 0

    @property
    def long_running_types(self) -> list[str]:
        """Process types that run as deployments: all but `release` and cron* types."""
        cron = self.cron_types
        return sorted(t for t in self.processes if t != "release" and t not in cron)

    @property
    def cron_types(self) -> list[str]:
        """Process types run on a schedule (teresa.yaml's `cron`), where the runtime runs them: cron* types."""
        return sorted(t for t in self.processes if t.startswith("cron"))

    def to_json(self) -> str:
        """JSON with every field, config values included: store it where only Teresa can read it."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ReleaseSpec":
        data: dict[str, Any] = json.loads(text)
        spec = data.pop("spec", None) or {}
        probes = {k: Probe(**spec[k]) if spec.get(k) else None for k in ("liveness", "readiness")}
        app_spec = AppSpec(**{**spec, **probes, "rolling_update": RollingUpdate(**spec.get("rolling_update", {}))})
        autoscale = Autoscale(**data["autoscale"]) if data.get("autoscale") else None
        return cls(**{**data, "spec": app_spec, "domains": tuple(data.get("domains", ())), "autoscale": autoscale})
