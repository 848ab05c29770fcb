"""The Kubernetes objects Teresa renders, typed at the boundary: the subset of each API schema that Teresa fills.

Each top-level object has a Literal `apiVersion` and `kind`, so `Manifest` (any
of them) narrows on `obj["kind"] == "Deployment"`. Parts assembled step by step
(a pod spec, a container) are `total=False`; fields every rendered object has
are required. Objects read back from the API server are not these types but
`LiveObject`: untyped JSON, read defensively with `.get`.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# An object, or any part of one, as the API server returns it (status, defaults and all).
LiveObject = dict[str, Any]


# -- metadata and selectors

class ObjectMeta(TypedDict):
    name: str
    namespace: NotRequired[str]
    labels: NotRequired[dict[str, str]]
    annotations: NotRequired[dict[str, str]]


class TemplateMeta(TypedDict, total=False):
    """The metadata of a pod or job template: no name of its own."""
    labels: dict[str, str]
    annotations: dict[str, str]


class LabelSelector(TypedDict):
    matchLabels: dict[str, str]


class LocalObjectReference(TypedDict):
    name: str


# -- containers

class SecretKeySelector(TypedDict):
    name: str
    key: str


class EnvVarSource(TypedDict):
    secretKeyRef: SecretKeySelector


class EnvVar(TypedDict):
    name: str
    value: NotRequired[str]
    valueFrom: NotRequired[EnvVarSource]


class EnvFromSource(TypedDict):
    secretRef: LocalObjectReference


class VolumeMount(TypedDict):
    name: str
    mountPath: str


class ResourceRequirements(TypedDict, total=False):
    limits: dict[str, str]
    requests: dict[str, str]


class SeccompProfile(TypedDict):
    type: str


class Capabilities(TypedDict):
    drop: list[str]


class SecurityContext(TypedDict, total=False):
    privileged: bool
    allowPrivilegeEscalation: bool
    runAsNonRoot: bool
    runAsUser: int
    capabilities: Capabilities
    seccompProfile: SeccompProfile


class PodSecurityContext(TypedDict, total=False):
    runAsNonRoot: bool
    runAsUser: int
    runAsGroup: int
    fsGroup: int
    seccompProfile: SeccompProfile


class ExecAction(TypedDict):
    command: list[str]


class LifecycleHandler(TypedDict):
    exec: ExecAction


class Lifecycle(TypedDict, total=False):
    preStop: LifecycleHandler


class ContainerPort(TypedDict):
    name: str
    containerPort: int
    protocol: str


class HTTPGetAction(TypedDict):
    path: str
    port: int | str


class TCPSocketAction(TypedDict):
    port: int | str


class Probe(TypedDict, total=False):
    httpGet: HTTPGetAction
    tcpSocket: TCPSocketAction
    initialDelaySeconds: int
    timeoutSeconds: int
    periodSeconds: int
    successThreshold: int
    failureThreshold: int


class Container(TypedDict, total=False):
    name: str
    image: str
    imagePullPolicy: str
    command: list[str]
    workingDir: str
    envFrom: list[EnvFromSource]
    env: list[EnvVar]
    volumeMounts: list[VolumeMount]
    resources: ResourceRequirements
    securityContext: SecurityContext
    lifecycle: Lifecycle
    ports: list[ContainerPort]
    livenessProbe: Probe
    readinessProbe: Probe
    stdin: bool
    stdinOnce: bool
    tty: bool


# -- pods

class EmptyDirVolumeSource(TypedDict, total=False):
    medium: str
    sizeLimit: str


class Volume(TypedDict):
    name: str
    emptyDir: EmptyDirVolumeSource


class PodSpec(TypedDict, total=False):
    restartPolicy: str
    serviceAccountName: str
    automountServiceAccountToken: bool
    enableServiceLinks: bool
    securityContext: PodSecurityContext
    initContainers: list[Container]
    containers: list[Container]
    volumes: list[Volume]
    terminationGracePeriodSeconds: int
    activeDeadlineSeconds: int
    imagePullSecrets: list[LocalObjectReference]


class PodTemplate(TypedDict):
    metadata: TemplateMeta
    spec: PodSpec


class Pod(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Pod"]
    metadata: ObjectMeta
    spec: PodSpec


# -- the app's namespace and what every pod in it relies on

class Namespace(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: ObjectMeta


class ServiceAccount(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ServiceAccount"]
    metadata: ObjectMeta
    automountServiceAccountToken: bool


class LimitRangeItem(TypedDict):
    type: str
    default: dict[str, str]
    defaultRequest: dict[str, str]


class LimitRangeSpec(TypedDict):
    limits: list[LimitRangeItem]


class LimitRange(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["LimitRange"]
    metadata: ObjectMeta
    spec: LimitRangeSpec


class ResourceQuota(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ResourceQuota"]
    metadata: ObjectMeta
    spec: dict[str, dict[str, str]]   # {"hard": {"limits.cpu": "4", ...}}


class NetworkPolicy(TypedDict):
    """Peers are LiveObject-shaped (namespaceSelector, podSelector, ipBlock): nested selectors kept untyped."""
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: ObjectMeta
    spec: dict[str, Any]


class Secret(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: str
    data: dict[str, str]  # base64 values
    stringData: NotRequired[dict[str, str]]


# -- workloads

class RollingUpdateDeployment(TypedDict):
    maxSurge: int | str
    maxUnavailable: int | str


class DeploymentStrategy(TypedDict):
    type: str
    rollingUpdate: RollingUpdateDeployment


class DeploymentSpec(TypedDict):
    replicas: int
    revisionHistoryLimit: int
    progressDeadlineSeconds: int
    minReadySeconds: int
    selector: LabelSelector
    strategy: DeploymentStrategy
    template: PodTemplate


class Deployment(TypedDict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec


class JobSpec(TypedDict):
    backoffLimit: int
    template: PodTemplate


class JobTemplate(TypedDict):
    metadata: TemplateMeta
    spec: JobSpec


class CronJobSpec(TypedDict):
    schedule: str
    concurrencyPolicy: str
    suspend: bool
    successfulJobsHistoryLimit: int
    failedJobsHistoryLimit: int
    jobTemplate: JobTemplate


class CronJob(TypedDict):
    apiVersion: Literal["batch/v1"]
    kind: Literal["CronJob"]
    metadata: ObjectMeta
    spec: CronJobSpec


class CrossVersionObjectReference(TypedDict):
    apiVersion: str
    kind: str
    name: str


class MetricTarget(TypedDict):
    type: str
    averageUtilization: int


class ResourceMetricSource(TypedDict):
    name: str
    target: MetricTarget


class MetricSpec(TypedDict):
    type: str
    resource: ResourceMetricSource


class HorizontalPodAutoscalerSpec(TypedDict):
    scaleTargetRef: CrossVersionObjectReference
    minReplicas: int
    maxReplicas: int
    metrics: list[MetricSpec]


class HorizontalPodAutoscaler(TypedDict):
    apiVersion: Literal["autoscaling/v2"]
    kind: Literal["HorizontalPodAutoscaler"]
    metadata: ObjectMeta
    spec: HorizontalPodAutoscalerSpec


# -- routing

class ServicePort(TypedDict):
    name: str
    port: int
    targetPort: int | str
    protocol: str


class ServiceSpec(TypedDict):
    type: str
    selector: dict[str, str]
    ports: list[ServicePort]


class Service(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec


class ServiceBackendPort(TypedDict):
    number: int


class IngressServiceBackend(TypedDict):
    name: str
    port: ServiceBackendPort


class IngressBackend(TypedDict):
    service: IngressServiceBackend


class HTTPIngressPath(TypedDict):
    path: str
    pathType: str
    backend: IngressBackend


class HTTPIngressRuleValue(TypedDict):
    paths: list[HTTPIngressPath]


class IngressRule(TypedDict):
    host: str
    http: HTTPIngressRuleValue


class IngressTLS(TypedDict):
    hosts: list[str]
    secretName: str


class IngressSpec(TypedDict, total=False):
    ingressClassName: str
    tls: list[IngressTLS]
    rules: list[IngressRule]


class Ingress(TypedDict):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["Ingress"]
    metadata: ObjectMeta
    spec: IngressSpec


class PodDisruptionBudgetSpec(TypedDict):
    maxUnavailable: int
    selector: LabelSelector


class PodDisruptionBudget(TypedDict):
    apiVersion: Literal["policy/v1"]
    kind: Literal["PodDisruptionBudget"]
    metadata: ObjectMeta
    spec: PodDisruptionBudgetSpec


# Any object Teresa renders and applies (one-off pods and their Secrets included).
Manifest = (Namespace | ServiceAccount | LimitRange | ResourceQuota | NetworkPolicy | Secret | Pod | Deployment
            | CronJob | HorizontalPodAutoscaler | Service | Ingress | PodDisruptionBudget)


# -- merge patches

class PodTemplatePatch(TypedDict):
    metadata: TemplateMeta


class DeploymentSpecPatch(TypedDict):
    template: PodTemplatePatch


class DeploymentPatch(TypedDict):
    """A JSON merge patch of a Deployment: only the fields it names change."""
    spec: DeploymentSpecPatch
