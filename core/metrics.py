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
    "teresa_builds_total", "Slug builds, by app and outcome.", ["app", "outcome"], registry=REGISTRY
)
releases_total = Counter(
    "teresa_releases_total", "Releases rolled out, by app and outcome.", ["app", "outcome"], registry=REGISTRY
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

# --- what the shipped alert rules (deploy/monitoring/) watch ---------------------------------------

rollouts_undone_total = Counter(
    "teresa_rollouts_undone_total", "Rollouts that failed and were undone back to the previous release, by app.",
    ["app"], registry=REGISTRY,
)
crashlooping_processes = Gauge(
    "teresa_crashlooping_processes", "Process types of an app restarting again and again now, by app.", ["app"],
    registry=REGISTRY,
)
release_phase_started = Gauge(
    "teresa_release_phase_started_timestamp_seconds",
    "When the release phase running now for an app started (Unix time); absent while none runs.", ["app"],
    registry=REGISTRY,
)
backup_last_success = Gauge(
    "teresa_backup_last_success_timestamp_seconds", "When the newest backup of the database was taken (Unix time).",
    registry=REGISTRY,
)
backup_interval = Gauge(
    "teresa_backup_interval_seconds", "Seconds between periodic backups (TERESA_BACKUP_INTERVAL; 0: none).",
    registry=REGISTRY,
)
backups_total = Counter(
    "teresa_backups_total", "Periodic backups of the database, by outcome.", ["outcome"], registry=REGISTRY
)
storage_errors_total = Counter(
    "teresa_storage_errors_total", "Storage operations that failed (a missing object is no error), by operation.",
    ["operation"], registry=REGISTRY,
)
database_errors_total = Counter(
    "teresa_database_errors_total", "Database transactions that failed in the database (lost connection, "
    "timeout, deadlock; not a refused duplicate), by error class.", ["error"], registry=REGISTRY,
)
ready = Gauge(
    "teresa_ready", "1 while a readiness check of /readyz passes, else 0; checked at each /readyz and /metrics "
    "request.", ["check"], registry=REGISTRY,
)
notification_deliveries_total = Counter(
    "teresa_notification_deliveries_total", "Attempts to deliver a notification, by outcome (delivered, retry, "
    "failed: given up).", ["outcome"], registry=REGISTRY,
)
