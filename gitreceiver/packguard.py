"""Reading a pushed pack's object headers as it arrives, before dulwich inflates anything.

dulwich inflates each object of a received pack whole, several times over
(stream copy, index, the final check), so a 1 MB pack holding a 1 GiB file of
zeros costs gigabytes and minutes. Every object's header declares its size
(a delta declares the size of the object it rebuilds in its first bytes), so
`PackGuard` sees every byte before dulwich does, and refuses an object over
the per-file limit, or a pack whose objects add up to more than the total
limit, before dulwich receives that object's bytes.

Finding where an object ends means inflating it: the guard does so with
bounded output (CHUNK at a time, discarded), counting what comes out, so an
object that inflates past its declared size is refused as well.

Pack format: https://git-scm.com/docs/pack-format
"""

from __future__ import annotations

import zlib
from typing import Callable

from gitreceiver.objects import OFS_DELTA, REF_DELTA, CorruptObject, delta_varint

CHUNK = 64 * 1024
DELTA_HEADER = 20  # two size varints: enough for any size under 2**70


class PackRefused(OSError):
    """The pack holds an object too large (or inflating past its declared size). An OSError so that
    dulwich's receive-pack reports it as an unpack failure and moves no ref."""

    def __init__(self, sentence: str, reason: bytes):
        super().__init__(sentence)
        self.sentence = sentence
        self.reason = reason


class PackGuard:
    """Fed every byte of the pack in order (`feed`); raises PackRefused."""

    def __init__(self, *, max_file_bytes: int, max_total_bytes: int):
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.total = 0
        self.buffer = b""
        self.state = "pack header"
        self.objects_left = 0
        self.inflater: zlib._Decompress | None = None
        self.declared = 0
        self.inflated = 0
        self.delta_start: bytes | None = None  # first bytes of a delta, until its sizes are read
        self.refusal: PackRefused | None = None

    def wrap(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        def guarded(size: int) -> bytes:
            data = read(size)
            self.feed(data)
            return data

        return guarded

    def feed(self, data: bytes) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.buffer += data
        try:
            while self.buffer and self.state != "done":
                if not self._step():
                    return
        except PackRefused as refused:
            self.refusal = refused
            raise

    def _step(self) -> bool:
        """Advance over what is buffered; False when more input is needed."""
        if self.state == "pack header":
            if len(self.buffer) < 12:
                return False
            if self.buffer[:4] != b"PACK":
                self.state = "done"  # not a pack: dulwich says so
                return True
            self.objects_left = int.from_bytes(self.buffer[8:12], "big")
            self.buffer = self.buffer[12:]
            self.state = "object header" if self.objects_left else "done"
            return True
        if self.state == "object header":
            return self._object_header()
        return self._inflate()

    def _object_header(self) -> bool:
        data, pos = self.buffer, 0
        if not data:
            return False
        byte = data[0]
        kind, size, shift = (byte >> 4) & 7, byte & 15, 4
        pos = 1
        while byte & 0x80:
            if pos >= len(data):
                return False
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
        if kind == OFS_DELTA:
            while True:
                if pos >= len(data):
                    return False
                pos += 1
                if not data[pos - 1] & 0x80:
                    break
        elif kind == REF_DELTA:
            if len(data) < pos + 20:
                return False
            pos += 20
        self.buffer = data[pos:]
        self.declared, self.inflated = size, 0
        self.delta_start = b"" if kind in (OFS_DELTA, REF_DELTA) else None
        self._check_size(size)  # a delta's own data is held whole as well
        if self.delta_start is None:
            self._count(size)
        self.inflater = zlib.decompressobj()
        self.state = "object data"
        return True

    def _inflate(self) -> bool:
        assert self.inflater is not None
        data, self.buffer = self.buffer, b""
        while data:
            try:
                piece = self.inflater.decompress(data, CHUNK)
            except zlib.error:
                self.state = "done"  # corrupt: dulwich says so
                return True
            self.inflated += len(piece)
            if self.inflated > self.declared:
                raise PackRefused("the push holds an object that inflates past its declared size; "
                                  "push with a standard git client.", b"bad pack")
            if self.delta_start is not None and len(self.delta_start) < DELTA_HEADER:
                self.delta_start += piece[:DELTA_HEADER]
                self._delta_target()
            if self.inflater.eof:
                self.buffer = self.inflater.unused_data
                self.objects_left -= 1
                self.state = "object header" if self.objects_left else "done"
                if self.delta_start is not None and len(self.delta_start) < DELTA_HEADER:
                    self._delta_target(complete=True)
                return True
            data = self.inflater.unconsumed_tail
        return False

    def _delta_target(self, complete: bool = False) -> None:
        assert self.delta_start is not None
        try:
            _base, pos = delta_varint(self.delta_start, 0)
            target, _ = delta_varint(self.delta_start, pos)
        except CorruptObject:
            if complete:
                raise PackRefused("the push holds a damaged delta; push with a standard git client.",
                                  b"bad pack") from None
            return
        self.delta_start = b"x" * DELTA_HEADER  # read: look no further
        self._check_size(target)
        self._count(target)

    def _check_size(self, size: int) -> None:
        if size > self.max_file_bytes:
            raise PackRefused(f"This push holds a file of {_mib(size)}, over the {_mib(self.max_file_bytes)} "
                              "limit (TERESA_MAX_FILE_BYTES); keep large files out of the repository.",
                              b"file too large")

    def _count(self, size: int) -> None:
        self.total += size
        if self.total > self.max_total_bytes:
            raise PackRefused(f"This push holds more than {_mib(self.max_total_bytes)} once unpacked "
                              "(4 x TERESA_MAX_SOURCE_BYTES); push less at a time.", b"push too large")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB" if size >= 1 << 20 else f"{size} bytes"
