"""Teresa's settings, read once from the environment, each declared once (core/setting.py).

The names of the original Teresa are kept (TERESADB_*, TERESAFILESTORAGE_*, TERESAK8S_*, TERESADEPLOY_*);
newer settings use the TERESA_ prefix. A new setting is a field declared with `setting(NAME, shape,
default=..., help=...)` where its row belongs (the fields' order is the README's configuration table's),
then `make docs`; a default that follows from other settings is one entry of `derived` in `from_env`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote

from core.envparse import (ConfigError, Network, absolute_path, address, at_least_one, boolean, integer, lowercase,
                           networks, non_negative, one_of, parse_addr, path, positive, seconds, text)
from core.kubesettings import KubernetesSettings, kubernetes_from_env
from core.setting import group, made_from, read, setting, to_env

__all__ = ["ConfigError", "DatabaseSettings", "KubernetesSettings", "Network", "NotificationSettings", "Settings",
           "StorageSettings", "kubernetes_from_env", "local_apps_dir", "storage_from_env", "trusted_proxies"]


@dataclass(frozen=True)
class DatabaseSettings:
    """The original Teresa's MySQL settings, and TERESADB_URL, which wins over them: see `url_for`."""

    hostname: str = setting("TERESADB_HOSTNAME", text, default="", shown="unset",
                            help="a non-empty hostname selects MySQL/MariaDB")
    port: int = setting("TERESADB_PORT", integer, default=3306, joins=True)
    username: str = setting("TERESADB_USERNAME", text, default="teresa", joins=True, as_given=True)
    password: str = setting("TERESADB_PASSWORD", text, default="", joins=True, as_given=True, repr=False)
    database: str = setting("TERESADB_DATABASE", text, default="teresa", joins=True, as_given=True)
    url: str = setting("TERESADB_URL", text, default="", repr=False,
                       help="any SQLAlchemy URL (PostgreSQL: `postgresql+psycopg://…`)")

    def url_for(self, data_dir: Path) -> str:
        """The SQLAlchemy URL: TERESADB_URL, else MySQL when a hostname is set, else SQLite in the data dir."""
        if self.url:
            return self.url
        if self.hostname:
            user = quote(self.username, safe="")
            auth = f"{user}:{quote(self.password, safe='')}" if self.password else user
            return f"mysql+pymysql://{auth}@{self.hostname}:{self.port}/{self.database}?charset=utf8mb4"
        return f"sqlite:///{data_dir / 'teresa.sqlite'}"


def database_url(env: Mapping[str, str], data_dir: Path) -> str:
    return read(DatabaseSettings, env).url_for(data_dir)


@dataclass(frozen=True)
class StorageSettings:
    type: str = setting("TERESAFILESTORAGE_TYPE", one_of("local", "s3"), default="local", help="`local` or `s3`")
    root: Path = setting("TERESAFILESTORAGE_LOCAL_ROOT", path, default=Path(".teresa/storage"),
                         shown="`<data dir>/storage`", help="`local` storage: the directory objects are kept in")
    aws_key: str = setting("TERESAFILESTORAGE_AWS_KEY", text, default="", shown="", as_given=True,
                           help="S3 (or S3-compatible: SeaweedFS, MinIO)")
    aws_secret: str = setting("TERESAFILESTORAGE_AWS_SECRET", text, default="", joins=True, as_given=True,
                              repr=False)
    aws_region: str = setting("TERESAFILESTORAGE_AWS_REGION", text, default="us-east-1", joins=True, as_given=True)
    aws_bucket: str = setting("TERESAFILESTORAGE_AWS_BUCKET", text, default="", joins=True, as_given=True)
    aws_endpoint: str = setting("TERESAFILESTORAGE_AWS_ENDPOINT", text, default="", joins=True, as_given=True)

    def to_env(self) -> dict[str, str]:
        """The environment that selects this same storage in a child process or pod."""
        if self.type == "local":
            return to_env(self, "type", "root")
        return to_env(self, "type", "aws_key", "aws_secret", "aws_region", "aws_bucket", "aws_endpoint")


def storage_from_env(env: Mapping[str, str], data_dir: Path) -> StorageSettings:
    settings = read(StorageSettings, env, derived={"root": lambda _: data_dir / "storage"})
    if settings.type == "s3" and not settings.aws_bucket:
        raise ConfigError("TERESAFILESTORAGE_TYPE=s3 needs TERESAFILESTORAGE_AWS_BUCKET; set the bucket name.")
    return settings


