"""`teresa COMMAND` on the server host runs inside the running server, over its control socket."""

from __future__ import annotations

import subprocess

from tests.fixtures.teresa import BIN, TeresaServer


def test_local_commands_run_in_the_server_and_ignore_an_idle_stdin(teresa: TeresaServer) -> None:
    assert (teresa.settings.data_dir / "control.sock").stat().st_mode & 0o077 == 0  # the operator's alone
    # stdin stays open and silent: a command that reads none must not wait for it
    with subprocess.Popen([str(BIN / "teresa"), "teams:create", "ops"], env=teresa.env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        out, err = proc.stdout.read(), proc.stderr.read()  # returns at the command's end, stdin still open
        assert proc.wait(30) == 0, err
    assert out == "Team ops created.\n"
    listed = teresa.cli("users:create", "ops@example.com", stdin=b"a-long-password\n")
    assert listed.returncode == 0, listed.stderr
    assert "ops@example.com" in teresa.local("users:list").out
    assert teresa.cli("nosuch").stderr == b"error: unknown command 'nosuch'; run 'help' to list the commands.\n"
