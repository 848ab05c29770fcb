"""docs/install-kubernetes.md: its steps fit the repository they are run from."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from core.commands import parse
from core.config import Settings
from server.registry import load_commands
from tests.ops.test_manifests import DEPLOY, ROOT, container, pod_environment, referenced_secrets, render

GUIDE = ROOT / "docs" / "install-kubernetes.md"


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.DOTALL)


def block_with(text: str) -> str:
    (block,) = [b for b in shell_blocks() if text in b]
    return block


def test_the_images_it_builds_are_the_dockerfile_targets() -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\w+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    targets = set(re.findall(r"docker build --target (\w+)", GUIDE.read_text()))
    assert targets == {"server", "stack"} <= stages


def test_its_sed_puts_your_names_into_the_prod_overlay(tmp_path: Path) -> None:
    exports = "\n".join(line for b in shell_blocks() for line in b.splitlines() if line.startswith("export "))
    edit = "\n".join(line for line in block_with("sed -i").splitlines() if not line.startswith(("git ", "export ")))
    clone = tmp_path / "clone"
    shutil.copytree(DEPLOY, clone / "deploy")
    overrides = "REGISTRY=reg.acme.test/paas VERSION=2.3.4 DOMAIN=acme.test"
    subprocess.run(["bash", "-euc", f"{exports}\nexport {overrides}\n{edit}"], cwd=clone, check=True, timeout=30)

    render.cache_clear()
    try:
        objects = render(str(clone / "deploy" / "overlays" / "prod"))
    finally:
        render.cache_clear()
    settings = Settings.from_env({**pod_environment(objects), "TERESAFILESTORAGE_AWS_BUCKET": "b"})
    assert container(objects)["image"] == "reg.acme.test/paas/teresa:2.3.4"
    assert settings.kubernetes.slugbuilder_image == settings.kubernetes.slugrunner_image == \
        "reg.acme.test/paas/teresa-stack:2.3.4"
    assert settings.domain == "apps.acme.test" and settings.public_ssh_addr == ("teresa.acme.test", 22)
    assert "example.com" not in str(objects)


def test_it_creates_every_secret_the_prod_overlay_needs() -> None:
    needed = referenced_secrets(render("overlays/prod"))
    created = set(re.findall(r"kubectl -n teresa create secret generic ([\w-]+)", GUIDE.read_text()))
    assert created == needed
    assert "kubectl apply -k deploy/overlays/prod" in GUIDE.read_text()


def command_lines(pattern: str) -> list[list[str]]:
    text = GUIDE.read_text().replace("\\\n", " ")  # join continued lines
    return [shlex.split(line) for line in re.findall(pattern + r" +([\w:-][^\n<`]*)", text)]


def test_every_teresa_command_line_it_gives_parses_where_it_is_run() -> None:
    load_commands()
    local = command_lines(r"exec (?:-i )?deploy/teresa -- +teresa")
    remote = command_lines(r"ssh git@teresa\.example\.com")
    assert {"users:create", "keys:add", "backup", "backup:restore"} <= {argv[0] for argv in local}
    assert {"teams:create", "apps:create"} <= {argv[0] for argv in remote}
    for argv in local:
        parse(argv, remote=False)
    for argv in remote:
        parse(argv, remote=True)
