"""The pushed tree as a gzip'd tarball, written object by object (symlinks kept as symlinks).

Whoever pushes chooses the tree, so archiving it is bounded: each file is
streamed in CHUNK-sized pieces (gitreceiver.objects), the walk is iterative
with a depth limit, and the whole stops with a sentence when the files add up
to more than TERESA_MAX_SOURCE_BYTES or more than MAX_ENTRIES (a tree may
name the same subtree or file many times), when the time runs out, or as soon
as `stop` is set (the client went away).
"""

from __future__ import annotations

import io
import stat
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from dulwich.objects import Commit, Tree
from dulwich.repo import Repo

from controller.deploy import SourceRejected
from gitreceiver.objects import CorruptObject, StoredObject, stored_object

MAX_DEPTH = 256       # directories inside directories
MAX_ENTRIES = 500_000  # files, links and directories in all
MAX_LINK_BYTES = 4096

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ArchiveError(SourceRejected):
    """The tree cannot be archived; the message says why and what to do."""


class ArchiveStopped(Exception):
    """`stop` was set: nobody waits for this archive any more."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int            # all files together, uncompressed (TERESA_MAX_SOURCE_BYTES)
    max_file_bytes: int       # a file stored as a delta is rebuilt in memory: at most this big
    seconds: float            # for the whole archive
    stop: threading.Event = field(default_factory=threading.Event)


class _Budget:
    def __init__(self, limits: ArchiveLimits):
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.bytes = 0
        self.entries = 0

    def check(self) -> None:
        if self.limits.stop.is_set():
            raise ArchiveStopped()
        if time.monotonic() > self.deadline:
            raise ArchiveError(f"archiving the pushed tree took longer than {self.limits.seconds:.0f} seconds; "
                               "push a smaller repository.")

    def entry(self, name: str) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise ArchiveError(f"the pushed tree has more than {MAX_ENTRIES} files and directories; "
                               "push fewer files.")

    def file(self, name: str, blob: StoredObject) -> None:
        self.bytes += blob.size
        if self.bytes > self.limits.max_bytes:
            raise ArchiveError(f"the pushed files add up to more than {self.limits.max_bytes} bytes "
                               "(TERESA_MAX_SOURCE_BYTES); keep large files out of the repository.")
        if blob.delta and blob.size > self.limits.max_file_bytes:
            raise ArchiveError(f"'{_short(name)}' is larger than {self.limits.max_file_bytes} bytes "
                               "(TERESA_MAX_FILE_BYTES); keep large files out of the repository.")


def _short(name: str, limit: int = 80) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in name)
    return clean if len(clean) <= limit else "…" + clean[-(limit - 1):]


def _tree(repo: Repo, sha: bytes, name: str) -> Tree:
    tree = repo[sha]
    if not isinstance(tree, Tree):
        raise ArchiveError(f"'{_short(name)}' is not a directory in the pushed commit; push a valid repository.")
    return tree


def _entries(repo: Repo, root: Tree, budget: _Budget) -> Iterator[tuple[str, int, bytes]]:
    """(path, mode, sha) of every file and link, depth first, without recursion."""
    stack: list[tuple[Iterator[tuple[bytes, int, bytes]], str, int]] = [(iter(root.iteritems()), "", 0)]
    while stack:
        budget.check()
        entries, prefix, depth = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        path, mode, sha = entry
        name = prefix + path.decode("utf-8", "surrogateescape")
        budget.entry(name)
        if stat.S_ISDIR(mode):
            if depth + 1 > MAX_DEPTH:
                raise ArchiveError(f"the pushed tree nests directories more than {MAX_DEPTH} deep (at "
                                   f"'{_short(name)}'); flatten it.")
            stack.append((iter(_tree(repo, sha, name).iteritems()), name + "/", depth + 1))
        elif mode == 0o160000:  # gitlink
            raise ArchiveError(f"'{_short(name)}' is a git submodule, which Teresa does not support; vendor its "
                               "files into the repository instead.")
        else:
            yield name, mode, sha


def write_tree_archive(repo: Repo, commit_id: bytes, target: BinaryIO, limits: ArchiveLimits) -> int:
    """Write the commit's tree to `target` as .tar.gz; returns the number of files."""
    commit = repo[commit_id]
    if not isinstance(commit, Commit):
        raise ArchiveError("the pushed ref does not point at a commit; push a branch.")
    budget = _Budget(limits)
    mtime = commit.commit_time or int(time.time())
    count = 0
    with tarfile.open(fileobj=target, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        for name, mode, sha in _entries(repo, _tree(repo, commit.tree, "/"), budget):
            try:
                blob = stored_object(repo, sha)
            except (KeyError, CorruptObject):
                raise ArchiveError(f"'{_short(name)}' is missing or damaged in the pushed commit; "
                                   "push again.") from None
            budget.file(name, blob)
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if stat.S_ISLNK(mode):
                if blob.size > MAX_LINK_BYTES:
                    raise ArchiveError(f"the symlink '{_short(name)}' has a target longer than {MAX_LINK_BYTES} "
                                       "bytes; shorten it.")
                info.type = tarfile.SYMTYPE
                info.linkname = b"".join(blob.chunks()).decode("utf-8", "surrogateescape")
                tar.addfile(info)
            else:
                info.mode = 0o755 if mode & 0o111 else 0o644
                info.size = blob.size
                tar.addfile(info, io.BufferedReader(_BlobReader(blob, budget), buffer_size=64 * 1024))
            count += 1
    return count


class _BlobReader(io.RawIOBase):
    """Reads a blob's pieces in order, in linear time (no re-slicing of what is left)."""

    def __init__(self, blob: StoredObject, budget: _Budget):
        self.pieces = blob.chunks()
        self.budget = budget
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self.pending:
            self.budget.check()
            try:
                piece = next(self.pieces, b"")
            except CorruptObject:
                raise ArchiveError("a file of the pushed commit is damaged; push again.") from None
            if not piece:
                return 0
            self.pending = memoryview(piece)
        view = memoryview(buffer)  # a bytearray or a memoryview of bytes, as io passes it
        size = min(len(view), len(self.pending))
        view[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def archive_to_file(repo_path: Path, commit_id: bytes, path: Path, limits: ArchiveLimits) -> int:
    with Repo(str(repo_path)) as repo, path.open("wb") as target:
        return write_tree_archive(repo, commit_id, target, limits)
