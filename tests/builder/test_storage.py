"""Both storage backends, the S3 one against a real SeaweedFS server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import StorageSettings
from core.storage import LocalStorage, StorageError, StorageNotFound, check_key, storage_for
from tests.fixtures.s3 import s3_gets

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_list_and_delete(any_storage: StorageSettings, tmp_path: Path) -> None:
    storage = storage_for(any_storage)
    storage.put_stream("apps/a/builds/1/source.tgz", io.BytesIO(b"source"))
    (tmp_path / "slug").write_bytes(b"slug")
    storage.put_file("apps/a/builds/1/slug.tgz", tmp_path / "slug")
    storage.put_stream("apps/a/cache/cache.tgz", io.BytesIO(b"cache"))
    storage.put_stream("apps/ab/builds/9/slug.tgz", io.BytesIO(b"other app"))

    with storage.open_read("apps/a/builds/1/source.tgz") as body:
        assert body.read() == b"source"
    storage.get_file("apps/a/builds/1/slug.tgz", tmp_path / "out" / "slug.tgz")
    assert (tmp_path / "out" / "slug.tgz").read_bytes() == b"slug"
    assert storage.exists("apps/a/cache/cache.tgz")
    assert not storage.exists("apps/a/cache/other.tgz")
    assert storage.list("apps/a/") == ["apps/a/builds/1/slug.tgz", "apps/a/builds/1/source.tgz", "apps/a/cache/cache.tgz"]
    assert storage.list("apps/a") == [*storage.list("apps/a/"), "apps/ab/builds/9/slug.tgz"]
    assert storage.list("apps/nothing/") == []

    storage.put_stream("apps/a/cache/cache.tgz", io.BytesIO(b"newer"))  # overwrite
    with storage.open_read("apps/a/cache/cache.tgz") as body:
        assert body.read() == b"newer"

    storage.delete_prefix("apps/a/")
    assert storage.list("apps/") == ["apps/ab/builds/9/slug.tgz"]


def test_missing_object_raises_storage_not_found(any_storage: StorageSettings, tmp_path: Path) -> None:
    storage = storage_for(any_storage)
    with pytest.raises(StorageNotFound) as error:
        storage.open_read("apps/a/builds/none/slug.tgz")
    assert isinstance(error.value, KeyError)
    assert str(error.value) == "No object is stored under 'apps/a/builds/none/slug.tgz'."
    with pytest.raises(StorageNotFound):
        storage.get_file("apps/a/builds/none/slug.tgz", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_open_tail_reads_only_the_last_bytes(any_storage: StorageSettings) -> None:
    """Finding 2: a big object's tail is read alone (a seek from the end, a ranged GET), not the whole."""
    storage = storage_for(any_storage)
    big = b"".join(b"%07d\n" % n for n in range(400_000))  # 3.2 MB
    for key, data in (("big", big), ("small", b"short\n"), ("empty", b"")):
        storage.put_stream(f"apps/a/builds/1/{key}.log", io.BytesIO(data))
    gets = s3_gets(storage) if any_storage.type == "s3" else None
    stream, cut = storage.open_tail("apps/a/builds/1/big.log", 1000)
    with stream:
        if gets is None:
            assert stream.tell() == len(big) - 1000  # the file was opened at its last 1000 bytes
        assert (stream.read(), cut) == (big[-1000:], True)
    for key, data in (("small", b"short\n"), ("empty", b"")):
        stream, cut = storage.open_tail(f"apps/a/builds/1/{key}.log", 1000)
        with stream:
            assert (stream.read(), cut) == (data, False)
    if gets is not None:
        assert gets[0] == ("bytes=-1000", 1000)
        assert all(sent == "bytes=-1000" for sent, _ in gets)
    with pytest.raises(StorageNotFound):
        storage.open_tail("apps/a/builds/1/none.log", 1000)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "apps/../../outside", "apps//x", "apps/./x", "a\\b"])
def test_keys_that_could_escape_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is not valid; use a relative path"):
        check_key(key)
    with pytest.raises(StorageError):
        LocalStorage(tmp_path / "root").put_stream(key, io.BytesIO(b"x"))
    assert list(tmp_path.rglob("*")) in ([], [tmp_path / "root"])


