"""The apps' git repositories: the authoritative copy in storage, a cache of it on each replica's disk.

Storage holds, per app (keys in core/layout.py `RepoKeys`), the packs of every
accepted push and a manifest, `refs.json`: the refs, HEAD, and the packs that
hold their objects. Packs are written before the manifest names them and a
manifest is replaced whole, so a reader sees an old state or a new one, never half.
Only the holder of the app's deploy lock publishes (`publish`), after a push.

Each replica keeps a bare repository under `<data_dir>/repos/<app>.git` and brings
it up to date (`sync`) before serving a push or a fetch: packs it lacks are
downloaded, refs are set to the manifest's. A missing manifest is an empty
repository. The cache may hold more objects than the manifest names (a push whose
build failed); they are harmless, and published with the next accepted push.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TypedDict

from dulwich.object_store import DiskObjectStore
from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from core import names
from core.commands import CommandError, shown
from core.layout import RepoKeys
from core.private import private_dir
from core.storage import Storage, StorageNotFound

ZERO = "0" * 40
DEFAULT_HEAD = "refs/heads/main"
HEAD = Ref(b"HEAD")


class Manifest(TypedDict):
    """refs.json, as stored."""

    head: str  # what HEAD points at, like refs/heads/main
    refs: dict[str, str]  # ref name -> commit sha (hex)
    packs: list[str]  # pack base names (pack-<sha>) whose objects the refs need, oldest first


def app_from_git_path(path: str) -> str:
    """`/myapp.git`, `myapp.git`, `/myapp`, `~/myapp` -> `myapp`."""
    name = path.strip().removeprefix("~/").strip("/").removesuffix("/").removesuffix(".git")
    if not name or "/" in name:
        raise CommandError(f"'{shown(path)}' is not an app repository; push to ssh://git@HOST:PORT/APP.git.")
    return names.app_name(name)


def repo_path(data_dir: Path, app: str) -> Path:
    return data_dir / "repos" / f"{app}.git"


def open_or_create(data_dir: Path, app: str) -> Path:
    path = repo_path(data_dir, app)
    if not (path / "HEAD").exists():
        private_dir(path.parent)
        private_dir(path)
        Repo.init_bare(str(path)).close()
        (path / "HEAD").write_text(f"ref: {DEFAULT_HEAD}\n")
    return path


def remove(data_dir: Path, app: str) -> None:
    shutil.rmtree(repo_path(data_dir, app), ignore_errors=True)


# --- the copy in storage ---------------------------------------------------------------------

_cache_locks: dict[str, threading.Lock] = {}
_cache_locks_guard = threading.Lock()


def _cache_lock(path: Path) -> threading.Lock:
    """One cache update at a time per repository in this process (two fetches may arrive together)."""
    with _cache_locks_guard:
        return _cache_locks.setdefault(str(path), threading.Lock())


def read_manifest(storage: Storage, app: str) -> Manifest:
    try:
        with storage.open_read(RepoKeys(app).manifest) as stream:
            data = json.loads(stream.read())
    except StorageNotFound:
        return Manifest(head=DEFAULT_HEAD, refs={}, packs=[])
    return Manifest(head=str(data["head"]), refs={str(k): str(v) for k, v in data["refs"].items()},
                    packs=[str(p) for p in data["packs"]])


def _pack_dir(path: Path) -> Path:
    return path / "objects" / "pack"


def _local_packs(path: Path) -> set[str]:
    """Complete packs in the cache (the index is written after the pack, so it marks completion)."""
    directory = _pack_dir(path)
    return {p.stem for p in directory.glob("pack-*.pack") if p.with_suffix(".idx").exists()}


def sync(storage: Storage, data_dir: Path, app: str) -> tuple[Path, Manifest]:
    """Bring the app's cache to the manifest in storage; returns the cache's path and that manifest."""
    path = open_or_create(data_dir, app)
    manifest = read_manifest(storage, app)
    keys = RepoKeys(app)
    with _cache_lock(path):
        missing = [name for name in manifest["packs"] if name not in _local_packs(path)]
        for name in missing:  # index last: dulwich finds a pack by its .pack and reads the .idx beside it
            for suffix in (".pack", ".idx"):
                _download(storage, keys.pack(name + suffix), _pack_dir(path) / (name + suffix))
        with Repo(str(path)) as repo:
            wanted = {Ref(ref.encode()): ObjectID(sha.encode()) for ref, sha in manifest["refs"].items()}
            current = repo.refs.as_dict()
            for ref in current:
                if ref != HEAD and ref not in wanted:
                    del repo.refs[ref]
            for ref, sha in wanted.items():
                if current.get(ref) != sha:
                    repo.refs[ref] = sha
            head = Ref(manifest["head"].encode())
            if repo.refs.get_symrefs().get(HEAD) != head:
                repo.refs.set_symbolic_ref(HEAD, head)
    return path, manifest


def _download(storage: Storage, key: str, destination: Path) -> None:
    fd, scratch = tempfile.mkstemp(prefix=".incoming-", dir=destination.parent)
    os.close(fd)
    try:
        storage.get_file(key, scratch)
        os.replace(scratch, destination)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


def publish(storage: Storage, data_dir: Path, app: str, updates: dict[str, str]) -> Manifest:
    """After an accepted push (the caller holds the app's deploy lock): upload new packs, then the refs.

    `updates` maps each ref that moved to its new sha (ZERO: deleted).
    """
    path = repo_path(data_dir, app)
    manifest = read_manifest(storage, app)
    keys = RepoKeys(app)
    with Repo(str(path)) as repo:
        store = repo.object_store
        if isinstance(store, DiskObjectStore):  # objects a push left loose go into a pack of their own
            store.pack_loose_objects()
    with _cache_lock(path):
        new = sorted(_local_packs(path) - set(manifest["packs"]))
        for name in new:
            for suffix in (".pack", ".idx"):
                storage.put_file(keys.pack(name + suffix), _pack_dir(path) / (name + suffix))
    refs = dict(manifest["refs"])
    for ref, sha in updates.items():
        if sha == ZERO:
            refs.pop(ref, None)
        else:
            refs[ref] = sha
    published = Manifest(head=manifest["head"], refs=refs, packs=manifest["packs"] + new)
    _put_json(storage, keys.manifest, published)
    return published


def _put_json(storage: Storage, key: str, value: Manifest) -> None:
    storage.put_stream(key, io.BytesIO(json.dumps(value, indent=1, sort_keys=True).encode()))
