"""Safe unpacking and packing of the gzip tarballs the builder moves around (sources, slugs, caches)."""

from __future__ import annotations

import copy
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable


class ArchiveError(Exception):
    """The archive cannot be unpacked safely; the message is one sentence."""


def _refuse(what: str, member: tarfile.TarInfo, problem: str) -> ArchiveError:
    return ArchiveError(f"The {what} has an unsafe entry {member.name!r} ({problem}); remove it and try again.")


def _inside(root: str, target: str) -> bool:
    return os.path.commonpath([root, target]) == root


def _safe_filter(what: str, any_link_target: bool) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """Reject what could write outside the destination, then apply tarfile's own `data` filter.

    With `any_link_target`, symlinks may point anywhere (a slug may link to the stack's files);
    nothing is ever written through a link to outside the destination.
    """

    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        name = PurePosixPath(member.name)
        if name.is_absolute() or member.name.startswith(("/", "\\")):
            raise _refuse(what, member, "absolute path")
        if ".." in name.parts:
            raise _refuse(what, member, "a `..` path")
        if member.isdev() or member.isfifo():
            raise _refuse(what, member, "a device or pipe")
        root = os.path.realpath(dest)
        if member.issym() and any_link_target:
            return tarfile.tar_filter(member, dest)
        if member.issym():
            target = os.path.normpath(os.path.join(root, os.path.dirname(member.name), member.linkname))
            if os.path.isabs(member.linkname) or not _inside(root, target):
                raise _refuse(what, member, f"a symlink to {member.linkname!r} outside the directory")
        if member.islnk() and (os.path.isabs(member.linkname) or ".." in PurePosixPath(member.linkname).parts):
            raise _refuse(what, member, f"a hard link to {member.linkname!r} outside the directory")
        if not HAS_FILTERS:
            return _data_filter(what, member, dest)
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise _refuse(what, member, str(exc).rstrip(".")) from None

    return check


# Python 3.11.4 brought tarfile's extraction filters; Debian 12's python3 is 3.11.2.
HAS_FILTERS = hasattr(tarfile, "data_filter")


def _data_filter(what: str, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """What tarfile's `data` filter does once the checks above have passed (for Pythons without it):
    nothing reached through an extracted symlink lands outside, no ownership from the archive, no
    setuid, setgid, sticky or group/other write bits, files readable and writable by their owner,
    executable only if the owner may execute them, directories made with the default mode."""
    root = os.path.realpath(dest)
    if not _inside(root, os.path.realpath(os.path.join(root, member.name))):
        raise _refuse(what, member, "it would be written outside the directory")
    if member.islnk() or (member.issym() and not os.path.isabs(member.linkname)):
        base = root if member.islnk() else os.path.join(root, os.path.dirname(member.name))
        if not _inside(root, os.path.realpath(os.path.join(base, member.linkname))):
            raise _refuse(what, member, f"a link to {member.linkname!r} outside the directory")
    safe = copy.copy(member)
    safe.mode = member.mode & 0o755
    if member.isreg() or member.islnk():
        safe.mode = (safe.mode if safe.mode & 0o100 else safe.mode & ~0o111) | 0o600
    elif member.isdir():
        safe.mode = 0o777 & ~_umask()
    safe.uid, safe.gid, safe.uname, safe.gname = os.geteuid(), os.getegid(), "", ""
    return safe


def _umask() -> int:
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError):
        return 0o022


def extract(archive: Path, dest: Path, what: str = "archive", any_link_target: bool = False) -> None:
    """Unpack a .tar.gz into `dest`; nothing is written outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if HAS_FILTERS:
                tar.extractall(dest, filter=_safe_filter(what, any_link_target))
            else:
                _extract_checked(tar, dest, _safe_filter(what, any_link_target))
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"The {what} is corrupt or not a gzip tar archive ({_reason(exc)}); upload it again.") from None


def _extract_checked(tar: tarfile.TarFile, dest: Path,
                     check: Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]) -> None:
    """extractall(filter=check) for Pythons without filters: each member checked just before it is written,
    against what the members before it made."""
    for member in tar:
        if (checked := check(member, str(dest))) is not None:
            tar.extract(checked, dest)


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".:")


def pack(source: Path, archive: Path, skip: Callable[[str], bool] = lambda _: False) -> None:
    """Write `source`'s contents as a .tar.gz with paths relative to it; `skip(relpath)` leaves entries out."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if skip(info.name):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        for entry in sorted(os.listdir(source)):
            tar.add(source / entry, arcname=entry, filter=keep)
