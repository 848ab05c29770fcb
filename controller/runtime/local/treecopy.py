"""The copy of an unpacked release a one-off runs in: files, directories and symlinks, never sockets or FIFOs.

A release directory a process is serving from may hold a socket or a FIFO (gunicorn keeps its control
socket in `.gunicorn/gunicorn.ctl`): they belong to the running process, cannot be copied as files, and
a copy of them would mean nothing to the one-off. They are left out, as are device files.

Run as a script (`python -I -S treecopy.py SOURCE TARGET`) by the app's user inside its sandbox
(tenancy.copy_release), so nothing the app controls is followed with more rights than the app's; it
therefore imports nothing but the standard library. A copy that fails prints one line and exits 1.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from typing import Iterable


def not_files(directory: str, names: Iterable[str]) -> set[str]:
    """The entries of `directory` that are neither files, directories nor symlinks."""
    kept = (stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK)
    return {name for name in names if not any(kind(os.lstat(os.path.join(directory, name)).st_mode) for kind in kept)}


def copy(source: str, target: str) -> None:
    shutil.copytree(source, target, symlinks=True, ignore=not_files)


def failure(exc: OSError | shutil.Error, source: str) -> str:
    """What went wrong, in a line naming the path inside the release rather than the server's."""
    if isinstance(exc, shutil.Error):
        first_source, _target, why = exc.args[0][0]  # why: str(OSError), "[Errno 13] Permission denied: '/…'"
        return f"{os.path.relpath(first_source, source)}: {why.split('] ', 1)[-1].split(': ', 1)[0]}"
    where = os.path.relpath(exc.filename, source) if exc.filename else "."
    return f"{where}: {exc.strerror or exc}"


def main(argv: list[str]) -> int:
    source, target = argv
    try:
        copy(source, target)
    except (OSError, shutil.Error) as exc:
        print(failure(exc, source), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
