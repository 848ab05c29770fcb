"""Teresa's settings, read once from the environment.

The names of the original Teresa are kept (TERESADB_*, TERESAFILESTORAGE_*,
TERESAK8S_*, TERESADEPLOY_*); newer settings use the TERESA_ prefix.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union
from urllib.parse import quote

from core.envparse import ConfigError, _bool, _int, _positive, _seconds
from core.kubesettings import KubernetesSettings, kubernetes_from_env

__all__ = ["ConfigError", "KubernetesSettings", "Settings", "StorageSettings", "kubernetes_from_env"]


Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_addr(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}={value!r} is not HOST:PORT; set it like 127.0.0.1:2222.")
    return host.strip("[]") or "0.0.0.0", int(port)


def trusted_proxies(env: Mapping[str, str]) -> tuple[Network, ...]:
    """TERESA_TRUSTED_PROXIES: CIDRs (or addresses) whose X-Forwarded-For/-Proto the router keeps; default none."""
    networks = []
    for item in env.get("TERESA_TRUSTED_PROXIES", "").replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"TERESA_TRUSTED_PROXIES has {item!r}, which is not an address or CIDR; "
                              "list them like 10.0.0.0/8, 192.168.1.5.") from None
    return tuple(networks)


@dataclass(frozen=True)
class StorageSettings:
    type: str = "local"
    root: Path = Path(".teresa/storage")
    aws_key: str = ""
    aws_secret: str = field(default="", repr=False)
    aws_region: str = "us-east-1"
    aws_bucket: str = ""
    aws_endpoint: str = ""

    def to_env(self) -> dict[str, str]:
        """The environment that selects this same storage in a child process or pod."""
        env = {"TERESAFILESTORAGE_TYPE": self.type}
        if self.type == "local":
            env["TERESAFILESTORAGE_LOCAL_ROOT"] = str(self.root)
        else:
            env.update(
                TERESAFILESTORAGE_AWS_KEY=self.aws_key,
                TERESAFILESTORAGE_AWS_SECRET=self.aws_secret,
                TERESAFILESTORAGE_AWS_REGION=self.aws_region,
                TERESAFILESTORAGE_AWS_BUCKET=self.aws_bucket,
                TERESAFILESTORAGE_AWS_ENDPOINT=self.aws_endpoint,
            )
        return env


def storage_from_env(env: Mapping[str, str], data_dir: Path) -> StorageSettings:
    kind = env.get("TERESAFILESTORAGE_TYPE", "").strip().lower() or "local"
    if kind not in ("local", "s3"):
        raise ConfigError(f"TERESAFILESTORAGE_TYPE={kind!r} is not supported; use local or s3.")
    settings = StorageSettings(
        type=kind,
        root=Path(env.get("TERESAFILESTORAGE_LOCAL_ROOT") or data_dir / "storage"),
        aws_key=env.get("TERESAFILESTORAGE_AWS_KEY", ""),
        aws_secret=env.get("TERESAFILESTORAGE_AWS_SECRET", ""),
        aws_region=env.get("TERESAFILESTORAGE_AWS_REGION", "") or "us-east-1",
        aws_bucket=env.get("TERESAFILESTORAGE_AWS_BUCKET", ""),
        aws_endpoint=env.get("TERESAFILESTORAGE_AWS_ENDPOINT", ""),
    )
    if kind == "s3" and not settings.aws_bucket:
        raise ConfigError("TERESAFILESTORAGE_TYPE=s3 needs TERESAFILESTORAGE_AWS_BUCKET; set the bucket name.")
    return settings


@dataclass(frozen=True)
class NotificationSettings:
    """Team notifications (webhooks, e-mail) and the crash-loop detector that feeds them."""

    smtp_url: str = field(default="", repr=False)  # smtp[s]://[user:password@]host[:port][?from=addr]
    allow_private: bool = False   # deliver to loopback, link-local and private addresses too
    retry_base: float = 10.0      # first retry after this many seconds, doubling each time
    max_attempts: int = 8
    timeout: float = 10.0         # per delivery attempt
    crashloop_restarts: int = 3   # this many restarts of a process type ...
    crashloop_window: float = 600.0  # ... within this many seconds is a crash loop
    crashloop_interval: float = 15.0  # how often the runtime's processes are looked at


def notifications_from_env(env: Mapping[str, str]) -> NotificationSettings:
    defaults = NotificationSettings()
    return NotificationSettings(
        smtp_url=env.get("TERESA_SMTP_URL", "").strip(),
        allow_private=_bool(env, "TERESA_NOTIFICATIONS_ALLOW_PRIVATE"),
        retry_base=_seconds(env, "TERESA_NOTIFICATIONS_RETRY_BASE", defaults.retry_base),
        max_attempts=max(1, _int(env, "TERESA_NOTIFICATIONS_MAX_ATTEMPTS", defaults.max_attempts)),
        timeout=_seconds(env, "TERESA_NOTIFICATIONS_TIMEOUT", defaults.timeout),
        crashloop_restarts=max(1, _int(env, "TERESA_CRASHLOOP_RESTARTS", defaults.crashloop_restarts)),
        crashloop_window=_seconds(env, "TERESA_CRASHLOOP_WINDOW", defaults.crashloop_window),
        crashloop_interval=_seconds(env, "TERESA_CRASHLOOP_INTERVAL", defaults.crashloop_interval),
    )


def database_url(env: Mapping[str, str], data_dir: Path) -> str:
    if url := env.get("TERESADB_URL", "").strip():
        return url
    if host := env.get("TERESADB_HOSTNAME", "").strip():
        user = quote(env.get("TERESADB_USERNAME", "") or "teresa", safe="")
        password = env.get("TERESADB_PASSWORD", "")
        auth = f"{user}:{quote(password, safe='')}" if password else user
        port = _int(env, "TERESADB_PORT", 3306)
        name = env.get("TERESADB_DATABASE", "") or "teresa"
        return f"mysql+pymysql://{auth}@{host}:{port}/{name}?charset=utf8mb4"
    return f"sqlite:///{data_dir / 'teresa.sqlite'}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".teresa")
    apps_dir: Path | None = None            # the local runtime's app directories (slugs, HOME, TMPDIR); see local_apps_dir
    app_uid_base: int = 2_000_000           # as root, app N runs as uid (and gid) app_uid_base + N
    app_isolation: bool | None = None       # per-app users: None = when root; False = off (single-tenant)
    ssh_addr: tuple[str, int] = ("127.0.0.1", 2222)
    ssh_host_key: str = field(default="", repr=False)
    public_ssh_addr: tuple[str, int] = ("127.0.0.1", 2222)
    http_addr: tuple[str, int] = ("127.0.0.1", 8081)
    metrics_token: str = field(default="", repr=False)  # /metrics' bearer token; "": generated in the data dir
    router_addr: tuple[str, int] = ("127.0.0.1", 8080)
    domain: str = "localhost"
    trusted_proxies: tuple[Network, ...] = ()
    database_url: str = field(default="", repr=False)
    storage: StorageSettings = field(default_factory=StorageSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    runtime: str = "local"
    build_timeout: int = 15 * 60
    rollout_timeout: int = 5 * 60
    max_push_bytes: int = 1 << 30
    max_concurrent_builds: int = field(default_factory=lambda: os.cpu_count() or 2)
    max_source_bytes: int = 500 << 20  # the archived tree, uncompressed; a push may carry 4x this unpacked
    max_file_bytes: int = 100 << 20    # one file (git object) of a push, uncompressed
    revision_history_limit: int = 5
    login_timeout: int = 30
    ssh_session_max_seconds: int = 24 * 60 * 60
    require_domain_verification: bool = False       # custom domains route only once an admin approved them
    router_header_timeout: int = 15                 # seconds a client has to send a request's headers
    router_response_timeout: int = 30               # seconds an app has to start answering a request it was sent
    router_max_connections_per_address: int = 256   # open router connections from one client address
    backup_interval: int = 60 * 60  # seconds between backups of the database; 0: none
    audit_retention_days: int = 365  # audit records older than this are pruned; 0: kept forever
    dashboard_enabled: bool = True   # default: on with the local runtime, off on (or in) Kubernetes
    dashboard_addr: tuple[str, int] = ("127.0.0.1", 8082)
    dashboard_url: str = "http://127.0.0.1:8082"  # where browsers reach it; https:// makes cookies Secure
    deploy_lease_seconds: int = 30  # a dead replica's deploy lock (and periodic jobs) expire after this
    replica_name: str = "teresa"  # this process in lease rows and logs (the pod's name on Kubernetes)
    login_budget_replicas: int = 1  # the failed-login budget is split evenly over this many replicas
    log_format: str = "console"
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def push_seconds(self) -> int:
        """The longest a push's deploy can take once received: a build and a release phase (each bounded by
        build_timeout) and a rollout given rollout_timeout to progress, plus a minute; what a draining server
        waits for (server/serve.py) and deploy/'s terminationGracePeriodSeconds must cover."""
        return 2 * self.build_timeout + self.rollout_timeout + 60

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("TERESA_DATA_DIR") or ".teresa").absolute()
        runtime = env.get("TERESA_RUNTIME", "").strip().lower() or _detect_runtime(env)
        if runtime not in ("local", "kubernetes"):
            raise ConfigError(f"TERESA_RUNTIME={runtime!r} is not supported; use local or kubernetes.")
        return cls(
            data_dir=data_dir,
            apps_dir=Path(env["TERESA_APPS_DIR"]).absolute() if env.get("TERESA_APPS_DIR", "").strip() else None,
            app_uid_base=_positive(env, "TERESA_APP_UID_BASE", 2_000_000),
            app_isolation=_isolation(env),
            ssh_addr=parse_addr(env.get("TERESA_SSH_ADDR") or "127.0.0.1:2222", "TERESA_SSH_ADDR"),
            ssh_host_key=env.get("TERESA_SSH_HOST_KEY", ""),
            public_ssh_addr=_public_ssh_addr(env),
            http_addr=parse_addr(env.get("TERESA_HTTP_ADDR") or "127.0.0.1:8081", "TERESA_HTTP_ADDR"),
            metrics_token=_metrics_token(env),
            router_addr=parse_addr(env.get("TERESA_ROUTER_ADDR") or "127.0.0.1:8080", "TERESA_ROUTER_ADDR"),
            domain=env.get("TERESA_DOMAIN", "").strip() or "localhost",
            trusted_proxies=trusted_proxies(env),
            database_url=database_url(env, data_dir),
            storage=storage_from_env(env, data_dir),
            kubernetes=kubernetes_from_env(env),
            notifications=notifications_from_env(env),
            runtime=runtime,
            build_timeout=_int(env, "TERESA_BUILD_TIMEOUT", 15 * 60),
            rollout_timeout=_int(env, "TERESA_ROLLOUT_TIMEOUT", 5 * 60),
            max_push_bytes=_int(env, "TERESA_MAX_PUSH_BYTES", 1 << 30),
            max_concurrent_builds=_int(env, "TERESA_MAX_CONCURRENT_BUILDS", os.cpu_count() or 2),
            max_source_bytes=_positive(env, "TERESA_MAX_SOURCE_BYTES", 500 << 20),
            max_file_bytes=_positive(env, "TERESA_MAX_FILE_BYTES", 100 << 20),
            revision_history_limit=_int(env, "TERESADEPLOY_REVISION_HISTORY_LIMIT", 5),
            login_timeout=_int(env, "TERESA_LOGIN_TIMEOUT", 30),
            ssh_session_max_seconds=_positive(env, "TERESA_SSH_SESSION_MAX_SECONDS", 24 * 60 * 60),
            require_domain_verification=_bool(env, "TERESA_REQUIRE_DOMAIN_VERIFICATION"),
            router_header_timeout=_positive(env, "TERESA_ROUTER_HEADER_TIMEOUT", 15),
            router_response_timeout=_positive(env, "TERESA_ROUTER_RESPONSE_TIMEOUT", 30),
            router_max_connections_per_address=_positive(env, "TERESA_ROUTER_MAX_CONNECTIONS_PER_ADDRESS", 256),
            backup_interval=_backup_interval(env),
            audit_retention_days=_retention_days(env),
            dashboard_enabled=_bool(env, "TERESA_DASHBOARD_ENABLED",
                                    default=runtime == "local" and not env.get("KUBERNETES_SERVICE_HOST")),
            dashboard_addr=parse_addr(env.get("TERESA_DASHBOARD_ADDR") or "127.0.0.1:8082", "TERESA_DASHBOARD_ADDR"),
            dashboard_url=_dashboard_url(env),
            deploy_lease_seconds=_positive(env, "TERESA_DEPLOY_LEASE_SECONDS", 30),
            replica_name=_replica_name(env, data_dir),
            login_budget_replicas=_positive(env, "TERESA_REPLICAS", 1),
            log_format=env.get("TERESA_LOG_FORMAT", "").strip().lower() or "console",
            env=env,
        )


