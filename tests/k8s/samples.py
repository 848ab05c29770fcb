"""Releases and settings that exercise every teresa.yaml option and Kubernetes setting."""

from __future__ import annotations

from builder.job import BuildRequest, Grants
from controller.runtime.kubernetes.meta import config_secret_name
from controller.spec import Autoscale, ReleaseSpec
from controller.teresa_yaml import AppSpec, parse
from core.config import Settings

FULL_TERESA_YAML = """
healthCheck:
  liveness:
    path: /healthz
    timeoutSeconds: 2
    initialDelaySeconds: 5
    periodSeconds: 15
    failureThreshold: 4
    successThreshold: 1
  readiness:
    path: /ready
    timeoutSeconds: 3
    initialDelaySeconds: 1
    periodSeconds: 5
    failureThreshold: 2
    successThreshold: 2
rollingUpdate:
  maxSurge: 2
  maxUnavailable: "10%"
lifecycle:
  preStop:
    drainTimeoutSeconds: 20
cron:
  schedule: "*/5 * * * *"
  cron_report:
    schedule: "0 3 * * *"
"""

PERCENT_TERESA_YAML = """
rollingUpdate:
  maxSurge: "50%"
  maxUnavailable: 0
lifecycle:
  preStop:
    drainTimeoutSeconds: 0
cron:
  schedule: "@hourly"
"""

PROCFILE = {
    "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
    "worker": "celery worker",
    "mail_sender": "python mail.py",
    "release": "python manage.py migrate",
    "cron": "python tick.py",
    "cron_report": "python report.py",
}

CONFIG = {"DATABASE_URL": "postgres://admin:hunter2-db@db/app", "API_TOKEN": "tok-s3cr3t-value"}
CONFIG_SECRET = config_secret_name(CONFIG)
STORAGE_SECRET_VALUE = "aws-s3cr3t-key-value"
K8S_PASSWORD = "k8s-pa55word"


def settings(allow_priv: bool = False, **extra: str) -> Settings:
    env = {
        "TERESA_DOMAIN": "apps.example.net",
        "TERESAFILESTORAGE_TYPE": "s3",
        "TERESAFILESTORAGE_AWS_KEY": "AKIAEXAMPLE",
        "TERESAFILESTORAGE_AWS_SECRET": STORAGE_SECRET_VALUE,
        "TERESAFILESTORAGE_AWS_BUCKET": "teresa-slugs",
        "TERESAK8S_HOST": "https://k8s.example.net:6443",
        "TERESAK8S_USERNAME": "admin",
        "TERESAK8S_PASSWORD": K8S_PASSWORD,
        "TERESA_SLUGBUILDER_IMAGE": "registry.example.net/teresa/stack:24",
        "TERESA_SLUGRUNNER_IMAGE": "registry.example.net/teresa/stack:24-run",
        "TERESA_BUILD_LIMIT_CPU": "2",
        "TERESA_BUILD_LIMIT_MEMORY": "2Gi",
        "TERESA_DEFAULT_LIMIT_CPU": "750m",
        "TERESA_DEFAULT_LIMIT_MEMORY": "768Mi",
        "TERESA_DEFAULT_REQUEST_CPU": "50m",
        "TERESA_DEFAULT_REQUEST_MEMORY": "64Mi",
        "TERESA_INGRESS_CLASS": "nginx",
        "TERESA_RUN_AS_USER": "2000",
        "TERESA_ALLOW_PRIV_CONTAINERS": "true" if allow_priv else "false",
        "TERESADEPLOY_REVISION_HISTORY_LIMIT": "7",
        "TERESA_ROLLOUT_TIMEOUT": "120",
    }
    env.update(extra)
    return Settings.from_env(env)


def release(teresa_yaml: str | AppSpec = FULL_TERESA_YAML, **overrides) -> ReleaseSpec:
    fields = dict(
        app="shop",
        version=4,
        build_id="20261122-abc123",
        slug_key="apps/shop/builds/20261122-abc123/slug.tgz",
        config=dict(CONFIG),
        processes=dict(PROCFILE),
        formation={"web": 3, "worker": 2},
        spec=parse(teresa_yaml) if isinstance(teresa_yaml, str) else teresa_yaml,
        reason="config",
        domains=("www.shop.example.com", "shop.example.org"),
        limits={"web": {"cpu": "250m", "memory": "256Mi"}, "worker": {"memory": "1Gi"}},
    )
    fields.update(overrides)
    return ReleaseSpec(**fields)


AUTOSCALE = Autoscale(min_replicas=2, max_replicas=6, cpu_percent=70)


SIGNED = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0123abcd"
GRANTS = Grants(
    source=f"https://s3.example.net/teresa-slugs/apps/shop/builds/20261122-abc123/source.tgz?{SIGNED}",
    slug=f"https://s3.example.net/teresa-slugs/apps/shop/builds/20261122-abc123/slug.tgz?{SIGNED}",
    procfile=f"https://s3.example.net/teresa-slugs/apps/shop/builds/20261122-abc123/Procfile?{SIGNED}",
    cache=f"https://s3.example.net/teresa-slugs/apps/shop/cache/cache.tgz?{SIGNED}",
    cache_upload=f"https://s3.example.net/teresa-slugs/apps/shop/cache/cache.tgz?{SIGNED}&put",
)


def build_request() -> BuildRequest:
    return BuildRequest(
        app="shop",
        build_id="20261122-abc123",
        source_key="apps/shop/builds/20261122-abc123/source.tgz",
        slug_key="apps/shop/builds/20261122-abc123/slug.tgz",
        cache_key="apps/shop/cache/cache.tgz",
        config=dict(CONFIG),
        buildpack_url="https://github.com/heroku/heroku-buildpack-python",
        timeout_seconds=600,
    )
