"""A pushed commit as the controller sees it: its teresa.yaml and an archive of its tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from gitreceiver.archive import archive_to_file


@dataclass(frozen=True)
class PushedCommit:
    repo: Path
    ref: str
    commit: str
    received_seconds: float = 0.0

    def read_teresa_yaml(self) -> bytes | None:
        return read_root_file(self.repo, self.commit, b"teresa.yaml")

    def archive(self, destination: Path) -> None:
        archive_to_file(self.repo, self.commit.encode(), destination)


def read_root_file(repo_path: Path, commit: str, name: bytes) -> bytes | None:
    with Repo(str(repo_path)) as repo:
        head = repo[commit.encode()]
        assert isinstance(head, Commit)
        tree = repo[head.tree]
        assert isinstance(tree, Tree)
        if name not in tree:
            return None
        _mode, sha = tree[name]
        blob = repo[sha]
        return blob.as_raw_string() if isinstance(blob, Blob) else None