@dataclass(frozen=True)
class NotificationSettings:
    """Team notifications (webhooks, e-mail) and the crash-loop detector that feeds them."""

    smtp_url: str = setting(
        "TERESA_SMTP_URL", text, default="", repr=False,
        help="e-mail notifications: `smtp://`, `smtp+starttls://` or "
             "`smtps://[USER:PASSWORD@]HOST[:PORT][?from=ADDRESS]`")
    allow_private: bool = setting("TERESA_NOTIFICATIONS_ALLOW_PRIVATE", boolean, default=False,
                                  help="also deliver to loopback, link-local and private addresses (see below)")
    retry_base: float = setting(
        "TERESA_NOTIFICATIONS_RETRY_BASE", seconds, default=10.0,
        help="seconds before the first retry of a failed delivery; each next wait doubles (at most an hour)")
    max_attempts: int = setting("TERESA_NOTIFICATIONS_MAX_ATTEMPTS", at_least_one, default=8,
                                help="attempts before a delivery is given up")
    timeout: float = setting("TERESA_NOTIFICATIONS_TIMEOUT", seconds, default=10.0,
                             help="seconds one delivery attempt may take")
    crashloop_restarts: int = setting(
        "TERESA_CRASHLOOP_RESTARTS", at_least_one, default=3,
        help="this many restarts of a process type within this many seconds is a crash loop")
    crashloop_window: float = setting("TERESA_CRASHLOOP_WINDOW", seconds, default=600.0, joins=True)
    crashloop_interval: float = setting("TERESA_CRASHLOOP_INTERVAL", seconds, default=15.0,
                                        help="seconds between looks at the runtime's processes (restart counts)")


def _public_addr(name: str, value: str, default: tuple[str, int]) -> tuple[str, int]:
    return parse_addr(value if ":" in value else f"{value}:22", name)


def _browser_url(name: str, value: str, default: str) -> str:
    url = value.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={url!r} is not an http(s) URL; set it like https://teresa.example.com.")
    return url


def _isolation(name: str, value: str, default: bool | None) -> bool | None:
    """auto: per-app users when Teresa runs as root (None); off: single-tenant (False)."""
    choice = one_of("auto", "off", use="auto (per-app users when root) or off")(name, value, "auto")
    return None if choice == "auto" else False


def _metrics_token(name: str, value: str, default: str) -> str:
    token = value.strip()
    if token and (len(token) < 16 or not all("!" <= c <= "~" for c in token)):
        raise ConfigError(f"{name} must be at least 16 printable characters without spaces; "
                          "make one with: openssl rand -hex 32")
    return token or default


