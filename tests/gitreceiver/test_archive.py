"""The pushed tree as a tarball: symlinks stay symlinks, submodules are refused."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from dulwich.repo import Repo

from gitreceiver.archive import ArchiveError, ArchiveLimits, write_tree_archive

LIMITS = ArchiveLimits(max_bytes=1 << 30, max_file_bytes=1 << 30, seconds=60)


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
        assert write_tree_archive(repo, commit.encode(), buffer, LIMITS) == 3
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
        write_tree_archive(repo, git(work, "rev-parse", "HEAD").encode(), io.BytesIO(), LIMITS)


# --- hostile trees (issue 12): bounded memory, linear time, limits with a sentence ----------------

import threading  # noqa: E402
import tracemalloc  # noqa: E402

from gitreceiver import archive  # noqa: E402
from gitreceiver.archive import ArchiveStopped  # noqa: E402
from gitreceiver.objects import stored_object  # noqa: E402


def repo_with(tmp_path: Path, files: dict[str, bytes], gc: bool = False) -> tuple[Path, str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    git(work, "init", "-q", "-b", "main")
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "files")
    if gc:
        git(work, "gc", "-q")
    return work, git(work, "rev-parse", "HEAD")


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_a_large_file_is_streamed_in_bounded_memory(tmp_path: Path, packed: bool) -> None:
    size = 64 << 20
    work, commit = repo_with(tmp_path, {"zeros.bin": bytes(size), "a.txt": b"a\n"}, gc=packed)
    out = tmp_path / "out.tgz"
    tracemalloc.start()
    try:
        with Repo(str(work)) as repo, out.open("wb") as target:
            assert write_tree_archive(repo, commit.encode(), target, LIMITS) == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # dulwich would hold the whole 64 MiB (and more) at once
    with tarfile.open(out) as tar:
        assert tar.getmember("zeros.bin").size == size


def test_deltified_files_are_read_right(tmp_path: Path) -> None:
    first = bytes(range(256)) * 4096
    work, _ = repo_with(tmp_path, {"data.bin": first})
    (work / "data.bin").write_bytes(first + b"one more line\n")
    git(work, "commit", "-q", "-am", "two")
    git(work, "gc", "-q", "--aggressive")
    commit = git(work, "rev-parse", "HEAD")
    with Repo(str(work)) as repo:
        objects = [stored_object(repo, git(work, "rev-parse", f"{rev}:data.bin").encode()) for rev in ("HEAD~", "HEAD")]
        assert any(o.delta for o in objects)
        for found, data in zip(objects, (first, first + b"one more line\n")):
            assert found.size == len(data) and b"".join(found.chunks()) == data
        buffer = io.BytesIO()
        write_tree_archive(repo, commit.encode(), buffer, LIMITS)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        assert tar.extractfile("data.bin").read() == first + b"one more line\n"


def test_total_size_is_limited_with_a_sentence(tmp_path: Path) -> None:
    work, commit = repo_with(tmp_path, {"a.bin": bytes(6000), "b.bin": bytes(6000)})
    limits = ArchiveLimits(max_bytes=10000, max_file_bytes=1 << 30, seconds=60)
    with Repo(str(work)) as repo, pytest.raises(ArchiveError, match=r"add up to more than 10000 bytes \(TERESA_MAX_SOURCE_BYTES\)"):
        write_tree_archive(repo, commit.encode(), io.BytesIO(), limits)


def nested_tree(work: Path, depth: int, fanout: int = 1) -> str:
    """A commit whose tree nests `depth` directories, each naming the one below `fanout` times."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=work, input=b"x", capture_output=True,
                          check=True).stdout.decode().strip()
    tree = subprocess.run(["git", "mktree"], cwd=work, input=f"100644 blob {blob}\tleaf\n".encode(),
                          capture_output=True, check=True).stdout.decode().strip()
    for _ in range(depth):
        listing = "".join(f"040000 tree {tree}\td{n}\n" for n in range(fanout))
        tree = subprocess.run(["git", "mktree"], cwd=work, input=listing.encode(), capture_output=True,
                              check=True).stdout.decode().strip()
    return git(work, "commit-tree", tree, "-m", "deep")


def test_a_deep_tree_is_refused_with_a_sentence_not_a_recursion_error(tmp_path: Path) -> None:
    work, _ = repo_with(tmp_path, {"a": b"a"})
    commit = nested_tree(work, 1200)
    with Repo(str(work)) as repo, pytest.raises(ArchiveError, match="nests directories more than 256 deep"):
        write_tree_archive(repo, commit.encode(), io.BytesIO(), LIMITS)


def test_a_tree_naming_the_same_subtree_over_and_over_is_refused(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    work, _ = repo_with(tmp_path, {"a": b"a"})
    commit = nested_tree(work, 9, fanout=10)  # 10**9 files from a few hundred bytes of trees
    monkeypatch.setattr(archive, "MAX_ENTRIES", 20_000)
    with Repo(str(work)) as repo, pytest.raises(ArchiveError, match="more than 20000 files and directories"):
        write_tree_archive(repo, commit.encode(), io.BytesIO(), LIMITS)


def test_archiving_stops_when_told(tmp_path: Path) -> None:
    work, commit = repo_with(tmp_path, {"a.bin": bytes(1 << 20)})
    stop = threading.Event()
    stop.set()
    limits = ArchiveLimits(max_bytes=1 << 30, max_file_bytes=1 << 30, seconds=60, stop=stop)
    with Repo(str(work)) as repo, pytest.raises(ArchiveStopped):
        write_tree_archive(repo, commit.encode(), io.BytesIO(), limits)
