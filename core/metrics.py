"""Teresa's Prometheus metrics: the objects the rest of the code increments.

They live in one dedicated registry, REGISTRY, rather than prometheus_client's
default one, so /metrics shows Teresa's own series only and tests can read
them without the process and platform collectors of the default registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Builds take minutes, rollouts tens of seconds to minutes.
BUILD_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, float("inf"))
ROLLOUT_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, float("inf"))

pushes_total = Counter(
    "teresa_pushes_total", "git pushes received, by outcome.", ["outcome"], registry=REGISTRY
)
builds_total = Counter(
    "teresa_builds_total", "Slug builds, by outcome.", ["outcome"], registry=REGISTRY
)
releases_total = Counter(
    "teresa_releases_total", "Releases rolled out, by outcome.", ["outcome"], registry=REGISTRY
)
build_duration_seconds = Histogram(
    "teresa_build_duration_seconds", "Time from build start to slug uploaded.",
    buckets=BUILD_BUCKETS, registry=REGISTRY,
)
rollout_duration_seconds = Histogram(
    "teresa_rollout_duration_seconds", "Time from applying a release to its rollout finishing.",
    buckets=ROLLOUT_BUCKETS, registry=REGISTRY,
)
ssh_sessions_total = Counter(
    "teresa_ssh_sessions_total", "SSH sessions opened.", registry=REGISTRY
)
ssh_sessions_active = Gauge(
    "teresa_ssh_sessions_active", "SSH sessions open now.", registry=REGISTRY
)
auth_failures_total = Counter(
    "teresa_auth_failures_total", "Failed SSH authentication attempts, by method.", ["method"],
    registry=REGISTRY,
)
