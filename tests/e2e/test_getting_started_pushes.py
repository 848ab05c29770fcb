"""Apps shaped like the public ones users push, pushed unchanged with the real git and ssh clients to a real
Teresa on the local runtime, then requested through its router by Host header.

The apps are those of tests/builder/apps (the builder tests prove each convention on the slugbuilder alone);
here the push path is what is under test: the files as git carries them (dotfiles such as .python-version
and .buildpacks, executable hooks), config vars set with `config:set` reaching the build, the release
rolled out behind the router. One push per app (`@pytest.mark.sample(app)` names a test's); the pushes of
the selected tests start together when the first one asks, so the module takes about as long as its
slowest build.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.config import StorageSettings
from tests.builder.conftest import APPS
from tests.fixtures.teresa import Deploy, GitClient, http_get, make_deploy

PUSH_TIMEOUT = 480  # seconds; the builds share this machine's cores
pytestmark = pytest.mark.timeout(PUSH_TIMEOUT + 120)  # a test waits for its push, started with the others
# This machine reaches the npm registry through a mirror that drops the packages' signatures, which corepack
# checks by default, and through a TLS proxy whose CA node must be told about (the builder tests inherit both
# from the environment; a push's build gets only the app's config vars): set as config vars, as a user
# behind such a proxy would.
COREPACK = {"COREPACK_INTEGRITY_KEYS": "0"} | {k: v for k, v in os.environ.items() if k == "NODE_EXTRA_CA_CERTS"}


@dataclass(frozen=True)
class Sample:
    source: tuple[str, ...]              # directories under tests/builder/apps, copied in order
    config: dict[str, str] = field(default_factory=dict)
    needs: str = ""                      # a tool the stack must have (node, go)


SAMPLES = {
    "django": Sample(("python_django",)),
    "express": Sample(("node_express",), needs="node"),
    "typescript": Sample(("node_typescript",), needs="node"),
    "go-app": Sample(("go_getting_started",), needs="go"),
    "assets": Sample(("multi_node_python",), needs="node"),  # .buildpacks: heroku/nodejs, then heroku/python
    "berry": Sample(("node_pm", "node_pm/yarn4"), COREPACK, needs="node"),  # yarn 4 through corepack
}


def copy_sample(sample: Sample, workdir: Path) -> None:
    """The sample's files with their modes (bin/post_compile stays executable); node_pm's variants are
    subdirectories, so only the files of all but the last directory are taken."""
    *bases, last = sample.source
    for base in bases:
        for path in (APPS / base).iterdir():
            if path.is_file():
                shutil.copy2(path, workdir / path.name)
    shutil.copytree(APPS / last, workdir, dirs_exist_ok=True)


class Pushes:
    """Every sample pushed at once (each its own app and clone), each push's result awaited by its test."""

    def __init__(self, deploy: Deploy, root: Path) -> None:
        self.deploy = deploy
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=len(SAMPLES))
        self.started: dict[str, Future[str]] = {}

    def start(self, apps: set[str]) -> None:
        for app, sample in SAMPLES.items():
            if app in apps and (not sample.needs or shutil.which(sample.needs)):
                self.started[app] = self.pool.submit(self._push, app, sample)

    def _push(self, app: str, sample: Sample) -> str:
        server = self.deploy.server
        assert server.local("apps:create", app, "--team", "web").status == 0
        if sample.config:
            result = server.local("config:set", app, *(f"{k}={v}" for k, v in sample.config.items()))
            assert result.status == 0, result.err
        git = GitClient(self.deploy.ssh, self.deploy.key, self.root / app)
        copy_sample(sample, git.workdir)
        git.git("add", "-A")
        git.git("commit", "-q", "-m", "getting started")
        push = git.git("push", git.remote(app), "main", check=False, timeout=PUSH_TIMEOUT)
        assert push.returncode == 0, push.stderr
        return push.stderr

    def output(self, app: str) -> str:
        """What `git push` printed (its remote: lines), once the push has succeeded."""
        if app not in self.started:
            if (needs := SAMPLES[app].needs) and not shutil.which(needs):
                pytest.skip(f"{needs} is not installed on this machine")
            pytest.fail(f"mark the test @pytest.mark.sample({app!r}), so that its push starts")
        return self.started[app].result(timeout=PUSH_TIMEOUT + 60)

    def released(self, app: str, *lines: str) -> str:
        """The push's output, after checking it printed each of `lines` (as git shows them) and released v1."""
        output = self.output(app)
        for line in lines:
            assert f"remote: {line}" in output, output
        assert re.search(r"remote: .*Released v1", output), output
        return output

    def get(self, app: str, path: str = "/") -> tuple[int, str]:
        return http_get(self.deploy.server.runtime.router.port, f"{app}.localhost", path)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def pushes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           ssh_keys: dict[str, Path]) -> Iterator[Pushes]:
    selected = {mark.args[0] for item in request.session.items if item.module is request.module
                for mark in item.iter_markers("sample")}
    tmp = tmp_path_factory.mktemp("e2e")
    storage = StorageSettings(type="local", root=tmp / "storage")
    for deploy in make_deploy(tmp, storage, ssh_keys, TERESA_MAX_CONCURRENT_BUILDS=str(len(SAMPLES)),
                              TERESA_ROLLOUT_TIMEOUT="60"):
        pushes = Pushes(deploy, tmp / "clones")
        pushes.start(selected)
        try:
            yield pushes
        finally:
            pushes.close()


