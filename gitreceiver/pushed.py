"""A pushed commit as the controller sees it: its teresa.yaml and an archive of its tree."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from dulwich.objects import Commit, Tree
from dulwich.repo import Repo

from gitreceiver.archive import ArchiveLimits, archive_to_file
from gitreceiver.objects import stored_object


@dataclass(frozen=True)
class PushedCommit:
    repo: Path
    ref: str
    commit: str
    max_source_bytes: int
    max_file_bytes: int
    archive_seconds: float
    received_seconds: float = 0.0

    def read_teresa_yaml(self, limit: int) -> bytes | None:
        return read_root_file(self.repo, self.commit, b"teresa.yaml", limit)

    def archive(self, destination: Path, stop: threading.Event) -> None:
        limits = ArchiveLimits(max_bytes=self.max_source_bytes, max_file_bytes=self.max_file_bytes,
                               seconds=self.archive_seconds, stop=stop)
        archive_to_file(self.repo, self.commit.encode(), destination, limits)


def read_root_file(repo_path: Path, commit: str, name: bytes, limit: int) -> bytes | None:
    """The file `name` at the root of the commit's tree, cut after `limit` + 1 bytes; None if absent."""
    with Repo(str(repo_path)) as repo:
        head = repo[commit.encode()]
        assert isinstance(head, Commit)
        tree = repo[head.tree]
        assert isinstance(tree, Tree)
        if name not in tree:
            return None
        _mode, sha = tree[name]
        found = stored_object(repo, sha)
        if found.type not in (b"blob", b""):
            return None
        data = bytearray()
        for piece in found.chunks():
            data += piece
            if len(data) > limit:
                break
        return bytes(data[: limit + 1])
