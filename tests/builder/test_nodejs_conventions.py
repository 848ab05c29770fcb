"""The Node.js buildpack's conventions, each with a real build (npm registry reachable) and a request.

Apps: tests/builder/apps/node_express (shaped like Heroku's Express getting-started app),
node_typescript (a build step that needs a devDependency), and node_pm/* (one app installed by
pnpm, yarn classic and yarn berry through corepack, with the heroku-* scripts).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core.config import StorageSettings
from tests.builder.conftest import APPS, Builder, app_files
from tests.builder.test_builds import assert_succeeded, slug_names

pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="Node.js is not installed on this machine")
# This machine's npm registry mirror drops the packages' signatures, which corepack checks by default;
# the integrity hashes are still checked. A stack with the real registry does not need this.
COREPACK = {"COREPACK_INTEGRITY_KEYS": "0"}


@pytest.fixture
def fresh(tmp_path: Path) -> Builder:
    return Builder(StorageSettings(type="local", root=tmp_path / "storage"))


def node_major() -> str:
    return subprocess.run(["node", "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True).stdout.strip()


def test_express_getting_started_app(fresh: Builder, run_slug) -> None:
    build = fresh.build(APPS / "node_express", timeout=240)
    assert_succeeded(build)
    assert any(re.fullmatch(r"-----> Using node \d+\.\d+\.\d+ \(engines\.node is '20\.x \|\| 22\.x'\)", line) for line in build.lines), build.output
    assert "-----> Installing dependencies with npm ci (package-lock.json)" in build.lines
    assert "       Default types for buildpack -> web" in build.lines
    app = run_slug(build)
    assert "Hello from Express on node v" in app.get("/")
    assert app.get("/stylesheets/main.css").strip() == "h1 { font-family: sans-serif; }"


def test_typescript_app_is_compiled_and_its_compiler_pruned(fresh: Builder, run_slug) -> None:
    build = fresh.build(APPS / "node_typescript", timeout=240)
    assert_succeeded(build)
    assert "-----> Running build (npm run build)" in build.lines
    assert "-----> Pruning devDependencies" in build.lines
    names = slug_names(build)
    assert "dist/server.js" in names
    assert not any(name.startswith("node_modules/typescript") for name in names)
    assert run_slug(build).get("/") == "Hello from TypeScript, compiled at build time"


@pytest.mark.parametrize(("manager", "label"), [("pnpm", "pnpm@9.15.0"), ("yarn1", "yarn@1.22.22"), ("yarn4", "yarn@4.5.3")])
def test_package_manager_from_package_json_through_corepack(fresh: Builder, run_slug, manager: str, label: str) -> None:
    files = {name: data for name, data in app_files("node_pm").items() if "/" not in name} | app_files(f"node_pm/{manager}")
    build = fresh.build(files, timeout=240, **COREPACK)
    assert_succeeded(build)
    assert f"-----> Using {label} through corepack" in build.lines
    install = [line for line in build.lines if line.startswith("-----> Installing dependencies")]
    assert install and "lock" in install[0], build.output
    steps = [line for line in build.lines if line.startswith(("-----> Running", "-----> Pruning", "-----> Installing dep"))]
    assert [line.split(" (")[0].split(" install")[0] for line in steps] == [
        "-----> Running heroku-prebuild", "-----> Installing dependencies with " + label, "-----> Running build",
        "-----> Pruning devDependencies", "-----> Running heroku-cleanup",
    ], build.output  # fmt: skip
    answer = run_slug(build).get("/")
    assert answer == f"node {node_major()}; two days is 172800000 ms; is-number pruned; steps prebuild,build:true,cleanup"


def test_frozen_lockfile_is_enforced(fresh: Builder) -> None:
    files = {name: data for name, data in app_files("node_pm").items() if "/" not in name} | app_files("node_pm/pnpm")
    files["package.json"] = files["package.json"].replace(b'"ms": "2.1.3"', b'"ms": "2.1.2"')
    build = fresh.build(files, timeout=240, **COREPACK)
    assert build.status != 0
    assert build.lines[-2] == " !     pnpm@9.15.0 install --frozen-lockfile failed (see above); commit an up-to-date lockfile."


def test_engines_node_the_stack_lacks_is_one_sentence(fresh: Builder) -> None:
    build = fresh.build({"package.json": '{"engines": {"node": "14.x"}}', "server.js": ""})
    assert build.status != 0
    assert re.fullmatch(r" !     engines\.node in package\.json asks for '14\.x' but this stack has node [0-9., and]+; "
                        r"change engines\.node to one of them, like \"\d+\.x\"\.", build.lines[-2]), build.output  # fmt: skip


def test_server_js_without_start_script_is_the_web_process(fresh: Builder, run_slug) -> None:
    server = "require('http').createServer((q, s) => s.end('plain server.js')).listen(process.env.PORT)\n"
    build = fresh.build({"package.json": '{"name": "plain"}', "server.js": server})
    assert_succeeded(build)
    assert run_slug(build).get("/") == "plain server.js"


def test_the_stack_node_list_is_the_configured_one(fresh: Builder, tmp_path: Path) -> None:
    node = shutil.which("node")
    env = {"TERESA_STACK_NODES": str(node), "TERESA_STACK_NODE_DIRS": str(tmp_path / "none")}
    build = fresh.build({"package.json": '{"engines": {"node": ">=99"}}'}, **env)
    assert re.fullmatch(rf" !     .* this stack has node {node_major()}\.\d+\.\d+; change engines\.node to one of them, like \"{node_major()}\.x\"\.",
                        build.lines[-2])  # fmt: skip
