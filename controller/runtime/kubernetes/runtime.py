"""The Kubernetes runtime: builds and one-off commands as pods, releases as applied objects with watched rollouts."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Mapping, Sequence

from builder.job import BuildRequest, Grants
from controller.runtime.base import (
    BuildFailed, BuildTimedOut, LineSink, ProcessStatus, ReleasePhaseFailed, RolloutFailed, RuntimeFailure,
    raise_for_build_status,
)
from controller.runtime.kubernetes import manifests, podstate, upkeep
from controller.runtime.kubernetes.attach import run_attached
from controller.runtime.kubernetes.capabilities import KUBERNETES_CAPABILITIES
from controller.runtime.kubernetes.client import KubeClient, KubeError
from controller.runtime.kubernetes.logstream import LogCursor, follow_lines, shown_timestamp, stream_once
from controller.runtime.kubernetes.meta import (
    APP_LABEL, MANAGED_BY, PROCESS_TYPE_LABEL, RELEASE_LABEL, WEB, ManifestError, selector,
)
from controller.runtime.kubernetes.namespaces import NAMESPACE_GONE_SECONDS, is_apps, wait_gone_if_terminating
from controller.runtime.kubernetes.objects import LiveObject, Manifest, Pod
from controller.runtime.kubernetes.oneoff import OneOffPod, PodDeadline, PodFailed
from controller.runtime.kubernetes.prune import PRUNABLE_KINDS, stale
from controller.runtime.kubernetes.rollout import Stalled, diagnose, watch
from controller.runtime.kubernetes.templates import applicable, keep_autoscaled_replicas, keep_template, restart_patch
from controller.spec import ReleaseSpec
from core import log
from core.commands import Input, Output
from core.config import Settings
from core.storage import MAX_PRESIGN_SECONDS, storage_for

logger = log.get("runtime.kubernetes")
DEPLOYMENT = ("apps/v1", "Deployment")
# Config Secrets kept besides the current one, so an undo or a rollback finds its config.
KEEP_CONFIG_RELEASES = 5
SLUG_URL_SECONDS = MAX_PRESIGN_SECONDS
# What a failed first release leaves besides its Deployments: deleted by the undo.
ROUTING_AND_SCALING_KINDS = ("Service", "Ingress", "CronJob", "HorizontalPodAutoscaler", "PodDisruptionBudget")


class KubernetesRuntime:
    capabilities = KUBERNETES_CAPABILITIES

    def __init__(self, settings: Settings, *, poll_interval: float | None = None) -> None:
        self.settings = settings
        self.storage = storage_for(settings.storage)   # signs URLs; its credentials never leave this process
        # How often pod and Deployment status is read; TERESAK8S_POLL_INTERVAL (seconds) mostly serves tests.
        self.poll_interval = poll_interval or settings.kubernetes.poll_interval
        self._kube: KubeClient | None = None

    # -- lifecycle

    async def start(self) -> None:
        self._kube = await KubeClient.connect(self.settings.kubernetes)

    async def stop(self) -> None:
        if self._kube is not None:
            await self._kube.close()
            self._kube = None

    async def reconcile(self, wanted: Mapping[str, ReleaseSpec | None]) -> None:
        """The cluster keeps each Deployment at what was last applied, and an interrupted rollout is undone
        by the next deploy; what a crash left (one-off pods, build Secrets) is removed, slug URLs renewed."""
        try:
            removed = await upkeep.remove_orphans(self.kube, self.settings)
            renewed = await self.refresh_grants()
        except (KubeError, RuntimeFailure) as exc:  # the server starts all the same: a later push still works
            logger.error("kubernetes upkeep failed", error=str(exc))
            return
        logger.info("kubernetes reconciled", orphans_removed=removed, slug_urls_renewed=renewed)

    async def refresh_grants(self) -> int:
        """Renew the slug URLs in every app namespace (pods started later read them); no pod restarts."""
        try:
            return await upkeep.refresh_slug_urls(self.kube, self.storage, SLUG_URL_SECONDS)
        except KubeError as exc:
            raise RuntimeFailure(f"The slug URLs could not be renewed: {exc}") from None

    async def health(self) -> None:
        """A readiness check for /readyz: the API server answers."""
        await self.kube.request("GET", "/version", "read the server version")

    @property
    def kube(self) -> KubeClient:
        if self._kube is None:
            raise RuntimeError("KubernetesRuntime.start() must be awaited before it talks to the cluster.")
        return self._kube

    # -- apps

    async def create_app(self, app: str) -> None:
        """Teresa's namespace for the app; one left terminating by `apps:destroy` is waited for, a stranger's refused."""
        live = await wait_gone_if_terminating(self.kube, app, NAMESPACE_GONE_SECONDS, self.poll_interval)
        if live is not None and not is_apps(live, app):
            raise RuntimeFailure(f"The cluster already has a namespace {app} that Teresa did not create; "
                                 "choose another app name, or ask the operator to remove that namespace.")
        await self.kube.apply_all(manifests.app_objects(self.settings, app))
        await self.kube.apply_all(await self._pull_secrets(app))

    async def _pull_secrets(self, app: str) -> list[Manifest]:
        try:
            return list(await upkeep.pull_secret_copies(self.kube, self.settings, app))
        except upkeep.PullSecretMissing as exc:
            raise RuntimeFailure(str(exc)) from None

    async def destroy_app(self, app: str) -> None:
        """Deletes the app's namespace (asynchronously, as Kubernetes does), never one not labelled as the app's."""
        live = await self.kube.get("v1", "Namespace", app)
        if live is None:
            return
        if not is_apps(live, app):
            logger.warning("namespace not deleted: not labelled as the app's", app=app)
            return
        await self.kube.delete("v1", "Namespace", app)

    async def set_domains(self, app: str, domains: Sequence[str], *, tls_secret: str = "") -> None:
        """Route the app's custom domains now (its Ingress), without a new release; no Ingress yet: nothing to do."""
        if await self.kube.get("networking.k8s.io/v1", "Ingress", WEB, app) is None:
            return
        routing = ReleaseSpec(app=app, version=0, build_id="", slug_key="", config={}, processes={}, formation={},
                              domains=tuple(domains), tls_secret=tls_secret)
        await self.kube.apply(manifests.ingress(self.settings, routing))

    # -- one-off pods

    def _one_off(self, pod: Pod, container: str, extra: list[Manifest] | None = None) -> OneOffPod:
        return OneOffPod(self.kube, pod, container, self.poll_interval, self.settings.kubernetes.start_grace,
                         extra or [])

    def _slug_url(self, release: ReleaseSpec) -> str:
        """A presigned GET of the release's slug, as long-lived as storage allows (S3: 7 days; refreshed at each deploy)."""
        return self.storage.grant(release.slug_key, write=False, seconds=SLUG_URL_SECONDS)

    async def _slug_secret(self, release: ReleaseSpec) -> Manifest:
        return manifests.slug_secret(release, await asyncio.to_thread(self._slug_url, release))

    def _grants(self, request: BuildRequest) -> Grants:
        return request.grants(self.storage, cache_exists=bool(request.cache_key) and self.storage.exists(request.cache_key))

    async def build(self, request: BuildRequest, out: LineSink) -> None:
        grants = await asyncio.to_thread(self._grants, request)
        pod = self._one_off(manifests.slugbuilder_pod(self.settings, request, grants), "slugbuilder",
                            [manifests.build_secret(self.settings, request)])
        try:
            async with asyncio.timeout(request.timeout_seconds):
                status = await pod.run(out)
        except TimeoutError:
            raise BuildTimedOut(request.timeout_seconds) from None
        except PodFailed as exc:
            raise BuildFailed(f"The build could not run: {exc}; ask the operator to check "
                              "TERESA_SLUGBUILDER_IMAGE and the cluster's capacity.") from None
        except KubeError as exc:
            raise BuildFailed(f"The build could not run: {exc}") from None
        raise_for_build_status(status, request.timeout_seconds)

    async def release_phase(self, release: ReleaseSpec, out: LineSink) -> None:
        if "release" not in release.processes:
            return
        await out(f"-----> Running the release command of {release.label}")
        await self.kube.apply_all([manifests.config_secret(release), await self._slug_secret(release)])
        pod = self._one_off(manifests.release_pod(self.settings, release), "release")
        try:
            async with asyncio.timeout(self.settings.build_timeout):
                status = await pod.run(out)
        except TimeoutError:
            raise ReleasePhaseFailed(f"The release command of {release.label} ran longer than "
                                     f"{self.settings.build_timeout} seconds and was stopped; "
                                     f"{release.label} was not released.") from None
        except (PodFailed, KubeError) as exc:
            raise ReleasePhaseFailed(f"The release command of {release.label} could not run: {exc}; "
                                     f"{release.label} was not released.") from None
        if status != 0:
            output = f" (last output: {' / '.join(pod.last_lines)})" if pod.last_lines else ""
            raise ReleasePhaseFailed(f"The release command of {release.label} failed with exit status {status}"
                                     f"{output}; {release.label} was not released.")

    async def run(self, release: ReleaseSpec, argv: list[str], stdin: Input, out: Output) -> int:
        """A pod attached to: stdin forwarded, and with the client's terminal a TTY (see attach.py)."""
        try:
            pod = manifests.run_pod(self.settings, release, argv, tty=stdin.terminal is not None)
            await self.kube.apply_all([manifests.config_secret(release), await self._slug_secret(release)])
            return await run_attached(self._one_off(pod, "run"), stdin, out)
        except PodDeadline:
            raise RuntimeFailure(f"The command ran longer than {self.settings.kubernetes.run_timeout} seconds and "
                                 "was stopped; ask the operator to raise TERESA_RUN_TIMEOUT.") from None
        except (PodFailed, KubeError, ManifestError) as exc:
            raise RuntimeFailure(f"The command could not run: {str(exc).rstrip('.')}.") from None

    # -- releases

    async def deploy(self, release: ReleaseSpec, previous: ReleaseSpec | None, out: LineSink, *,
                     restart: bool = False) -> None:
        try:
            objects, before = await self._desired(release, restart=restart)
        except (ManifestError, KubeError) as exc:
            raise RolloutFailed(f"{release.label} could not be rendered: {exc}") from None
        formation = " ".join(f"{t}={release.replicas(t)}" for t in release.long_running_types)
        await out(f"-----> Rolling out {release.label}: {formation or 'no processes'}")
        try:
            await self.kube.apply_all(objects)
            await watch(self.kube, release.app, list(before), out, timeout=self.settings.rollout_timeout,
                        poll_interval=self.poll_interval, start_grace=self.settings.kubernetes.start_grace)
        except Stalled as exc:
            why = await diagnose(self.kube, release.app, exc.name) if exc.needs_diagnosis else ""
            await self._undo(release, previous, before, out)
            back = f"{previous.label} is still running" if previous else "nothing of it is left running"
            raise RolloutFailed(f"{release.label} did not become ready: {exc.name} {exc}"
                                f"{'; ' + why if why else ''}; {back}.") from None
        except KubeError as exc:
            await self._undo(release, previous, before, out)
            raise RolloutFailed(f"{release.label} could not be applied: {exc}") from None
        except asyncio.CancelledError:  # the client went away: what runs must stay what the records say
            await asyncio.shield(self._undo(release, previous, before, out=None))
            raise
        await self._prune(objects)

    async def _desired(self, release: ReleaseSpec,
                       restart: bool) -> tuple[list[Manifest], dict[str, LiveObject | None]]:
        """The objects to apply, and each Deployment among them as it is live now (None: new)."""
        slug_url = await asyncio.to_thread(self._slug_url, release)
        objects = manifests.render_release(self.settings, release, release.autoscale, slug_url)
        objects[1:1] = await self._pull_secrets(release.app)  # after the namespace, before any pod
        kept: list[Manifest] = []
        live_deployments: dict[str, LiveObject | None] = {}
        for obj in objects:
            if obj["kind"] == "Deployment":
                name = obj["metadata"]["name"]
                live = live_deployments[name] = await self.kube.get(*DEPLOYMENT, name, release.app)
                obj = keep_autoscaled_replicas(keep_template(obj, live, restart), live, release.autoscale)
            kept.append(obj)
        return kept, live_deployments

    async def _undo(self, release: ReleaseSpec, previous: ReleaseSpec | None,
                    before: dict[str, LiveObject | None], out: LineSink | None) -> None:
        """Put the Deployments back as they were and the rest as `previous` had it."""
        if out is not None:
            await out(f"-----> Undoing {release.label}" + (f": back to {previous.label}" if previous else ""))
        try:
            if previous is not None:
                others = [o for o in (await self._desired(previous, restart=False))[0] if o["kind"] != "Deployment"]
                await self.kube.apply_all(others)
            for name, live in before.items():
                if live is None:
                    await self.kube.delete(*DEPLOYMENT, name, release.app)
                else:
                    await self.kube.apply(applicable(live))
            if previous is None:
                for obj in manifests.render_release(self.settings, release, release.autoscale):
                    if obj["kind"] in ROUTING_AND_SCALING_KINDS:
                        await self.kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], release.app)
        except (KubeError, ManifestError) as exc:
            logger.error("undo failed", app=release.app, release=release.label, error=str(exc))
            if out is not None:
                await out(f"       The undo failed too: {exc}")

    async def _prune(self, desired: list[Manifest]) -> None:
        app = desired[0]["metadata"]["name"]
        for api_version, kind in PRUNABLE_KINDS:
            live = await self.kube.list(api_version, kind, app, labels={MANAGED_BY: "teresa", APP_LABEL: app})
            for name in stale(desired, api_version, kind, live, KEEP_CONFIG_RELEASES):
                await self.kube.delete(api_version, kind, name, app)

    async def restart(self, app: str, process_type: str | None) -> None:
        labels = {MANAGED_BY: "teresa", APP_LABEL: app}
        if process_type:
            labels[PROCESS_TYPE_LABEL] = process_type
        deployments = await self.kube.list(*DEPLOYMENT, app, labels=labels)
        if not deployments:
            which = f"no process type {process_type!r}" if process_type else "no running processes"
            raise RuntimeFailure(f"{app} has {which}; push or scale it up first.")
        for deployment in deployments:
            await self.kube.patch(*DEPLOYMENT, deployment["metadata"]["name"], app, restart_patch())

    # -- status and logs

    async def _app_pods(self, app: str, process_type: str | None = None) -> list[LiveObject]:
        labels = selector(app, process_type) if process_type else {APP_LABEL: app}
        pods = await self.kube.list("v1", "Pod", app, labels=labels)
        return sorted((p for p in pods if (p["metadata"].get("labels") or {}).get(PROCESS_TYPE_LABEL)
                       not in (None, "release")), key=lambda p: p["metadata"]["name"])

    async def ps(self, app: str) -> list[ProcessStatus]:
        if await self.kube.get("v1", "Namespace", app) is None:
            return []
        return [_process_status(pod) for pod in await self._app_pods(app)]

    async def logs(self, app: str, lines: int, follow: bool, process_type: str | None) -> AsyncIterator[str]:
        if await self.kube.get("v1", "Namespace", app) is None:
            return
        now = f"{_now()} "
        pods = await self._app_pods(app, process_type)
        backlog: list[tuple[tuple[str, int], str]] = []
        cursors: dict[str, LogCursor] = {}
        for pod in pods:
            cursor = cursors[pod["metadata"]["name"]] = LogCursor()

            async def keep(raw: str, prefix: str = _prefix(pod), cursor: LogCursor = cursor) -> None:
                if (line := cursor.accept(raw)) is not None:
                    backlog.append((cursor.last or ("", 0), f"{shown_timestamp(cursor.last)} {prefix} | {line}"))
            if lines:
                await stream_once(self.kube, app, pod["metadata"]["name"], _main_container(pod), keep,
                                  follow=False, tail_lines=lines)
            if cursor.last is None:
                cursor.accept(now)  # nothing shown: follow from now on
        for _, line in sorted(backlog, key=lambda item: item[0])[-lines:] if lines else []:
            yield line
        if follow:
            async for line in self._follow_logs(app, process_type, pods, cursors):
                yield line

    async def _follow_logs(self, app: str, process_type: str | None, known: list[LiveObject],
                           cursors: dict[str, LogCursor]) -> AsyncIterator[str]:
        """New lines of every pod of the app, including pods that start later, until cancelled."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        tasks: dict[str, asyncio.Task[None]] = {}

        async def follow(pod: LiveObject, cursor: LogCursor) -> None:
            async def put(line: str) -> None:
                queue.put_nowait(f"{shown_timestamp(cursor.last)} {_prefix(pod)} | {line}")
            while True:
                await follow_lines(self.kube, app, pod["metadata"]["name"], _main_container(pod), cursor, put)
                live = await self.kube.get("v1", "Pod", pod["metadata"]["name"], app)
                if not _may_log_again(live, _main_container(pod)):
                    return
                await asyncio.sleep(self.poll_interval)

        def watch_pod(pod: LiveObject) -> None:
            name = pod["metadata"]["name"]
            tasks[name] = asyncio.create_task(follow(pod, cursors.get(name) or LogCursor()))

        async def discover() -> None:
            while True:
                await asyncio.sleep(self.poll_interval * 5)
                for pod in await self._app_pods(app, process_type):
                    if pod["metadata"]["name"] not in tasks:
                        watch_pod(pod)

        for pod in known:
            watch_pod(pod)
        tasks[""] = asyncio.create_task(discover())
        try:
            while True:
                yield await queue.get()
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _main_container(pod: LiveObject) -> str:
    name: str = pod["spec"]["containers"][0]["name"]
    return name


def _may_log_again(pod: LiveObject | None, container: str) -> bool:
    """Whether a follow that ended (or dropped) should reconnect: not to a pod that is gone, nor to one being
    deleted whose container has exited (its log is complete; asking again would only poll it until it goes)."""
    if pod is None:
        return False
    return not (pod["metadata"].get("deletionTimestamp") and podstate.terminated(pod, container) is not None)


def _prefix(pod: LiveObject) -> str:
    name = pod["metadata"]["name"]
    return f"{pod['metadata']['labels'].get(PROCESS_TYPE_LABEL, 'run')}.{name.rsplit('-', 1)[-1]}"


def _state(pod: LiveObject) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "stopping"
    phase = (pod.get("status") or {}).get("phase", "Pending")
    waiting = [podstate.state_of(s)[1].get("reason", "") for s in podstate.statuses(pod)
               if podstate.state_of(s)[0] == "waiting"]
    if "CrashLoopBackOff" in waiting or phase == "Failed":
        return "crashed"
    if phase == "Running":
        return "up" if podstate.is_ready(pod) else "starting"
    return {"Succeeded": "exited"}.get(phase, "starting")


def _uptime(pod: LiveObject) -> float | None:
    stamp = (pod.get("status") or {}).get("startTime")
    if not stamp:
        return None
    started = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return max(0.0, (datetime.datetime.now(datetime.UTC) - started).total_seconds())


def _process_status(pod: LiveObject) -> ProcessStatus:
    labels = pod["metadata"].get("labels") or {}
    release = labels.get(RELEASE_LABEL, "v0")[1:]
    return ProcessStatus(type=labels.get(PROCESS_TYPE_LABEL, ""), replica=pod["metadata"]["name"],
                         state=_state(pod), restarts=podstate.restarts(pod), uptime_seconds=_uptime(pod),
                         release=int(release) if release.isdigit() else 0)

