"""The pushed tree as a gzip'd tarball, written object by object (symlinks kept as symlinks)."""

from __future__ import annotations

import io
import stat
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from controller.deploy import SourceRejected

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class ArchiveError(SourceRejected):
    """The tree cannot be archived; the message says why and what to do."""


def _entries(repo: Repo, tree_id: bytes, prefix: str = "") -> Iterator[tuple[str, int, bytes]]:
    tree = repo[tree_id]
    assert isinstance(tree, Tree)  # a commit's tree, or a directory entry's
    for entry in tree.iteritems():
        name = prefix + entry.path.decode("utf-8", "surrogateescape")
        if stat.S_ISDIR(entry.mode):
            yield from _entries(repo, entry.sha, name + "/")
        elif entry.mode == 0o160000:  # gitlink
            raise ArchiveError(f"'{name}' is a git submodule, which Teresa does not support; vendor its files "
                               "into the repository instead.")
        else:
            yield name, entry.mode, entry.sha


def write_tree_archive(repo: Repo, commit_id: bytes, target: BinaryIO) -> int:
    """Write the commit's tree to `target` as .tar.gz; returns the number of files."""
    commit = repo[commit_id]
    if not isinstance(commit, Commit):
        raise ArchiveError("the pushed ref does not point at a commit; push a branch.")
    mtime = commit.commit_time or int(time.time())
    count = 0
    with tarfile.open(fileobj=target, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        for name, mode, sha in _entries(repo, commit.tree):
            blob = repo[sha]
            assert isinstance(blob, Blob)
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = blob.as_raw_string().decode("utf-8", "surrogateescape")
                tar.addfile(info)
            else:
                info.mode = 0o755 if mode & 0o111 else 0o644
                info.size = blob.raw_length()
                tar.addfile(info, _BlobReader(blob))
            count += 1
    return count


class _BlobReader(io.RawIOBase):
    """Reads a blob's chunks without joining them into one string."""

    def __init__(self, blob: Blob):
        self.chunks = iter(blob.as_raw_chunks())
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        view = memoryview(buffer)  # a bytearray or a memoryview of bytes, as io passes it
        size = min(len(view), len(self.pending))
        view[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def archive_to_file(repo_path: Path, commit_id: bytes, path: Path) -> int:
    with Repo(str(repo_path)) as repo, path.open("wb") as target:
        return write_tree_archive(repo, commit_id, target)