@pytest.mark.sample("django")
def test_django_with_python_version_serves_a_page_and_its_collected_static_file(pushes: Pushes) -> None:
    output = pushes.released("django", "-----> $ python manage.py collectstatic --noinput")
    assert re.search(r"remote: -----> Using Python 3\.12\.\d+ \(from \.python-version\)", output), output
    status, page = pushes.get("django")
    assert status == 200 and "Hello from Django on Python 3.12" in page, page
    hashed = re.search(r'href="(/static/hello/site\.[0-9a-f]{12}\.css)"', page)
    assert hashed, page  # the manifest collectstatic wrote at build time is the one the release serves
    status, css = pushes.get("django", hashed[1])
    assert (status, css.strip()) == (200, "h1 { color: rebeccapurple; }")


@pytest.mark.sample("express")
def test_express_serves_its_page_and_public_files(pushes: Pushes) -> None:
    pushes.released("express")
    status, page = pushes.get("express")
    assert status == 200 and "Hello from Express on node v" in page, page
    status, css = pushes.get("express", "/stylesheets/main.css")
    assert (status, css.strip()) == (200, "h1 { font-family: sans-serif; }")


@pytest.mark.sample("typescript")
def test_typescript_serves_its_compiled_output(pushes: Pushes) -> None:
    pushes.released("typescript", "-----> Running build (npm run build)")
    assert pushes.get("typescript") == (200, "Hello from TypeScript, compiled at build time")


@pytest.mark.sample("go-app")
def test_go_module_binary_answers(pushes: Pushes) -> None:
    pushes.released("go-app", "       Installed bin/go-getting-started")
    status, body = pushes.get("go-app")
    assert status == 200 and re.fullmatch(r"Hello from Go \(built with go1\.\d+(\.\d+)?\)", body), body


@pytest.mark.sample("assets")
def test_buildpacks_file_from_the_pushed_tree_runs_nodejs_then_python(pushes: Pushes) -> None:
    pushes.released("assets", "-----> Buildpack 1 of 2: heroku/nodejs", "-----> Buildpack 2 of 2: heroku/python")
    status, body = pushes.get("assets", "/bundle.txt")
    # node built the asset, and Python's bin/post_compile (executable through git) ran with node on its PATH
    assert status == 200 and body.startswith("bundled by node v") and "python saw node v" in body, body


@pytest.mark.sample("berry")
def test_yarn_berry_through_corepack_with_config_vars_set_before_the_push(pushes: Pushes) -> None:
    pushes.released("berry", "-----> Using yarn@4.5.3 through corepack")
    status, body = pushes.get("berry")
    assert status == 200 and body.endswith("is-number pruned; steps prebuild,build:true,cleanup"), body
