"""A pushed repository's objects, read in bounded memory.

dulwich reads an object whole (`repo[sha]` joins every chunk), so a 1 GiB file
would be 1 GiB of memory, however well it compresses. Here an object's size
comes from its header before anything is inflated, and a blob stored whole
(loose, or packed without a delta) is inflated piece by piece as it is read.
A deltified object still needs its base: it is left to dulwich, which callers
allow only up to a size they choose (`StoredObject.delta`).

Pack format: https://git-scm.com/docs/pack-format ("Object types" and
"Deltified representation"); loose objects are zlib("<type> <size>\\0<data>").
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from dulwich.object_store import DiskObjectStore
from dulwich.objects import ObjectID
from dulwich.repo import Repo

CHUNK = 64 * 1024
TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
OFS_DELTA, REF_DELTA = 6, 7


class CorruptObject(Exception):
    """The object's stored form cannot be read."""


@dataclass(frozen=True)
class StoredObject:
    repo: Repo
    sha: bytes
    type: bytes       # b"blob", ... (for a deltified object: what its base chain resolves to is not known here)
    size: int         # of the contents, uncompressed (for a delta: of the object it rebuilds)
    path: str         # the loose object file or the pack holding it
    offset: int       # where its zlib stream starts in `path` (0 for a loose object: the header comes first)
    delta: bool = False

    def chunks(self) -> Iterator[bytes]:
        """The contents, at most CHUNK bytes at a time (a delta is resolved whole, by dulwich)."""
        if self.delta:
            yield from self.repo.object_store[ObjectID(self.sha)].as_raw_chunks()
            return
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            pieces = _inflate(handle)
            if self.offset == 0:  # a loose object: skip "<type> <size>\0"
                pieces = _after_header(pieces)
            produced = 0
            for piece in pieces:
                produced += len(piece)
                if produced > self.size:
                    raise CorruptObject(f"object {self.sha.decode()} holds more than its declared size")
                yield piece
            if produced != self.size:
                raise CorruptObject(f"object {self.sha.decode()} holds less than its declared size")


def stored_object(repo: Repo, sha: bytes) -> StoredObject:
    """Where and how big the object `sha` (hex) is, without inflating it; KeyError if absent."""
    store = repo.object_store
    assert isinstance(store, DiskObjectStore)
    for pack in store.packs:
        try:
            offset = pack.index.object_offset(ObjectID(sha))
        except KeyError:
            continue
        return _packed(repo, sha, os.fspath(pack.data.path), offset)
    path = store._get_shafile_path(ObjectID(sha))  # dulwich has no public name for it
    if not os.path.exists(path):
        raise KeyError(sha)
    with open(path, "rb") as handle:
        head = b""
        for piece in _inflate(handle, limit=64):
            head += piece
            if b"\0" in head or len(head) >= 64:
                break
    kind, _, rest = head.partition(b" ")
    size = rest.partition(b"\0")[0]
    if kind not in TYPE_NAMES.values() or not size.isdigit():
        raise CorruptObject(f"loose object {sha.decode()} has no valid header")
    return StoredObject(repo, sha, kind, int(size), path, 0)


def _packed(repo: Repo, sha: bytes, path: str, offset: int) -> StoredObject:
    with open(path, "rb") as handle:
        handle.seek(offset)
        header = handle.read(64)
        byte, pos = header[0], 1
        kind, size, shift = (byte >> 4) & 7, byte & 15, 4
        while byte & 0x80:
            byte = header[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
        if kind == OFS_DELTA:
            while header[pos] & 0x80:
                pos += 1
            pos += 1
        elif kind == REF_DELTA:
            pos += 20
        elif kind not in TYPE_NAMES:
            raise CorruptObject(f"packed object {sha.decode()} has an unknown type {kind}")
        if kind in TYPE_NAMES:
            return StoredObject(repo, sha, TYPE_NAMES[kind], size, path, offset + pos)
        handle.seek(offset + pos)
        start = b""
        for piece in _inflate(handle, limit=32):
            start += piece
            if len(start) >= 20:
                break
        _base_size, at = delta_varint(start, 0)
        target_size, _ = delta_varint(start, at)
        return StoredObject(repo, sha, b"", target_size, path, offset + pos, delta=True)


def delta_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A size at the start of delta data (7 bits a byte, little end first); returns (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise CorruptObject("a delta's header is cut short")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _inflate(handle: BinaryIO, limit: int | None = None) -> Iterator[bytes]:
    """Inflate the zlib stream at the handle's position, yielding at most CHUNK bytes at a time."""
    inflater = zlib.decompressobj()
    cap = limit or CHUNK
    while not inflater.eof:
        data = inflater.unconsumed_tail or handle.read(CHUNK)
        if not data:
            raise CorruptObject("an object's compressed data is cut short")
        try:
            piece = inflater.decompress(data, cap)
        except zlib.error as exc:
            raise CorruptObject(f"an object's compressed data is corrupt ({exc})") from None
        if piece:
            yield piece


def _after_header(pieces: Iterator[bytes]) -> Iterator[bytes]:
    head, in_header = b"", True
    for piece in pieces:
        if in_header:
            head += piece
            if b"\0" not in head:
                continue
            piece, in_header = head.partition(b"\0")[2], False
        if piece:
            yield piece