def test_local_write_is_atomic(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.put_stream("apps/a/slug.tgz", io.BytesIO(b"complete"))

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            raise OSError("connection lost")

    with pytest.raises(OSError):
        storage.put_stream("apps/a/slug.tgz", Broken())
    with storage.open_read("apps/a/slug.tgz") as body:
        assert body.read() == b"complete"  # the old object is intact, no partial file took its place
    assert storage.list("") == ["apps/a/slug.tgz"]
    assert sorted(p.name for p in (tmp_path / "root" / "apps" / "a").iterdir()) == ["slug.tgz"]


def test_s3_bucket_is_created_when_missing(s3_storage: StorageSettings) -> None:
    import boto3

    storage = storage_for(s3_storage)
    storage.put_stream("k", io.BytesIO(b"v"))
    client = boto3.client(
        "s3", endpoint_url=s3_storage.aws_endpoint, aws_access_key_id=s3_storage.aws_key,
        aws_secret_access_key=s3_storage.aws_secret, region_name=s3_storage.aws_region,
    )  # fmt: skip
    assert s3_storage.aws_bucket in {b["Name"] for b in client.list_buckets()["Buckets"]}


def test_s3_with_wrong_credentials_is_one_sentence(s3_storage: StorageSettings) -> None:
    from dataclasses import replace

    storage = storage_for(replace(s3_storage, aws_secret="wrong"))
    with pytest.raises(StorageError) as error:
        storage.exists("k")
    assert str(error.value).startswith(f"Cannot use S3 bucket {s3_storage.aws_bucket!r}")


MEASURE = r"""
import hashlib, io, json, os, resource, sys
from pathlib import Path
from core.config import storage_from_env
from core.storage import storage_for

BLOCK = os.urandom(1 << 20)


class Generated(io.RawIOBase):
    "SIZE bytes made on the fly; never all in memory."
    def __init__(self, size):
        self.left, self.sha = size, hashlib.sha256()
    def readable(self):
        return True
    def readinto(self, buffer):
        n = min(len(buffer), self.left, len(BLOCK))
        buffer[:n] = BLOCK[:n]
        self.sha.update(BLOCK[:n])
        self.left -= n
        return n


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def transfer(storage, key, size, scratch):
    source = Generated(size)
    storage.put_stream(key, source)
    sha = hashlib.sha256()
    with storage.open_read(key) as body:
        while chunk := body.read(1 << 20):
            sha.update(chunk)
    storage.get_file(key, scratch)
    assert sha.hexdigest() == source.sha.hexdigest() and os.path.getsize(scratch) == size
    os.unlink(scratch)


storage = storage_for(storage_from_env(os.environ, Path(".")))
scratch = sys.argv[2]
transfer(storage, "warmup/object", 16 << 20, scratch)  # first use of clients, thread pools, part buffers
before = peak_mb()
transfer(storage, "large/object", int(sys.argv[1]), scratch)
print(json.dumps({"before": before, "after": peak_mb()}))
"""


def test_large_object_streams_with_flat_memory(any_storage: StorageSettings, tmp_path: Path) -> None:
    size = 64 << 20
    env = {**os.environ, **any_storage.to_env(), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(size), str(tmp_path / "download")],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    peaks = json.loads(result.stdout)
    growth = peaks["after"] - peaks["before"]
    # Parts in flight cost a few 8 MB buffers; holding the object whole would cost 64 MB or more.
    assert growth < 32, f"peak memory grew by {growth:.0f} MB while moving a {size >> 20} MB object"


def test_grants_reach_one_object_each_and_carry_no_key(s3_storage: StorageSettings, tmp_path: Path) -> None:
    """Issue 12: builds get presigned URLs for their own objects, never the bucket's key."""
    from builder import transfer

    storage = storage_for(s3_storage)
    storage.put_stream("apps/a/builds/1/source.tgz", io.BytesIO(b"the source"))
    storage.put_stream("apps/b/builds/1/source.tgz", io.BytesIO(b"another app"))
    read = storage.grant("apps/a/builds/1/source.tgz", write=False, seconds=60)
    write = storage.grant("apps/a/builds/1/slug.tgz", write=True, seconds=60)
    assert s3_storage.aws_secret not in read + write
    got = tmp_path / "got"
    transfer.download(read, got)
    assert got.read_bytes() == b"the source"
    slug = tmp_path / "slug"
    slug.write_bytes(b"x" * (3 << 20))
    transfer.upload(slug, write)
    assert storage.open_read("apps/a/builds/1/slug.tgz").read() == b"x" * (3 << 20)
    other = read.replace("apps/a/", "apps/b/")  # the signature covers the key
    with pytest.raises(transfer.TransferError, match="HTTP 403"):
        transfer.download(other, got)
    with pytest.raises(transfer.TransferError, match="HTTP 403"):
        transfer.upload(slug, read)  # a read grant does not write
    with pytest.raises(transfer.NotFound):
        transfer.download(storage.grant("apps/a/cache/cache.tgz", write=False, seconds=60), got)