def _metrics_token(env: Mapping[str, str]) -> str:
    token = env.get("TERESA_METRICS_TOKEN", "").strip()
    if token and (len(token) < 16 or not all("!" <= c <= "~" for c in token)):
        raise ConfigError("TERESA_METRICS_TOKEN must be at least 16 printable characters without spaces; "
                          "make one with: openssl rand -hex 32")
    return token


def _isolation(env: Mapping[str, str]) -> bool | None:
    value = env.get("TERESA_APP_ISOLATION", "").strip().lower() or "auto"
    if value not in ("auto", "off"):
        raise ConfigError(f"TERESA_APP_ISOLATION={value!r} is not supported; use auto (per-app users when root) or off.")
    return None if value == "auto" else False


def local_apps_dir(settings: Settings) -> Path:
    """TERESA_APPS_DIR, else a sibling of the data directory (`<data dir>-apps`): outside it, so app users can reach it."""
    return settings.apps_dir or Path(f"{settings.data_dir.absolute()}-apps")


def _backup_interval(env: Mapping[str, str]) -> int:
    seconds = _int(env, "TERESA_BACKUP_INTERVAL", 60 * 60)
    if seconds < 0:
        raise ConfigError(f"TERESA_BACKUP_INTERVAL={seconds} is negative; give seconds between backups, or 0 for none.")
    return seconds


