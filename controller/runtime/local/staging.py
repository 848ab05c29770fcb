"""Handing a local build or slug fetch its own objects as open files, never a path or a credential.

The server copies what the process may read out of storage into a directory
only it can enter, opens each file, and passes the descriptors (`fd:N` grants,
see builder/transfer.py) to the process, which runs as the app's user. What the
process writes goes to descriptors of files the server created; the server
stores them afterwards. Nothing the app controls is followed: no symlink can
point the server at another file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from builder.slugrunner import check_digest
from core.private import FILE_MODE, private_dir
from core.storage import Storage


class Staging:
    """A private directory of files opened for one process; blocking methods (run them in a thread)."""

    def __init__(self, storage: Storage, parent: Path) -> None:
        self.storage = storage
        self.dir = Path(tempfile.mkdtemp(prefix="staging-", dir=private_dir(parent)))
        self.fds: list[int] = []
        self._paths: dict[str, Path] = {}

    def read(self, key: str, *, sha256: str = "") -> str:
        """A read grant of the object under `key` (StorageNotFound when there is none), checked against `sha256`
        when given (SlugChanged): the copy checked is the one the process reads."""
        path = self.dir / f"in-{len(self.fds)}"
        self.storage.get_file(key, path)
        check_digest(path, sha256)
        return self._grant(os.open(path, os.O_RDONLY))

    def write(self, name: str) -> str:
        """A write grant of an empty file; `written(name)` is its path once the process ended."""
        path = self._paths[name] = self.dir / f"out-{name}"
        return self._grant(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))

    def written(self, name: str) -> Path | None:
        """The file written through `write(name)`'s grant, or None when the process wrote nothing."""
        path = self._paths[name]
        return path if path.stat().st_size > 0 else None

    def _grant(self, fd: int) -> str:
        self.fds.append(fd)
        return f"fd:{fd}"

    def close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close_fds()
        shutil.rmtree(self.dir, ignore_errors=True)
