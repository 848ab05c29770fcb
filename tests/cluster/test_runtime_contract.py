"""The runtime contract: one behavioural suite that every runtime passes, so that what a runtime must do is said once.

Each case runs on the local runtime (always) and on the KubernetesRuntime against the test cluster (which skips
without it, and fails instead under TERESA_TEST_REQUIRE_SERVICES=1). The runtimes are driven directly, as the
controller drives them, with hand-made slugs (tests/cluster/apps/contract_web.py) put into their storage: no build.
One app per runtime is deployed once and carried through the cases in order (a module-scoped fixture): deploy,
a crashing release, scale, restart, run, logs, what only some runtimes do, and destroy last. A case that needs a
capability skips, naming it, on a runtime that lacks it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.runtime.base import Capability, ProcessStatus, RolloutFailed, split_log_timestamp
from controller.spec import ReleaseSpec
from controller.teresa_yaml import parse
from core.storage import storage_for
from tests.cluster.contract_subjects import KubernetesSubject, LocalSubject, Subject
from tests.fixtures.teresa import BytesInput, MemoryOutput
from tests.k8s.runtime_helpers import Lines, tarball
from tests.localrt.harness import until

WEB_APP = Path(__file__).parent / "apps" / "contract_web.py"
LAST_LINE = "boom: no module named wsgi"
CRASHING = f"web: python3 -c \"import sys; print('{LAST_LINE}', flush=True); sys.exit(3)\"\n"
SETTLED = 180  # seconds a condition gets to hold: a rollout, pods going away, a namespace deleted
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module", params=["local", pytest.param("kubernetes", marks=pytest.mark.kube_cluster)])
def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    if request.param == "local":
        made: Subject = LocalSubject(tmp_path_factory.mktemp("contract-local"))
    else:
        from tests.cluster.test_runtime_on_cluster import settings_for

        cluster, storage = request.getfixturevalue("kube_cluster"), request.getfixturevalue("pod_storage")
        made = KubernetesSubject(cluster, settings_for(cluster, storage, tmp_path_factory.mktemp("contract-kube")))
    try:
        yield made
    finally:
        made.close()


@dataclasses.dataclass
class App:
    """The module's app: the release that serves now, and the last version handed out (failed ones count)."""

    release: ReleaseSpec
    version: int = 1

    @property
    def name(self) -> str:
        return self.release.app

    def next(self, **changes: Any) -> ReleaseSpec:
        self.version += 1
        return dataclasses.replace(self.release, version=self.version, **changes)


def store_slug(subject: Subject, app: str, build_id: str, procfile: str) -> str:
    """A slug of the contract app with this Procfile, put where the runtime reads slugs from; its key."""
    key = f"apps/{app}/builds/{build_id}/slug.tgz"
    slug = tarball({"Procfile": procfile, "contract_web.py": WEB_APP.read_text()})
    storage_for(subject.settings.storage).put_stream(key, io.BytesIO(slug))
    return key


@pytest.fixture(scope="module")
def app(subject: Subject) -> Iterator[App]:
    name = f"contract-{secrets.token_hex(3)}"
    release = ReleaseSpec(app=name, version=1, build_id="b1", config={"GREETING": "howdy"},
                          slug_key=store_slug(subject, name, "b1", "web: python3 contract_web.py\n"),
                          processes={"web": "python3 contract_web.py"}, formation={"web": 1},
                          spec=dataclasses.replace(parse(""), drain_timeout_seconds=0))
    subject.call(subject.runtime.create_app(name))
    try:
        subject.call(subject.runtime.deploy(release, None, Lines()), timeout=SETTLED)
        yield App(release)
    finally:
        subject.call(subject.runtime.destroy_app(name))


def deploy(subject: Subject, app: App, release: ReleaseSpec) -> None:
    previous = app.release
    subject.call(subject.runtime.deploy(release, previous, Lines()), timeout=SETTLED)
    app.release = release


async def front_answer(subject: Subject, app: str) -> tuple[int, str] | None:
    url, headers = await subject.front(app)
    return await subject.get(url, headers)


async def boot_ids(subject: Subject, app: str) -> set[str]:
    """The boot id each ready web process answers with (a process replaced by another has another)."""
    answers = [await subject.get(url + "/") for url in await subject.web_addresses(app)]
    return {answer[1].rsplit(" ", 1)[-1] for answer in answers if answer and answer[0] == 200}


def greets(answer: tuple[int, str] | None) -> bool:
    """Whether this is the contract app's answer to GET / with the module's config."""
    return answer is not None and answer[0] == 200 and answer[1].startswith("howdy from ")


def web_processes(processes: list[ProcessStatus]) -> list[str]:
    return sorted(p.state for p in processes if p.type == "web")


def settle(subject: Subject, app: App, replicas: int) -> set[str]:
    """Once `replicas` web processes are up, each answering, and nothing else of the app's web is left: their ids."""
    async def settled() -> set[str] | None:
        up = web_processes(await subject.runtime.ps(app.name)) == ["up"] * replicas
        ids = await boot_ids(subject, app.name)
        return ids if up and len(ids) == replicas else None

    return subject.call(until(settled, SETTLED, f"{replicas} web processes up"), timeout=SETTLED + 10)


