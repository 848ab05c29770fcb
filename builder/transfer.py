"""Reading and writing a build's objects through the URLs it was granted, streamed in bounded memory.

A grant is one of:
    https://… or http://…   a presigned URL (S3): GET to read, PUT to write
    file:///path            a file the build's environment can open (local storage shared with a pod)
    fd:N                    a file descriptor the runtime opened for this process (the local runtime)
No grant names the bucket's credentials; each reaches one object.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
TIMEOUT = 60


class TransferError(Exception):
    """The object could not be read or written; the message is one sentence."""


class NotFound(TransferError):
    """Nothing is stored behind the URL."""


def _shown(url: str) -> str:
    """The URL without its query (a presigned URL's signature)."""
    return url.split("?", 1)[0]


def _fd(url: str) -> int:
    number = url.removeprefix("fd:")
    if not number.isdigit():
        raise TransferError(f"{url!r} is not a file descriptor grant; use fd:N.")
    return int(number)


def open_url(url: str) -> BinaryIO:
    """A stream of the object behind a read grant; close it."""
    if url.startswith("fd:"):
        return os.fdopen(_fd(url), "rb")
    if url.startswith("file:"):
        try:
            return open(urllib.request.url2pathname(urllib.parse.urlparse(url).path), "rb")
        except FileNotFoundError:
            raise NotFound(f"Nothing is stored at {_shown(url)}.") from None
    if url.startswith(("https:", "http:")):
        try:
            response: BinaryIO = urllib.request.urlopen(url, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"Nothing is stored at {_shown(url)}.") from None
            raise TransferError(f"Reading {_shown(url)} failed with HTTP {exc.code}.") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransferError(f"Reading {_shown(url)} failed: {getattr(exc, 'reason', exc)}.") from None
        return response
    raise TransferError(f"{_shown(url)!r} is not a URL the slugbuilder can read; use https:, file: or fd:.")


def sha256_of(stream: BinaryIO) -> str:
    """The hex SHA-256 of what is left in `stream`, read in bounded memory."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def download(url: str, path: Path) -> None:
    """Copy the object to `path`, streaming."""
    with open_url(url) as source, open(path, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK)


def upload(path: Path, url: str) -> None:
    """Write the file at `path` to a write grant, streaming (a presigned PUT takes up to 5 GB)."""
    if url.startswith("fd:"):
        with open(path, "rb") as source, os.fdopen(_fd(url), "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        return
    if url.startswith("file:"):
        target = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        with open(path, "rb") as source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        os.replace(tmp, target)
        return
    if not url.startswith(("https:", "http:")):
        raise TransferError(f"{_shown(url)!r} is not a URL the slugbuilder can write; use https:, file: or fd:.")
    size = path.stat().st_size
    with open(path, "rb") as source:
        request = urllib.request.Request(url, data=source, method="PUT",
                                         headers={"Content-Length": str(size),
                                                  "Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise TransferError(f"Writing {_shown(url)} failed with HTTP {exc.code}.") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransferError(f"Writing {_shown(url)} failed: {getattr(exc, 'reason', exc)}.") from None
