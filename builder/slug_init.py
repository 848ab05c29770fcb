"""`teresa-slugrunner init -- CMD ...`: the first process of a slug's container, so the app gets SIGTERM.

As PID 1 an app ignores SIGTERM unless it installed a handler, and a Procfile line
that is not a simple command (`python app.py; echo done`, a script) leaves bash as
the process the signal reaches, which never passes it on. tini or dumb-init (with
`-g`) would signal the whole process group, but they exit as soon as their child
does: bash dies of the signal at once, the container ends, and the kernel kills the
app before its handler has run. This init signals the group like Heroku signals
every process of a dyno, and after a signal keeps the container up until every
process of it has exited (the kubelet's grace period bounds that). Without a
signal it exits with the command's status as soon as the command exits, as an
exec'd command would.

It marks itself a child subreaper, so the group's orphans are its children whether
or not it is PID 1, and reaps them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType
from typing import NoReturn, Sequence

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans go to the system's init, as they would anyway
        pass


class Group:
    """The command's process group and the signals it was sent."""

    def __init__(self) -> None:
        self.leader: int | None = None
        self.signalled: list[int] = []

    def forward(self, signum: int, _frame: FrameType | None = None) -> None:
        self.signalled.append(signum)
        self.send(signum)

    def send(self, signum: int) -> None:
        if self.leader is not None:
            try:
                os.killpg(self.leader, signum)
            except ProcessLookupError:
                pass


def _take_the_terminal() -> None:
    """In the child, before exec: with a terminal (`ssh -t … run`), the command's new process group becomes its
    foreground group, or the command's first read of it stops the command (SIGTTIN)."""
    if not os.isatty(0):
        return
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # we are not the foreground group yet
    try:
        os.tcsetpgrp(0, os.getpgrp())
    except OSError:  # not our controlling terminal: nothing to hand over
        pass
    signal.signal(signal.SIGTTOU, previous)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def run(argv: Sequence[str]) -> int:
    """Run argv as described above; its exit status (128 + N when killed by signal N)."""
    _become_subreaper()
    group = Group()
    for signum in FORWARDED:
        signal.signal(signum, group.forward)
    child = subprocess.Popen(list(argv), process_group=0, preexec_fn=_take_the_terminal)
    group.leader = child.pid
    for early in group.signalled:  # arrived before the group existed
        group.send(early)
    status: int | None = None
    while True:
        try:
            pid, raw = os.waitpid(-1, 0)
        except ChildProcessError:  # nothing left to wait for
            break
        if pid == child.pid:
            status = _exit_code(raw)
            child.returncode = status  # reaped here, not by Popen
        if status is not None and not group.signalled:
            break  # the command ended on its own: so does the container
    return 1 if status is None else status


def main(argv: Sequence[str]) -> NoReturn:
    if not argv:
        print("teresa-slugrunner: init needs a command; use teresa-slugrunner init -- CMD ARGS...", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(argv))
