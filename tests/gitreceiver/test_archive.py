"""The pushed tree as a tarball: symlinks stay symlinks, submodules are refused."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from dulwich.repo import Repo

from gitreceiver.archive import ArchiveError, write_tree_archive


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=T", "-c",
                           "protocol.file.allow=always", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_symlinks_and_modes_survive_and_submodules_are_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "bin").mkdir()
    (work / "bin" / "run").write_text("#!/bin/sh\necho hi\n")
    (work / "bin" / "run").chmod(0o755)
    (work / "config.yml").write_text("a: 1\n")
    (work / "current.yml").symlink_to("config.yml")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one")
    commit = git(work, "rev-parse", "HEAD")

    buffer = io.BytesIO()
    with Repo(str(work)) as repo:
        assert write_tree_archive(repo, commit.encode(), buffer) == 3
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["current.yml"].issym() and members["current.yml"].linkname == "config.yml"
        assert members["bin/run"].mode == 0o755 and members["config.yml"].mode == 0o644
        assert tar.extractfile("bin/run").read() == b"#!/bin/sh\necho hi\n"

    other = tmp_path / "lib"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    (other / "x").write_text("x")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "lib")
    git(work, "submodule", "add", "-q", str(other), "vendor/lib")
    git(work, "commit", "-q", "-m", "submodule")
    with Repo(str(work)) as repo, pytest.raises(ArchiveError, match="vendor/lib' is a git submodule"):
        write_tree_archive(repo, git(work, "rev-parse", "HEAD").encode(), io.BytesIO())
