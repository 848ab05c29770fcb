"""What the controller needs to know about a slug without unpacking it: its process types."""

from __future__ import annotations

import tarfile

from core.layout import procfile_key
from core.storage import Storage, StorageNotFound

__all__ = ["procfile_key", "read_processes"]


def read_processes(storage: Storage, slug_key: str) -> dict[str, str]:
    from builder import procfile

    try:
        with storage.open_read(procfile_key(slug_key)) as stream:
            text = stream.read(1 << 20).decode("utf-8")
    except StorageNotFound:
        text = _procfile_from_slug(storage, slug_key)
    return dict(procfile.parse(text)) if text else {}


def _procfile_from_slug(storage: Storage, slug_key: str) -> str:
    with storage.open_read(slug_key) as stream, tarfile.open(fileobj=stream, mode="r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.removeprefix("./") == "Procfile":
                handle = tar.extractfile(member)
                return handle.read().decode("utf-8") if handle else ""
    return ""