@dataclass(frozen=True)
class Settings:
    data_dir: Path = setting("TERESA_DATA_DIR", absolute_path, default=Path(".teresa"), shown="`./.teresa`",
                             help="state: SQLite database, repository cache, local storage, SSH host key")
    ssh_addr: tuple[str, int] = setting("TERESA_SSH_ADDR", address, default=("127.0.0.1", 2222), help="SSH listener")
    public_ssh_addr: tuple[str, int] = setting("TERESA_SSH_PUBLIC_ADDR", _public_addr, default=("127.0.0.1", 2222),
                                               shown="the SSH address",
                                               help="host:port users push to (shown in git remotes)")
    ssh_host_key: str = setting("TERESA_SSH_HOST_KEY", text, default="", as_given=True, repr=False,
                                shown="generated once in the data dir", help="host key file path, or the PEM itself")
    router_addr: tuple[str, int] = setting("TERESA_ROUTER_ADDR", address, default=("127.0.0.1", 8080),
                                           help="local runtime's HTTP router")
    domain: str = setting("TERESA_DOMAIN", text, default="localhost", help="apps answer at `APP.<domain>`")
    trusted_proxies: tuple[Network, ...] = setting(
        "TERESA_TRUSTED_PROXIES", networks, default=(), shown="none",
        help="addresses or CIDRs (`10.0.0.0/8, 192.168.1.5`) of proxies in front of the local router whose "
             "`X-Forwarded-For`/`-Proto` it keeps; from anyone else they are replaced")
    metrics_token: str = setting("TERESA_METRICS_TOKEN", _metrics_token, default="", repr=False, as_given=True,
                                 shown="generated once into `<data dir>/metrics-token`",
                                 help="the bearer token `/metrics` requires (`/healthz` and `/readyz` need none); "
                                      "at least 16 characters")
    http_addr: tuple[str, int] = setting("TERESA_HTTP_ADDR", address, default=("127.0.0.1", 8081),
                                         help="`/healthz`, `/readyz`, `/metrics`")
    database_url: str = made_from(DatabaseSettings, default="", repr=False)
    storage: StorageSettings = group(StorageSettings)
    runtime: str = setting(
        "TERESA_RUNTIME", one_of("local", "kubernetes"), default="local", shown="detected",
        help="`local` or `kubernetes` (Kubernetes when `TERESAK8S_HOST` or `TERESAK8S_CONFIG_FILE` is set, "
             "or in a pod)")
    revision_history_limit: int = setting("TERESADEPLOY_REVISION_HISTORY_LIMIT", integer, default=5,
                                          help="Deployments' revision history")
    build_timeout: int = setting("TERESA_BUILD_TIMEOUT", integer, default=15 * 60, help="seconds a build may take")
    rollout_timeout: int = setting(
        "TERESA_ROLLOUT_TIMEOUT", integer, default=5 * 60,
        help="a rollout that makes no progress (no replica updated or available) for this many seconds is undone; "
             "a slow one that keeps progressing goes on (on Kubernetes also the Deployments' "
             "`progressDeadlineSeconds`)")
    max_push_bytes: int = setting("TERESA_MAX_PUSH_BYTES", integer, default=1 << 30, help="largest accepted push")
    max_concurrent_builds: int = setting(
        "TERESA_MAX_CONCURRENT_BUILDS", integer, default=os.cpu_count() or 2, shown="the CPU count",
        help="builds running at once on this server; later pushes wait in line and are told their place "
             "(`-----> Waiting for a build slot (2 ahead)`)")
    max_file_bytes: int = setting(
        "TERESA_MAX_FILE_BYTES", positive, default=100 << 20,
        help="largest file (git object) a push may hold, uncompressed; a larger one is refused before it is "
             "unpacked")
    max_source_bytes: int = setting(
        "TERESA_MAX_SOURCE_BYTES", positive, default=500 << 20,
        help="the pushed tree's files together, uncompressed; a push may carry 4× this unpacked (history "
             "included). Archiving also stops after `TERESA_BUILD_TIMEOUT`")
    login_timeout: int = setting("TERESA_LOGIN_TIMEOUT", integer, default=30,
                                 help="seconds an SSH client has to log in once connected")
    ssh_session_max_seconds: int = setting(
        "TERESA_SSH_SESSION_MAX_SECONDS", positive, default=24 * 60 * 60,
        help="an SSH connection is closed this long after it logged in (each command re-reads its user, key and "
             "admin flag anyway)")
    push_keepalive_seconds: float = setting(
        "TERESA_PUSH_KEEPALIVE_SECONDS", seconds, default=5.0,
        help="a push whose build prints nothing for this many seconds is sent a keepalive (well under the 10 s "
             "an idle-timeout proxy may allow)")
    require_domain_verification: bool = setting(
        "TERESA_REQUIRE_DOMAIN_VERIFICATION", boolean, default=False,
        help="`true`: a custom domain added by a team member routes only once an admin runs "
             "`domains:verify APP HOST`")
    router_header_timeout: int = setting(
        "TERESA_ROUTER_HEADER_TIMEOUT", positive, default=15,
        help="seconds a client of the local router has to send a request's headers")
    router_response_timeout: int = setting(
        "TERESA_ROUTER_RESPONSE_TIMEOUT", positive, default=30,
        help="seconds an app has to begin answering a request the local router passed it whole; then the client "
             "gets a 503")
    router_max_connections_per_address: int = setting(
        "TERESA_ROUTER_MAX_CONNECTIONS_PER_ADDRESS", positive, default=256,
        help="open local-router connections from one client address; more are answered 503")
    log_format: str = setting("TERESA_LOG_FORMAT", lowercase, default="console",
                              help="`json` for one JSON event per line")
    notifications: NotificationSettings = group(NotificationSettings)
    backup_interval: int = setting(
        "TERESA_BACKUP_INTERVAL", non_negative("give seconds between backups, or 0 for none"), default=60 * 60,
        help="seconds between backups of the database into storage (`teresa backup:list`); `0`: none")
    audit_retention_days: int = setting(
        "TERESA_AUDIT_RETENTION_DAYS", non_negative("give days to keep records, or 0 for ever"), default=365,
        help="audit records older than this are pruned once a day (the pruning is recorded); `0` keeps them for "
             "ever")
    dashboard_enabled: bool = setting("TERESA_DASHBOARD_ENABLED", boolean, default=True,
                                      shown="on with the local runtime, off on Kubernetes",
                                      help="serve the web dashboard")
    dashboard_addr: tuple[str, int] = setting("TERESA_DASHBOARD_ADDR", address, default=("127.0.0.1", 8082),
                                              help="the dashboard's listener")
    dashboard_url: str = setting(
        "TERESA_DASHBOARD_URL", _browser_url, default="http://127.0.0.1:8082",
        shown="`http://` + the dashboard address",
        help="where browsers reach it (in `dashboard:login` links); `https://…` makes its cookies `Secure`")
    login_budget_replicas: int = setting("TERESA_REPLICAS", positive, default=1,
                                         help="how many replicas share the password-login budget (see below)")
    deploy_lease_seconds: int = setting(
        "TERESA_DEPLOY_LEASE_SECONDS", positive, default=30,
        help="a replica that dies mid-deploy holds the app's deploy lock (and the backup) at most this long; "
             "one that cannot renew its lock within it (or finds it taken over) stops that deploy before its next "
             "write and says so")
    replica_name: str = setting(
        "TERESA_REPLICA_NAME", text, default="teresa",
        shown="`$HOSTNAME` (the pod's name) and a digest of the data dir",
        help="this process in lock rows and logs; unique per live replica, the same after a restart")
    apps_dir: Path | None = setting(  # None: see local_apps_dir
        "TERESA_APPS_DIR", absolute_path, default=None, shown="`<data dir>-apps`",
        help="local runtime: apps' directories (unpacked slugs, `HOME`, `TMPDIR`); outside the data directory, "
             "and every parent must be enterable by other users")
    app_uid_base: int = setting(
        "TERESA_APP_UID_BASE", positive, default=2_000_000,
        help="local runtime as root: app N runs as uid and gid `base + N` (no `/etc/passwd` entry)")
    app_isolation: bool | None = setting(
        "TERESA_APP_ISOLATION", _isolation, default=None, shown="`auto`",
        help="`auto`: per-app users when Teresa runs as root; `off`: everything runs as Teresa's user "
             "(single-tenant)")
    kubernetes: KubernetesSettings = group(KubernetesSettings)
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
        outside = not env.get("KUBERNETES_SERVICE_HOST")  # not in a pod
        derived: dict[str, Callable[[Settings], object]] = {  # defaults that follow from other settings, in order
            "data_dir": lambda s: s.data_dir.absolute(),
            "database_url": lambda s: database_url(env, s.data_dir),
            "storage": lambda s: storage_from_env(env, s.data_dir),
            "runtime": lambda s: _detect_runtime(s.kubernetes, env),
            "public_ssh_addr": lambda s: _reachable(s.ssh_addr),
            "dashboard_enabled": lambda s: s.runtime == "local" and outside,
            "dashboard_url": lambda s: _url(_reachable(s.dashboard_addr)),
            "replica_name": lambda s: _replica_name(env, s.data_dir),
        }
        return read(cls, env, derived=derived, env=env, kubernetes=kubernetes_from_env(env),
                    notifications=read(NotificationSettings, env))


