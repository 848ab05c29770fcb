"""Run a build step in its own process group, relaying its output line by line, under a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable, Mapping, Sequence

MAX_LINE = 64 * 1024
MAX_CAPTURE = 1 << 20


class TimedOut(Exception):
    """The deadline passed; the process group has been killed."""


@dataclass
class Result:
    status: int
    stdout: bytes = b""


def _relay(pipe: IO[bytes], emit: Callable[[bytes], None]) -> None:
    with pipe:
        for line in iter(lambda: pipe.readline(MAX_LINE), b""):
            emit(line)


def _capture(pipe: IO[bytes], into: bytearray) -> None:
    with pipe:
        while chunk := pipe.read(65536):
            if len(into) < MAX_CAPTURE:
                into.extend(chunk)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(
    argv: Sequence[str],
    *,
    emit: Callable[[bytes], None],
    deadline: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    capture_stdout: bool = False,
) -> Result:
    """Run `argv`; stderr (and stdout unless captured) go to `emit` line by line as they come.

    The process and everything it started are killed when it ends, fails, or the deadline passes.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stdout else subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    captured = bytearray()
    assert proc.stdout is not None
    if capture_stdout:
        assert proc.stderr is not None
        threads = [
            threading.Thread(target=_capture, args=(proc.stdout, captured), daemon=True),
            threading.Thread(target=_relay, args=(proc.stderr, emit), daemon=True),
        ]
    else:
        threads = [threading.Thread(target=_relay, args=(proc.stdout, emit), daemon=True)]
    for thread in threads:
        thread.start()
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        raise TimedOut() from None
    finally:
        _kill_group(proc)  # stragglers left in the background would hold the pipes open
        for thread in threads:
            thread.join(timeout=5)
    return Result(proc.returncode, bytes(captured))
