"""A thin async wrapper over the official `kubernetes` client.

Calls run in worker threads (`asyncio.to_thread`); objects go in and come out
as plain dicts, the same shape `manifests` renders. `apply` is server-side
apply with Teresa as the field manager: it creates a missing object and
otherwise makes Teresa's fields exactly what the manifest says.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import kubernetes.client
import kubernetes.config
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from controller.runtime.kubernetes.objects import LiveObject, Manifest
from core import log
from core.config import KubernetesSettings

logger = log.get("runtime.kubernetes")

FIELD_MANAGER = "teresa"
APPLY_PATCH = "application/apply-patch+yaml"
# (connect, read) seconds for log streams: a follow silent for the read timeout is reopened (no line is lost),
# so a connection that died without a word is noticed.
LOG_TIMEOUTS = (10, 300)
KEPT_WARNINGS = 100


class KubeError(Exception):
    """A failed call to the Kubernetes API; the message is one sentence, `status` the HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFound(KubeError):
    pass


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The object's path; a namespaced kind's list in every namespace with namespace ALL_NAMESPACES."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace != ALL_NAMESPACES:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: give its namespace.")
            prefix += f"/namespaces/{namespace}"
        return f"{prefix}/{self.plural}" + (f"/{name}" if name else "")


ALL_NAMESPACES = "*"

