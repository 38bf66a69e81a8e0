"""One contract for every blob backend: the local directory and S3 (a real SeaweedFS)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.backends import SeaweedServer
from codeapi.errors import FileNotFound, InvalidRequest
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.blobs.local import TEMP_PREFIX, LocalBlobStore
from codeapi.storage.blobs.s3 import S3BlobStore
from codeapi.units import MB
from tests.storage.conftest import s3_test_settings


class Failure(Exception):
    pass


async def pattern(total: int, chunk: int = 64 * 1024, seed: int = 0) -> AsyncIterator[bytes]:
    """Deterministic bytes produced chunk by chunk, so no test holds a whole blob."""
    sent = 0
    counter = seed
    while sent < total:
        size = min(chunk, total - sent)
        block = hashlib.sha256(counter.to_bytes(8, "big")).digest()
        yield (block * (size // len(block) + 1))[:size]
        counter += 1
        sent += size


async def digest_of(chunks: AsyncIterator[bytes]) -> tuple[str, int, int]:
    """SHA-256, size and largest chunk of a stream."""
    hasher = hashlib.sha256()
    size = largest = 0
    async for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
        largest = max(largest, len(chunk))
    return hasher.hexdigest(), size, largest


async def read_all(blobs: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key)])


async def put_bytes(blobs: BlobStore, key: str, data: bytes) -> int:
    async def one() -> AsyncIterator[bytes]:
        yield data

    return await blobs.put(key, one())


async def failing_after(total: int) -> AsyncIterator[bytes]:
    async for chunk in pattern(total):
        yield chunk
    raise Failure("client went away")


async def test_multi_mib_stream_round_trip(blobs: BlobStore) -> None:
    total = 12 * MB + 12345  # several multipart parts plus a ragged tail
    expected, _, _ = await digest_of(pattern(total))

    size = await blobs.put("sessions/s1/big", pattern(total))

    assert size == total
    digest, read_size, largest = await digest_of(blobs.read("sessions/s1/big"))
    assert (digest, read_size) == (expected, total)
    assert largest <= 4 * MB  # streamed in bounded chunks, not returned whole


async def test_small_and_empty_blobs(blobs: BlobStore) -> None:
    assert await put_bytes(blobs, "sessions/s1/small", b"hello") == 5
    assert await read_all(blobs, "sessions/s1/small") == b"hello"

    async def nothing() -> AsyncIterator[bytes]:
        for _ in ():
            yield b""

    assert await blobs.put("sessions/s1/empty", nothing()) == 0
    assert await read_all(blobs, "sessions/s1/empty") == b""


async def test_missing_key_raises_when_iteration_starts(blobs: BlobStore) -> None:
    stream = blobs.read("sessions/nope/missing")  # creating the stream does not fail
    with pytest.raises(FileNotFound):
        await anext(stream)


async def test_overwrite_replaces_the_value(blobs: BlobStore) -> None:
    await blobs.put("sessions/s1/f", pattern(6 * MB, seed=1))
    await put_bytes(blobs, "sessions/s1/f", b"second")
    assert await read_all(blobs, "sessions/s1/f") == b"second"


@pytest.mark.parametrize("total", [1000, 7 * MB], ids=["single-put", "multipart"])
async def test_failed_put_leaves_nothing_behind(blobs: BlobStore, total: int) -> None:
    await put_bytes(blobs, "sessions/s1/kept", b"previous")

    with pytest.raises(Failure):
        await blobs.put("sessions/s1/kept", failing_after(total))
    with pytest.raises(Failure):
        await blobs.put("sessions/s1/new", failing_after(total))

    assert await read_all(blobs, "sessions/s1/kept") == b"previous"
    with pytest.raises(FileNotFound):
        await read_all(blobs, "sessions/s1/new")
    assert [key async for key in blobs.list_keys("sessions/")] == ["sessions/s1/kept"]


async def test_delete_is_idempotent(blobs: BlobStore) -> None:
    await put_bytes(blobs, "sessions/s1/f", b"x")

    await blobs.delete("sessions/s1/f")
    await blobs.delete("sessions/s1/f")
    await blobs.delete("sessions/never/existed")

    with pytest.raises(FileNotFound):
        await read_all(blobs, "sessions/s1/f")


async def test_list_keys_by_string_prefix(blobs: BlobStore) -> None:
    keys = ["sessions/abc/f1", "sessions/abc/sub/f2", "sessions/abcd/f3", "other/f4"]
    for key in keys:
        await put_bytes(blobs, key, key.encode())

    async def listed(prefix: str) -> set[str]:
        return {key async for key in blobs.list_keys(prefix)}

    assert await listed("sessions/abc/") == {"sessions/abc/f1", "sessions/abc/sub/f2"}
    assert await listed("sessions/abc") == {"sessions/abc/f1", "sessions/abc/sub/f2", "sessions/abcd/f3"}
    assert await listed("") == set(keys)
    assert await listed("sessions/zzz/") == set()
    assert await listed("nothing-here/") == set()


async def test_delete_prefix(blobs: BlobStore) -> None:
    keys = ["sessions/abc/f1", "sessions/abc/sub/f2", "sessions/abcd/f3", "other/f4"]
    for key in keys:
        await put_bytes(blobs, key, b"x")

    assert await blobs.delete_prefix("sessions/abc/") == 2
    assert {key async for key in blobs.list_keys("")} == {"sessions/abcd/f3", "other/f4"}
    assert await blobs.delete_prefix("sessions/abc/") == 0
    assert await blobs.delete_prefix("sessions/ab") == 1
    assert {key async for key in blobs.list_keys("")} == {"other/f4"}


async def test_delete_prefix_in_batches(blobs: BlobStore) -> None:
    for index in range(1005):  # over S3's 1000-key DeleteObjects limit
        await put_bytes(blobs, f"sessions/many/{index:04d}", b"")
    assert await blobs.delete_prefix("sessions/many/") == 1005
    assert [key async for key in blobs.list_keys("sessions/many/")] == []


@pytest.mark.parametrize(
    "key", ["../escape", "sessions/../../etc/passwd", "/etc/passwd", "", "a//b", "a/./b", "dir/", "a\0b"]
)
async def test_keys_that_could_escape_are_refused(blobs: BlobStore, key: str) -> None:
    with pytest.raises(InvalidRequest):
        await put_bytes(blobs, key, b"x")
    with pytest.raises(InvalidRequest):
        await read_all(blobs, key)
    with pytest.raises(InvalidRequest):
        await blobs.delete(key)


async def test_ping_and_close(blobs: BlobStore) -> None:
    await blobs.ping()
    assert blobs.name in ("local", "s3")


async def test_local_keeps_files_inside_root_and_hides_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalBlobStore(root)
    await put_bytes(store, "sessions/s1/f", b"data")
    (root / "sessions" / "s1" / f"{TEMP_PREFIX}f.partial").write_bytes(b"half")

    assert (root / "sessions" / "s1" / "f").read_bytes() == b"data"
    assert [key async for key in store.list_keys("")] == ["sessions/s1/f"]
    with pytest.raises(InvalidRequest):
        await put_bytes(store, f"sessions/s1/{TEMP_PREFIX}x", b"x")
    assert await store.delete_prefix("sessions/s1/") == 1
    assert not (root / "sessions" / "s1" / "f").exists()
    assert not list(tmp_path.glob("*.partial"))  # nothing was written outside the root


async def test_local_delete_prefix_prunes_empty_directories(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "root")
    await put_bytes(store, "sessions/s1/sub/f", b"x")
    await put_bytes(store, "sessions/s2/f", b"x")

    await store.delete_prefix("sessions/s1/")

    assert not (tmp_path / "root" / "sessions" / "s1").exists()
    assert (tmp_path / "root" / "sessions" / "s2" / "f").exists()


async def test_s3_creates_a_missing_bucket(seaweed: SeaweedServer) -> None:
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    store = S3BlobStore(s3_test_settings(seaweed.endpoint, bucket=bucket))

    assert await store.ensure_bucket() is True
    assert await store.ensure_bucket() is False  # second call (another replica) is a no-op

    await store.ping()
    await put_bytes(store, "sessions/s1/f", b"in the new bucket")
    assert await read_all(store, "sessions/s1/f") == b"in the new bucket"
    await store.delete_prefix("")
