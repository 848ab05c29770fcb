"""Enter an app's sandbox, become the app's user, and exec its command.

Run as root by Teresa's own interpreter with `-I -S` (standard library only, nothing of Teresa's
imported): `python -I -S sandbox_enter.py SPEC -- COMMAND...`. SPEC is JSON:
`{"uid": N, "gid": N, "mounts": [[KIND, PATH], ...]}`, mounts in the order they are made, each
made in a mount namespace of this process's own (nothing outside it changes):

    hide   an empty tmpfs over PATH (mode 0711: passable, not listable)
    ro     PATH as it was before any hide, read-only
    rw     PATH as it was before any hide, writable (the app's own directory)

A failure is one line on stderr and exit status 125; a command that cannot be run, 126 or 127.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC  # statvfs's ST_* bits for these are the same numbers
HIDE_OPTIONS = b"mode=0711,size=1m,nr_inodes=4096"

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.unshare.argtypes = [ctypes.c_int]


class SandboxError(Exception):
    pass


def _call(result: int, what: str) -> None:
    if result != 0:
        raise SandboxError(f"{what}: {os.strerror(ctypes.get_errno())}")


def _encode(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None = None,
           what: str = "") -> None:
    encode = _encode
    _call(libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), what or f"mount {target}")


def _directory(path: str) -> bool:
    """Whether `path` is a directory, made if it can be (a mount point inside a hidden one)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        pass
    return os.path.isdir(path)


def enter(mounts: list[list[str]]) -> None:
    _call(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, what="making / private")
    # Every source is opened before anything is hidden: a path under a hidden one is reached through its fd.
    sources = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for kind, path in mounts if kind != "hide"}
    for kind, path in mounts:
        if kind == "hide":
            if _directory(path):  # else there is nothing to hide
                _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, HIDE_OPTIONS)
            continue
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{sources[path]}", path, None, MS_BIND | MS_REC)
        if kind == "ro":
            kept = os.statvfs(path).f_flag & KEPT_FLAGS
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, what=f"making {path} read-only")
    for fd in sources.values():
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: sandbox_enter.py SPEC -- COMMAND...", file=sys.stderr)
        return 125
    spec, command = json.loads(argv[1]), argv[3:]
    cwd = os.getcwd()
    umask = os.umask(0o022)  # directories made for mount points are passable
    try:
        enter(spec["mounts"])
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
        os.chdir(cwd)  # the directory as this view shows it, reached as the app's user
    except (SandboxError, OSError) as exc:
        print(f"The app's sandbox could not be made: {exc}.", file=sys.stderr)
        return 125
    os.umask(umask)
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"{command[0]}: command not found", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"{command[0]}: {exc.strerror}", file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv))
