"""`teresa-slugrunner init`: a container's first process passes signals to the whole process group and waits
for every process of it, so an app behind a shell gets SIGTERM and has time to handle it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

APP = ("import signal, sys, time\n"
       "def stop(signum, frame):\n"
       "    time.sleep(0.5)\n"  # bash is long dead by now: only an init that waits lets this line out
       "    print('got SIGTERM', flush=True)\n"
       "    sys.exit(0)\n"
       "signal.signal(signal.SIGTERM, stop)\n"
       "print('listening', flush=True)\n"
       "while True:\n"
       "    time.sleep(1)\n")


def init(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "builder.slugrunner", "init", "--", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_reaches_an_app_behind_a_shell_and_init_waits_for_it() -> None:
    # Not a simple command: bash stays the app's parent and dies of SIGTERM at once.
    process = init("bash", "-c", f"{sys.executable} -c \"{APP}\"; echo after")
    assert process.stdout is not None
    assert process.stdout.readline() == "listening\n"
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 128 + signal.SIGTERM  # bash's end, as a shell reports it
    # In a container the kernel kills what is left once PID 1 exits: init must outlive the app's handler.
    assert time.monotonic() - signalled >= 0.5
    rest = process.stdout.read()
    assert "got SIGTERM" in rest and "after" not in rest, rest


def test_without_a_signal_the_command_s_status_ends_it_at_once() -> None:
    started = time.monotonic()
    process = init("bash", "-c", "sleep 30 & exit 3")  # a background process does not keep it up
    assert process.wait(10) == 3
    assert time.monotonic() - started < 10


def test_init_without_a_command_is_one_sentence() -> None:
    process = init()
    assert process.wait(10) == 2
    assert process.stdout is not None
    assert process.stdout.read() == "teresa-slugrunner: init needs a command; use teresa-slugrunner init -- CMD ARGS...\n"


def test_with_a_terminal_the_command_reads_it_as_the_foreground_group() -> None:
    """`ssh -t … run APP -- sh` on Kubernetes: the pod's terminal is init's; the command, in a process group of
    its own, must be the terminal's foreground group, or its first read stops it (SIGTTIN) and the shell hangs."""
    import pexpect

    child = pexpect.spawn(sys.executable, ["-m", "builder.slugrunner", "init", "--", "sh", "-c",
                                           "read answer; echo got:$answer; exit 4"], timeout=10, encoding="utf-8")
    child.sendline("hi")
    child.expect("got:hi")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4
