"""Object storage for sources, slugs and build caches: a local directory or an S3 bucket.

Keys look like `apps/<app>/builds/<build-id>/slug.tgz`. Every method streams:
memory stays flat whatever the object size. The methods block; callers on the
event loop use `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Protocol

from core import metrics
from core.config import StorageSettings

CHUNK = 1 << 20
PART_SIZE = 8 << 20
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit


class StorageError(Exception):
    """Storage cannot do what was asked; the message is one sentence."""


class StorageNotFound(StorageError, KeyError):
    """No object under this key."""

    def __str__(self) -> str:
        return f"No object is stored under {self.args[0]!r}."


class Storage(Protocol):
    def put_stream(self, key: str, fileobj: BinaryIO) -> None: ...

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None: ...

    def open_read(self, key: str) -> BinaryIO:
        """A stream of the object; close it. Raises StorageNotFound."""

    def open_tail(self, key: str, size: int) -> tuple[BinaryIO, bool]:
        """A stream of the object's last `size` (at least 1) bytes only (a seek, a ranged GET), and whether
        the object has more before them; close it. Raises StorageNotFound."""

    def get_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Download to `path` (replaced atomically). Raises StorageNotFound."""

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Keys that start with `prefix`, sorted."""

    def grant(self, key: str, *, write: bool, seconds: int) -> str:
        """A URL reaching this one object only (GET, or PUT when `write`) for `seconds`, with no credential in it."""


def storage_for(settings: StorageSettings) -> Storage:
    """The storage these settings name, its failures counted in teresa_storage_errors_total."""
    if settings.type == "local":
        return Counted(LocalStorage(Path(settings.root)))
    if settings.type == "s3":
        return Counted(S3Storage(settings))
    raise StorageError(f"Storage type {settings.type!r} is not supported; use local or s3.")


def check_key(key: str) -> str:
    """Refuse keys that are empty, absolute, or climb out with `..`."""
    parts = key.split("/")
    if not key or "\\" in key or "\0" in key or any(part in ("", ".", "..") for part in parts):
        raise StorageError(f"Storage key {key!r} is not valid; use a relative path like apps/NAME/builds/ID/slug.tgz.")
    return key


def _write_atomically(path: Path, fileobj: BinaryIO) -> None:
    """Copy a stream to `path` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(fileobj, out, CHUNK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy_atomically(source: Path, path: Path) -> None:
    """Copy a file to `path` through a temporary file in the same directory, in the kernel
    (shutil.copyfile: sendfile or copy_file_range): a pushed pack is copied without passing
    through Python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStorage:
    """Objects are files under `root`; writes land atomically (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_stream(self, key: str, fileobj: BinaryIO) -> None:
        _write_atomically(self._path(key), fileobj)

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        _copy_atomically(Path(path), self._path(key))

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageNotFound(key) from None

    def open_tail(self, key: str, size: int) -> tuple[BinaryIO, bool]:
        stream = self.open_read(key)
        start = max(0, os.fstat(stream.fileno()).st_size - size)
        stream.seek(start)
        return stream, start > 0

    def get_file(self, key: str, path: str | os.PathLike[str]) -> None:
        try:
            _copy_atomically(self._path(key), Path(path))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        start = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if ".." in prefix.split("/") or not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix) and not (name.startswith(".") and name.endswith(".part")):
                    keys.append(key)
        return sorted(keys)

    def grant(self, key: str, *, write: bool, seconds: int) -> str:
        """A file: URL. Local storage has no credential to withhold: whoever can open the path reaches
        the object (a pod sharing the directory in development), whatever the URL says."""
        path = self._path(key)
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path.as_uri()

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            path = self._path(key)
            path.unlink(missing_ok=True)
            for parent in path.parents:
                if parent == self.root or not parent.is_relative_to(self.root):
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break


class FullReads:
    """A stream whose read(n) returns n bytes unless the stream ends.

    s3transfer takes a short first read of a non-seekable stream for "smaller than one part"
    and then reads the rest whole into memory; pipes and sockets read short all the time.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.stream.read(CHUNK), b""))
        data = bytearray()
        while len(data) < size and (chunk := self.stream.read(min(size - len(data), CHUNK))):
            data += chunk
        return bytes(data)


class S3Storage:
    """Objects in an S3 bucket (AWS, SeaweedFS, MinIO); the bucket is created when missing."""

    def __init__(self, settings: StorageSettings) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if not settings.aws_bucket:
            raise StorageError("S3 storage needs a bucket; set TERESAFILESTORAGE_AWS_BUCKET.")
        self.bucket = settings.aws_bucket
        self.region = settings.aws_region or "us-east-1"
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            # Newer botocore adds CRC checksums to every request, which SeaweedFS and MinIO reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        self.client = boto3.session.Session().client(
            "s3",
            aws_access_key_id=settings.aws_key or None,
            aws_secret_access_key=settings.aws_secret or None,
            region_name=self.region,
            endpoint_url=settings.aws_endpoint or None,
            config=config,
        )
        self.transfer = TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_concurrency=2,
            preferred_transfer_client="classic",
        )
        # Parts of a non-seekable stream are buffered; bound them so memory stays flat.
        self.transfer.max_in_memory_upload_chunks = 2
        self._bucket_ready = False
        self._lock = threading.Lock()

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._lock:
            if self._bucket_ready:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except _client_error() as exc:
                if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise StorageError(f"Cannot use S3 bucket {self.bucket!r}: {_message(exc)}.") from None
                self._create_bucket()
            self._bucket_ready = True

    def _create_bucket(self) -> None:
        kwargs: dict[str, object] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except _client_error() as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StorageError(f"Cannot create S3 bucket {self.bucket!r}: {_message(exc)}.") from None

    def put_stream(self, key: str, fileobj: BinaryIO) -> None:
        self._ensure_bucket()
        seekable = getattr(fileobj, "seekable", None)
        source = fileobj if seekable and seekable() else FullReads(fileobj)
        self.client.upload_fileobj(source, self.bucket, check_key(key), Config=self.transfer)

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        self._ensure_bucket()
        self.client.upload_file(os.fspath(path), self.bucket, check_key(key), Config=self.transfer)

    def _get(self, key: str, **options: str) -> dict[str, Any]:
        self._ensure_bucket()
        try:
            response: dict[str, Any] = self.client.get_object(Bucket=self.bucket, Key=check_key(key), **options)
        except _client_error() as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise StorageNotFound(key) from None
            raise
        return response

    def open_read(self, key: str) -> BinaryIO:
        body: BinaryIO = self._get(key)["Body"]  # a StreamingBody
        return body

    def open_tail(self, key: str, size: int) -> tuple[BinaryIO, bool]:
        try:
            response = self._get(key, Range=f"bytes=-{size}")  # a suffix range: the last `size` bytes
        except _client_error() as exc:
            if _code(exc) not in ("InvalidRange", "416"):
                raise
            return io.BytesIO(), False  # an empty object has no last bytes
        first = response.get("ContentRange", "").removeprefix("bytes ").partition("-")[0]  # FIRST-LAST/TOTAL
        return response["Body"], first.isdigit() and int(first) > 0

    def get_file(self, key: str, path: str | os.PathLike[str]) -> None:
        body = self.open_read(key)
        try:
            _write_atomically(Path(path), body)
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        self._ensure_bucket()
        try:
            self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except _client_error() as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        self._ensure_bucket()
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def grant(self, key: str, *, write: bool, seconds: int) -> str:
        """A presigned URL (SigV4: at most 7 days): the bucket's key signs it and stays here."""
        self._ensure_bucket()
        seconds = max(1, min(seconds, MAX_PRESIGN_SECONDS))
        url: str = self.client.generate_presigned_url("put_object" if write else "get_object",
                                                      Params={"Bucket": self.bucket, "Key": check_key(key)},
                                                      ExpiresIn=seconds)
        return url

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    error: type[Exception] = ClientError  # botocore has no type hints
    return error


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _message(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Message") or error.get("Code") or exc).rstrip(".")


class Counted:
    """A Storage that counts its failed operations (StorageNotFound is an answer, not a failure)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    @contextlib.contextmanager
    def _counting(self, operation: str) -> Iterator[None]:
        try:
            yield
        except StorageNotFound:
            raise
        except Exception:
            metrics.storage_errors_total.labels(operation=operation).inc()
            raise

    def put_stream(self, key: str, fileobj: BinaryIO) -> None:
        with self._counting("put"):
            self.inner.put_stream(key, fileobj)

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        with self._counting("put"):
            self.inner.put_file(key, path)

    def open_read(self, key: str) -> BinaryIO:
        with self._counting("get"):
            return self.inner.open_read(key)

    def open_tail(self, key: str, size: int) -> tuple[BinaryIO, bool]:
        with self._counting("get"):
            return self.inner.open_tail(key, size)

    def get_file(self, key: str, path: str | os.PathLike[str]) -> None:
        with self._counting("get"):
            self.inner.get_file(key, path)

    def exists(self, key: str) -> bool:
        with self._counting("exists"):
            return self.inner.exists(key)

    def delete_prefix(self, prefix: str) -> None:
        with self._counting("delete"):
            self.inner.delete_prefix(prefix)

    def list(self, prefix: str) -> list[str]:
        with self._counting("list"):
            return self.inner.list(prefix)

    def grant(self, key: str, *, write: bool, seconds: int) -> str:
        with self._counting("grant"):
            return self.inner.grant(key, write=write, seconds=seconds)