def trusted_proxies(env: Mapping[str, str]) -> tuple[Network, ...]:
    """TERESA_TRUSTED_PROXIES alone: CIDRs (or addresses) whose X-Forwarded-For/-Proto the router keeps."""
    return read(Settings, env).trusted_proxies


def local_apps_dir(settings: Settings) -> Path:
    """TERESA_APPS_DIR, else a sibling of the data directory (`<data dir>-apps`): outside it, so app users can reach it."""
    return settings.apps_dir or Path(f"{settings.data_dir.absolute()}-apps")


def _reachable(addr: tuple[str, int]) -> tuple[str, int]:
    """A listener's address as a client on this host reaches it: a wildcard host is the loopback."""
    host, port = addr
    return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), port


def _url(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _replica_name(env: Mapping[str, str], data_dir: Path) -> str:
    """The host's name (a pod's name on Kubernetes) and a digest of the data dir.

    Unique among live replicas (two cannot share a data dir, their repository cache) and the same again
    when a replica restarts: crash recovery (controller/recovery.py) treats leases held under its own
    name as left by the process it replaces.
    """
    host = env.get("HOSTNAME", "").strip() or socket.gethostname()
    return f"{host}-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:8]}"


def _detect_runtime(kubernetes: KubernetesSettings, env: Mapping[str, str]) -> str:
    if kubernetes.host or kubernetes.config_file:
        return "kubernetes"
    if env.get("KUBERNETES_SERVICE_HOST") and Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        return "kubernetes"
    return "local"
