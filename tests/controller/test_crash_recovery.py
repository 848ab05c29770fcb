"""A server killed mid-build (SIGKILL: no clean-up at all), then started again (issue 12)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.fixtures.serve import ServeProcess
from tests.fixtures.teresa import GitClient, SSHClient, read_until, wait_for
from tests.gitreceiver.conftest import WEB_APP


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def slow_buildpack(root: Path) -> Path:
    """A buildpack whose compile starts a long-lived child and waits for it."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "detect").write_text("#!/bin/sh\necho Slow\n")
    (root / "bin" / "compile").write_text("#!/bin/sh\necho '-----> compiling slowly'\nsleep 600 &\nwait\n")
    for script in ("detect", "compile"):
        (root / "bin" / script).chmod(0o755)
    return root


@pytest.mark.timeout(300)
def test_sigkill_mid_build_and_a_restart_leave_no_running_build_and_no_orphan(
        tmp_path: Path, ssh_keys: dict[str, Path]) -> None:
    data = tmp_path / "data"
    server = ServeProcess(data)
    orphans: set[int] = set()
    try:
        for argv, stdin in [
            (("users:create", "dev@example.com", "--no-password"), b""),
            (("keys:add", "--user", "dev@example.com", "laptop"), ssh_keys["alice"].with_suffix(".pub").read_bytes()),
            (("teams:create", "web"), b""), (("teams:add-user", "web", "dev@example.com"), b""),
            (("apps:create", "shop", "--team", "web"), b""),
            (("config:set", "shop", f"BUILDPACK_URL={slow_buildpack(tmp_path / 'slow')}"), b""),
        ]:
            done = server.cli(*argv, stdin=stdin)
            assert done.returncode == 0, done.stderr
        git = GitClient(SSHClient(server, tmp_path), ssh_keys["alice"], tmp_path / "work")  # type: ignore[arg-type]
        git.commit(WEB_APP)
        push = git.popen_push("shop")
        read_until(push, "compiling slowly")
        # the slugbuilder, the buildpack's compile, its sleep (forked just after the line is printed)
        wait_for(lambda: len(server.descendants()) >= 3, timeout=30)
        orphans = server.descendants()

        server.kill()
        push.wait(60)
        assert any(alive(pid) for pid in orphans)  # nothing stopped them: the server had no chance

        server = ServeProcess(data)
        git.ssh.server = server  # type: ignore[assignment]  # a new port
        wait_for(lambda: not any(alive(pid) for pid in orphans), timeout=60)
        builds = json.loads(server.cli("builds", "shop", "--json").stdout)
        assert [b["status"] for b in builds] == ["interrupted"]

        git.commit({"index.html": "after the crash\n"})
        server.cli("config:unset", "shop", "BUILDPACK_URL")
        again = git.push("shop")  # the app's deploy lock died with the old server
        assert again.returncode == 0, again.stderr
    finally:
        server.stop()
        for pid in orphans:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