def test_a_deployed_web_app_answers_http(subject: Subject, app: App) -> None:
    answer = subject.call(front_answer(subject, app.name))
    assert greets(answer), answer


def test_a_crashing_release_is_rejected_with_the_apps_last_line_and_the_previous_one_keeps_serving(
    subject: Subject, app: App,
) -> None:
    crashing = app.next(slug_key=store_slug(subject, app.name, "b2", CRASHING), build_id="b2",
                        config={"GREETING": "crashed"})
    serving = settle(subject, app, app.release.replicas("web"))
    with pytest.raises(RolloutFailed) as failed:
        subject.call(subject.runtime.deploy(crashing, app.release, Lines()), timeout=SETTLED)
    assert LAST_LINE in str(failed.value) and str(failed.value).startswith(f"{crashing.label} "), failed.value
    answer = subject.call(front_answer(subject, app.name))
    assert greets(answer), answer
    assert settle(subject, app, app.release.replicas("web")) == serving  # what served before, untouched


def test_scaling_web_to_two_shows_two_in_ps(subject: Subject, app: App) -> None:
    deploy(subject, app, app.next(formation={"web": 2}, reason="scale"))
    assert len(settle(subject, app, 2)) == 2


def test_restart_replaces_every_process(subject: Subject, app: App) -> None:
    replicas = app.release.replicas("web")
    before = settle(subject, app, replicas)
    subject.call(subject.runtime.restart(app.name, None))

    async def replaced() -> bool:
        return len(after := await boot_ids(subject, app.name)) == replicas and not after & before

    subject.call(until(replaced, SETTLED, "every web process replaced"), timeout=SETTLED + 10)
    assert not settle(subject, app, replicas) & before


def test_run_returns_the_commands_exit_status_and_output(subject: Subject, app: App) -> None:
    out = MemoryOutput()
    command = ["sh", "-c", 'echo "ran with $GREETING"; exit 3']
    status = subject.call(subject.runtime.run(app.release, command, BytesInput(), out), timeout=SETTLED)
    assert (status, out.text.replace("\r", "")) == (3, "ran with howdy\n")


def test_logs_show_the_apps_lines_each_with_its_time_and_source(subject: Subject, app: App) -> None:
    async def lines() -> list[str]:
        return [line async for line in subject.runtime.logs(app.name, 100, False, "web")]

    async def started() -> list[str]:
        return [line for line in await lines() if " | contract app " in line and " listening on " in line]

    shown = subject.call(until(started, 60, "the app's start-up line in its logs"), timeout=70)
    stamp, rest = split_log_timestamp(shown[-1])
    assert stamp and rest.startswith("web."), shown


def test_grants_running_processes_read_are_renewed(subject: Subject, app: App) -> None:
    if reason := subject.lacks(Capability.GRANT_RENEWAL):
        pytest.skip(reason)
    assert subject.call(subject.runtime.refresh_grants()) >= 1


def test_the_runtimes_router_sends_the_apps_custom_domains_to_it(subject: Subject, app: App) -> None:
    if reason := subject.lacks(Capability.ROUTER):
        pytest.skip(reason)
    subject.call(subject.runtime.set_domains(app.name, ["www.contract.example"]))
    url, _ = subject.call(subject.front(app.name))
    answer = subject.call(subject.get(url, {"Host": "www.contract.example"}))
    assert greets(answer), answer


def test_processes_run_as_a_user_of_the_apps_own(subject: Subject, app: App) -> None:
    if reason := subject.lacks(Capability.USER_PER_APP):
        pytest.skip(reason)
    out = MemoryOutput()
    assert subject.call(subject.runtime.run(app.release, ["id", "-u"], BytesInput(), out)) == 0
    assert int(out.text) not in (0, os.geteuid()), out.text


def test_a_memory_limit_is_what_the_process_gets(subject: Subject, app: App) -> None:
    if reason := subject.lacks(Capability.LIMITS):
        pytest.skip(reason)
    deploy(subject, app, app.next(limits={"web": {"memory": "256Mi"}}, reason="limits"))
    settle(subject, app, app.release.replicas("web"))
    for address in subject.call(subject.web_addresses(app.name)):
        assert subject.call(subject.get(address + "/memory-limit")) == (200, str(256 << 20))


def test_destroy_leaves_nothing_running_and_nothing_answering(subject: Subject, app: App) -> None:
    url, headers = subject.call(subject.front(app.name))
    subject.call(subject.runtime.destroy_app(app.name))

    async def gone() -> bool:
        answer = await subject.get(url, headers)
        return not await subject.runtime.ps(app.name) and (answer is None or answer[0] != 200)

    subject.call(until(gone, SETTLED, f"{app.name} gone"), timeout=SETTLED + 10)
