"""The README's walk-through, pasted command by command against `make run` in a fresh copy of the repository.

As root, the copy sits under `/root` (0700, where root's clones usually are) or under `/srv`,
and `make run` uses the PATH's Python (here pyenv's, under `/root` too) or Debian's own
`/usr/bin/python3` (3.11.2: no tarfile extraction filters). The commands run verbatim in one
shell; around them, only what a user's machine already has: an SSH key, a git identity, and
ssh's answer to the host-key question (`accept-new` where the README says to answer yes).
`logs -f` follows until it is stopped, so it is given five seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.fixtures.teresa import REPO

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the walk-through is checked as root (the usual server)"),
              pytest.mark.timeout(900)]
PORTS = (2222, 8080, 8081, 8082)  # make run's defaults, which the walk-through names
SAMPLE_COPY = Path("/tmp/hello")  # where the walk-through copies the sample app
SSH = """#!/bin/sh
exec /usr/bin/ssh -F /dev/null -o UserKnownHostsFile="$HOME/.ssh/known_hosts" -o StrictHostKeyChecking=accept-new \\
  -o IdentityFile="$HOME/.ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes "$@"
"""


def walkthrough() -> list[str]:
    """The commands of the README's walk-through block, in order (comment lines dropped)."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Walk-through", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def fresh_copy(parent: Path) -> Path:
    """The repository's files (committed or not, none ignored) in `<parent>/<tmp>/teresa`."""
    base = Path(tempfile.mkdtemp(prefix="teresa-readme-", dir=parent))
    os.chmod(base, 0o755)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    clone = base / "teresa"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


def user_home(tmp_path: Path) -> Path:
    """A home with an SSH key and a git identity, and a PATH directory whose ssh keeps to that home."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    (home / ".gitconfig").write_text("[user]\n\tname = You\n\temail = you@example.com\n")
    (home / "bin").mkdir()
    (home / "bin" / "ssh").write_text(SSH)
    os.chmod(home / "bin" / "ssh", 0o755)
    return home


def start(clone: Path, python: str | None, log: Path) -> subprocess.Popen[bytes]:
    for port in PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is in use; stop what listens there (another `make run`?) to run this test")
    argv = ["make", "run", *([f"PYTHON={python}"] if python else [])]
    server = subprocess.Popen(argv, cwd=clone, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while "ssh_listening" not in log.read_text(errors="replace"):
        if server.poll() is not None or time.monotonic() > deadline:
            stop(server)
            pytest.fail(f"make run did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return server


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def run_walkthrough(clone: Path, home: Path) -> list[tuple[str, int, str]]:
    """Each command with its exit status and output (stdout and stderr as they came)."""
    script = ["set -u"]
    commands = walkthrough()
    for number, command in enumerate(commands):
        follow = " logs " in command and re.search(r"\s-f\b", command)
        # A group on lines of its own: a command's trailing comment does not swallow the redirections.
        script += ["{", f"{'timeout 5 ' if follow else ''}{command}", "} < /dev/null 2>&1", f'echo "::done {number} $?"']
    env = {"HOME": str(home), "PATH": f"{home / 'bin'}:{os.environ['PATH']}", "LANG": "C.UTF-8"}
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=clone, env=env, capture_output=True, text=True,
                            timeout=600)
    outputs, statuses, pending = [], [], []
    for line in result.stdout.splitlines():
        if match := re.fullmatch(r"::done (\d+) (\d+)", line):
            outputs.append("\n".join(pending))
            statuses.append(int(match[2]))
            pending = []
        else:
            pending.append(line)
    assert len(statuses) == len(commands), result.stdout[-3000:] + result.stderr[-2000:]
    return list(zip(commands, statuses, outputs))


@pytest.mark.parametrize(("where", "python"), [("/root", None), ("/srv", None), ("/srv", "/usr/bin/python3")],
                         ids=["root-clone", "srv-clone", "srv-clone-debian-python"])
def test_the_walkthrough_works_as_written_against_make_run(tmp_path: Path, where: str, python: str | None) -> None:
    if python and not Path(python).exists():
        pytest.skip(f"{python} is not installed")
    Path(where).mkdir(exist_ok=True)
    clone = fresh_copy(Path(where))
    shutil.rmtree(SAMPLE_COPY, ignore_errors=True)
    server = start(clone, python, tmp_path / "make-run.log")
    try:
        steps = run_walkthrough(clone, user_home(tmp_path))
    finally:
        stop(server)
        shutil.rmtree(clone.parent, ignore_errors=True)
        shutil.rmtree(SAMPLE_COPY, ignore_errors=True)
    said = "\n\n".join(f"$ {c}\n[{s}] {o}" for c, s, o in steps)
    for command, status, _ in steps:
        assert status == (124 if " logs " in command else 0), said  # `logs -f` is stopped by the timeout
    pages = [output for command, _, output in steps if command.startswith("curl ")]
    assert "Hello from web.1 of Teresa's python-hello!" in pages[0], said  # curl's progress meter goes to stderr
    assert "Howdy from web.1 of Teresa's python-hello!" in pages[1], said
    (logs,) = [output for command, _, output in steps if " logs " in command]
    assert "GET / " in logs, said  # the router's line for the requests above
    (run,) = [output for command, _, output in steps if "print(2 + 2)" in command]
    assert run.strip() == "4", said
    push = next(output for command, _, output in steps if command.startswith("git push"))
    assert "Launched v1" in push or "v1" in push, said