def _retention_days(env: Mapping[str, str]) -> int:
    days = _int(env, "TERESA_AUDIT_RETENTION_DAYS", 365)
    if days < 0:
        raise ConfigError(f"TERESA_AUDIT_RETENTION_DAYS={days} is negative; give days to keep records, or 0 for ever.")
    return days


def _dashboard_url(env: Mapping[str, str]) -> str:
    """The dashboard's address for browsers (in dashboard:login links); defaults to TERESA_DASHBOARD_ADDR."""
    if value := env.get("TERESA_DASHBOARD_URL", "").strip().rstrip("/"):
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"TERESA_DASHBOARD_URL={value!r} is not an http(s) URL; set it like "
                              "https://teresa.example.com.")
        return value
    host, port = parse_addr(env.get("TERESA_DASHBOARD_ADDR") or "127.0.0.1:8082", "TERESA_DASHBOARD_ADDR")
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _replica_name(env: Mapping[str, str], data_dir: Path) -> str:
    """TERESA_REPLICA_NAME, else the host's name (a pod's name on Kubernetes) and a digest of the data dir.

    Unique among live replicas (two cannot share a data dir, their repository cache) and the same again
    when a replica restarts: crash recovery (controller/recovery.py) treats leases held under its own
    name as left by the process it replaces.
    """
    if name := env.get("TERESA_REPLICA_NAME", "").strip():
        return name
    host = env.get("HOSTNAME", "").strip() or socket.gethostname()
    return f"{host}-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:8]}"


def _detect_runtime(env: Mapping[str, str]) -> str:
    if env.get("TERESAK8S_HOST") or env.get("TERESAK8S_CONFIG_FILE"):
        return "kubernetes"
    if env.get("KUBERNETES_SERVICE_HOST") and Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        return "kubernetes"
    return "local"


def _public_ssh_addr(env: Mapping[str, str]) -> tuple[str, int]:
    """Where users reach the SSH server (shown in git remotes); defaults to TERESA_SSH_ADDR."""
    if value := env.get("TERESA_SSH_PUBLIC_ADDR", "").strip():
        return parse_addr(value if ":" in value else f"{value}:22", "TERESA_SSH_PUBLIC_ADDR")
    host, port = parse_addr(env.get("TERESA_SSH_ADDR") or "127.0.0.1:2222", "TERESA_SSH_ADDR")
    return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), port
