"""What the controller needs to know about a slug without unpacking it: its process types, its digest."""

from __future__ import annotations

import tarfile

from builder import transfer
from core.layout import procfile_key
from core.storage import Storage, StorageNotFound

__all__ = ["procfile_key", "read_processes", "slug_digest"]


def slug_digest(storage: Storage, slug_key: str) -> str:
    """The hex SHA-256 of the slug as stored now, streamed."""
    with storage.open_read(slug_key) as stream:
        return transfer.sha256_of(stream)


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