KINDS = {
    (k.api_version, k.kind): k
    for k in (
        Kind("v1", "Namespace", "namespaces", namespaced=False),
        Kind("v1", "Secret", "secrets"),
        Kind("v1", "ServiceAccount", "serviceaccounts"),
        Kind("v1", "LimitRange", "limitranges"),
        Kind("v1", "ResourceQuota", "resourcequotas"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Kind("v1", "Pod", "pods"),
        Kind("v1", "Service", "services"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("apps/v1", "ReplicaSet", "replicasets"),
        Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
        Kind("batch/v1", "CronJob", "cronjobs"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    )
}


def kind_of(api_version: str, kind: str) -> Kind:
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"Teresa does not manage {kind} objects of {api_version}.") from None


def _configuration(settings: KubernetesSettings) -> kubernetes.client.Configuration:
    """Blocking (reads files): TERESAK8S_HOST, else TERESAK8S_CONFIG_FILE, else the pod's service account."""
    config = kubernetes.client.Configuration()
    try:
        if settings.host:
            config.host = settings.host.rstrip("/")
            config.username = settings.username
            config.password = settings.password
            config.verify_ssl = not settings.insecure
        elif settings.config_file:
            kubernetes.config.load_kube_config(
                config_file=settings.config_file, client_configuration=config, persist_config=False)
        else:
            kubernetes.config.load_incluster_config(client_configuration=config)
    except (ConfigException, OSError) as exc:
        source = f"TERESAK8S_CONFIG_FILE={settings.config_file}" if settings.config_file else "the pod's service account"
        raise KubeError(
            f"Cannot configure the Kubernetes client from {source} ({exc}); "
            "set TERESAK8S_HOST or TERESAK8S_CONFIG_FILE to reach the cluster."
        ) from None
    return config


def _api_client(settings: KubernetesSettings) -> kubernetes.client.ApiClient:
    config = _configuration(settings)
    if settings.host and settings.username:
        return kubernetes.client.ApiClient(config, header_name="Authorization",
                                           header_value=config.get_basic_auth_token())
    return kubernetes.client.ApiClient(config)


def _error(exc: ApiException | HTTPError, what: str) -> KubeError:
    if isinstance(exc, HTTPError):
        return KubeError(f"Cannot reach the Kubernetes API to {what} ({type(exc).__name__}); check TERESAK8S_HOST.")
    message = exc.reason or "error"
    try:
        message = json.loads(exc.body or "{}").get("message") or message
    except (ValueError, AttributeError):
        pass
    cls = KubeNotFound if exc.status == 404 else KubeError
    return cls(f"Kubernetes refused to {what}: {message}", exc.status or 0)


@dataclass(frozen=True)
class Endpoint:
    """What a WebSocket to the API server needs (attach): its base URL, the auth headers, the TLS context."""

    url: str
    headers: dict[str, str]
    ssl: ssl.SSLContext


def _endpoint(api: kubernetes.client.ApiClient) -> Endpoint:
    """Blocking (reads certificate files, may refresh a token)."""
    config = api.configuration
    headers = {k: v for k, v in api.default_headers.items() if k.lower() == "authorization"}
    for auth in config.auth_settings().values():
        if auth.get("in") == "header" and auth.get("value"):
            headers[auth["key"]] = auth["value"]
    context = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return Endpoint(config.host.rstrip("/"), headers, context)


class KubeClient:
    """One connection pool to one cluster. Create with `await KubeClient.connect(settings)`."""

    def __init__(self, api: kubernetes.client.ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        self._api = api
        self._core = kubernetes.client.CoreV1Api(api)
        self._field_manager = field_manager
        # The API server's `Warning` headers (deprecations, PodSecurity `warn` violations), newest last; each is logged.
        self.warnings: collections.deque[str] = collections.deque(maxlen=KEPT_WARNINGS)

    @classmethod
    async def connect(cls, settings: KubernetesSettings) -> KubeClient:
        return cls(await asyncio.to_thread(_api_client, settings))

    async def close(self) -> None:
        await asyncio.to_thread(self._api.close)

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _call(self, method: str, path: str, what: str, body: object = None,
              query: list[tuple[str, str]] | None = None, content_type: str = "application/json") -> LiveObject:
        try:
            result: LiveObject
            result, _status, headers = self._api.call_api(
                path, method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=False,
            )
        except (ApiException, HTTPError) as exc:
            raise _error(exc, what) from None
        self._note_warnings(what, headers)
        return result

    def _note_warnings(self, what: str, headers: urllib3.HTTPHeaderDict | None) -> None:
        """RFC 7234 warnings (`299 - "text"`), as the API server sends them: logged and kept."""
        for header in (headers.getlist("Warning") if headers is not None else []):
            text = email.utils.unquote(header.split(" ", 2)[-1].strip()) if header[:4] == "299 " else header
            self.warnings.append(f"{what}: {text}")
            logger.warning("the Kubernetes API warned", request=what, warning=text)

    async def request(self, method: str, path: str, what: str, *, body: object = None,
                      query: list[tuple[str, str]] | None = None,
                      content_type: str = "application/json") -> LiveObject:
        """The JSON object the API server answers with (every path Teresa calls answers with an object)."""
        return await asyncio.to_thread(self._call, method, path, what, body, query, content_type)

    async def apply(self, obj: Manifest) -> LiveObject:
        """Create `obj` or bring Teresa's fields of the live object to exactly what it says."""
        kind = kind_of(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return await self.request(
            "PATCH", kind.path(meta.get("namespace"), meta["name"]), f"apply {kind.kind} {meta['name']}",
            body=obj, query=[("fieldManager", self._field_manager), ("force", "true")], content_type=APPLY_PATCH,
        )

    async def apply_all(self, objects: Iterable[Manifest]) -> list[LiveObject]:
        """Apply in order (namespace first): later objects may depend on earlier ones."""
        return [await self.apply(obj) for obj in objects]

    async def patch(self, api_version: str, kind: str, name: str, namespace: str | None,
                    changes: Mapping[str, object]) -> LiveObject:
        """A JSON merge patch: change only the fields `changes` names (e.g. one annotation)."""
        found = kind_of(api_version, kind)
        return await self.request("PATCH", found.path(namespace, name), f"change {kind} {name}",
                                  body=changes, content_type="application/merge-patch+json")

    def open_log(self, namespace: str, pod: str, container: str, *, follow: bool,
                 tail_lines: int | None = None, previous: bool = False) -> urllib3.BaseHTTPResponse:
        """Blocking, for a worker thread: the container's log with timestamps as an open HTTP response."""
        options: dict[str, object] = {"container": container, "follow": follow, "timestamps": True,
                                      "previous": previous, "_preload_content": False,
                                      "_request_timeout": LOG_TIMEOUTS}
        if tail_lines is not None:
            options["tail_lines"] = tail_lines
        try:
            response: urllib3.BaseHTTPResponse = self._core.read_namespaced_pod_log(pod, namespace, **options)
        except (ApiException, HTTPError) as exc:
            raise _error(exc, f"read the log of pod {pod}") from None
        return response

    async def endpoint(self) -> Endpoint:
        return await asyncio.to_thread(_endpoint, self._api)

    async def create(self, obj: Manifest) -> LiveObject:
        kind = kind_of(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return await self.request("POST", kind.path(meta.get("namespace")), f"create {kind.kind} {meta['name']}",
                                  body=obj, query=[("fieldManager", self._field_manager)])

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> LiveObject | None:
        found = kind_of(api_version, kind)
        try:
            return await self.request("GET", found.path(namespace, name), f"read {kind} {name}")
        except KubeNotFound:
            return None

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   labels: dict[str, str] | None = None, *, has: tuple[str, ...] = ()) -> list[LiveObject]:
        """Objects with every label of `labels` and a label named by each of `has`; in every namespace with
        namespace ALL_NAMESPACES."""
        found = kind_of(api_version, kind)
        terms = [f"{k}={v}" for k, v in (labels or {}).items()] + list(has)
        query = [("labelSelector", ",".join(terms))] if terms else []
        result = await self.request("GET", found.path(namespace), f"list {found.plural}", query=query)
        items: list[LiveObject] = result.get("items") or []
        return items

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete with background propagation; False if it was already gone."""
        found = kind_of(api_version, kind)
        try:
            await self.request("DELETE", found.path(namespace, name), f"delete {kind} {name}",
                               body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        except KubeNotFound:
            return False
        return True
