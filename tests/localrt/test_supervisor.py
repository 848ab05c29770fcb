"""Supervised processes: crash restarts with backoff, liveness restarts, logs, one-off runs."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import pytest

from controller.runtime.base import LOG_TIMESTAMP, RuntimeFailure, split_log_timestamp
from tests.fixtures.teresa import BytesInput, MemoryOutput
from tests.localrt.harness import PYTHON, async_test, harness, spec, until


def texts(lines: list[str]) -> list[str]:
    """Log lines without their timestamps, which every line has."""
    split = [split_log_timestamp(line) for line in lines]
    assert all(LOG_TIMESTAMP.fullmatch(stamp) for stamp, _ in split), lines
    return [text for _, text in split]

LIVENESS = """
healthCheck:
  liveness: {path: /alive, initialDelaySeconds: 5, periodSeconds: 1, failureThreshold: 1}
"""


@async_test
async def test_crashed_process_restarts_with_exponential_backoff(tmp_path):
    async with harness(tmp_path) as h:
        crash = tmp_path / "crash"
        await h.rt.deploy(h.release("crashy", 1, config={"CRASH_FILE": str(crash)}), None, h.out)
        crash.touch()
        assert (await h.get("crashy", "/crash"))[0] == 502
        logs = h.rt.supervisor("crashy").logs
        await until(lambda: len([l for l in logs.tail(100) if "restarting in" in l]) >= 5, timeout=60,
                    what="five restarts")
        delays = [float(m.group(1)) for l in logs.tail(100) if (m := re.search(r"restarting in ([\d.]+)s", l))]
        assert delays[:5] == [0.1, 0.2, 0.4, 0.4, 0.4]   # doubling, capped
        assert "teresa[web.1] | process exited with status 3; restarting in 0.1s" in texts(logs.tail(100))
        assert "web.1 | crashing on purpose" in texts(logs.tail(100))
        (web,) = await h.ps("crashy")
        assert web.restarts >= 5
        crash.unlink()
        await until(lambda: h.answers("crashy"), what="the app answering again")


@async_test
async def test_failing_liveness_check_restarts_the_process(tmp_path):
    async with harness(tmp_path) as h:
        sick = tmp_path / "sick"
        release = h.release("sickly", 1, config={"SICK_FILE": str(sick)}, app_spec=spec(LIVENESS))
        await h.rt.deploy(release, None, h.out)
        (replica,) = h.alive("sickly")
        first_pid = replica._proc.pid
        sick.touch()
        await until(lambda: replica.restarts >= 1, timeout=30, what="a liveness restart")
        assert any("liveness check failed 1 times (GET /alive returned HTTP 500)" in l
                   for l in h.rt.supervisor("sickly").logs.tail(50))
        sick.unlink()
        await until(lambda: replica.state == "up", what="the restarted process to be up")
        assert replica._proc.pid != first_pid
        assert (await h.get("sickly"))[0] == 200


@async_test
async def test_logs_tail_filter_and_follow(tmp_path):
    async with harness(tmp_path) as h:
        processes = {"web": f"{PYTHON} -u webapp.py", "worker": f"{PYTHON} -u worker.py"}
        await h.rt.deploy(h.release("chatty", 1, processes=processes, formation={"worker": 1}), None, h.out)
        logs = h.rt.supervisor("chatty").logs
        await until(lambda: len(logs.tail(10, "worker")) >= 4, what="worker output")

        tail = texts([line async for line in h.rt.logs("chatty", 3, False, "worker")])
        assert len(tail) == 3 and all(re.fullmatch(r"worker\.1 \| tick \d+", line) for line in tail)
        web_only = texts([line async for line in h.rt.logs("chatty", 100, False, "web")])
        assert web_only and all(line.startswith(("web.1 | ", "teresa[web.1] | ")) for line in web_only)
        assert [line async for line in h.rt.logs("chatty", 0, False, None)] == []

        follower = h.rt.logs("chatty", 0, True, "web")
        next_line = asyncio.ensure_future(follower.__anext__())
        await h.get("chatty", "/followme")
        (line,) = texts([await asyncio.wait_for(next_line, 10)])
        assert line.startswith("web.1 | request") and "/followme" in line
        await follower.aclose()
        assert "GET /followme" in logs.path.read_text()


@async_test
async def test_run_streams_output_forwards_stdin_and_returns_exit_status(tmp_path):
    async with harness(tmp_path) as h:
        release = h.release("oneoff", 1, config={"MESSAGE": "configured"})
        out = MemoryOutput()
        script = 'echo "$MESSAGE"; ls webapp.py; read line; echo "got $line"; exit 7'
        status = await h.rt.run(release, ["bash", "-c", script], BytesInput(b"typed\n"), out)
        assert status == 7
        assert out.text == "configured\nwebapp.py\ngot typed\n"


@async_test
async def test_a_one_off_runs_in_a_fresh_copy_of_the_release_not_in_a_running_process_directory(tmp_path):
    async with harness(tmp_path) as h:
        release = h.release("copy", 1)
        await h.rt.deploy(release, None, h.out)
        (web,) = h.alive("copy")
        out = MemoryOutput()
        script = 'pwd; echo "$HOME"; ls webapp.py; echo scribbled > webapp.py; touch new-file'
        assert await h.rt.run(release, ["bash", "-c", script], BytesInput(), out) == 0
        cwd, home, listed, *_ = out.text.splitlines()
        assert cwd == home and Path(cwd) != web.app_dir and listed == "webapp.py"
        assert "scribbled" not in (web.app_dir / "webapp.py").read_text()
        assert not (web.app_dir / "new-file").exists() and not Path(cwd).exists()  # removed once it ended


@async_test
async def test_a_one_off_copy_leaves_out_sockets_and_fifos_and_a_copy_that_fails_is_one_sentence(tmp_path):
    async with harness(tmp_path) as h:
        release = h.release("special", 1)
        directory = h.rt.tenancy.releases_dir("special") / "v1"
        (directory / ".gunicorn").mkdir()
        control = socket.socket(socket.AF_UNIX)  # as a serving gunicorn keeps in the release's directory
        control.bind(str(directory / ".gunicorn" / "gunicorn.ctl"))
        os.mkfifo(directory / "pipe")
        os.symlink("webapp.py", directory / "link")
        try:
            out = MemoryOutput()
            script = "find . -type s -o -type p | wc -l; readlink link; ls -d .gunicorn"
            assert await h.rt.run(release, ["bash", "-c", script], BytesInput(), out) == 0
            assert out.text.split() == ["0", "webapp.py", ".gunicorn"]
            (directory / "webapp.py").chmod(0)  # unreadable to the app's user (root reads anything)
            with pytest.raises(RuntimeFailure) as failed:
                await h.rt.run(release, ["true"], BytesInput(), MemoryOutput())
            if h.rt.tenancy.user("special") is not None:
                assert str(failed.value) == ("The release could not be copied for the one-off (webapp.py: Permission "
                                             "denied); try again, and if it fails again, ask the operator to check "
                                             "the server's disk.")
        finally:
            control.close()


@async_test
async def test_cancelled_run_kills_the_process(tmp_path):
    async with harness(tmp_path) as h:
        release = h.release("oneoff", 1)
        pidfile = tmp_path / "pid"
        out = MemoryOutput()
        task = asyncio.create_task(h.rt.run(release, ["bash", "-c", f"echo $$ > {pidfile}; echo started; sleep 60"],
                                            BytesInput(), out))
        await until(lambda: out.text == "started\n", what="the command to start")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pid = int(pidfile.read_text())
        await until(lambda: not _alive(pid), what="the one-off process to be killed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
