"""Redis or SeaweedFS going away mid-run: clear 503s, then recovery with nothing acknowledged lost.

The test starts its own Redis (with an append-only file, as production Redis would persist) and
its own SeaweedFS, so stopping them disturbs nothing else.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.backends import SeaweedServer, _answers_redis, free_port, start_seaweedfs
from tests.conftest import ClientFactory, run, upload


class PersistentRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not _answers_redis(self.port):
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_server(test_root: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(test_root / "fault-redis")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def seaweed_server(test_root: Path) -> Iterator[SeaweedServer]:
    server = start_seaweedfs(test_root / "fault-seaweedfs")
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def faulty(
    make_client: ClientFactory, redis_server: PersistentRedis, seaweed_server: SeaweedServer
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(
        REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        REDIS_SOCKET_TIMEOUT=1,
        REDIS_SOCKET_CONNECT_TIMEOUT=1,
        S3_ENDPOINT=seaweed_server.endpoint,
        S3_ACCESS_KEY="k",
        S3_SECRET_KEY="s",
        S3_BUCKET="faults",
        S3_REGION="us-east-1",
    ) as client:
        yield client


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error_type"] == "service_unavailable"


async def acknowledged_file(client: httpx.AsyncClient) -> dict[str, Any]:
    body = await upload(client, "kept.txt", b"acknowledged")
    return {"session_id": body["storage_session_id"], "file_id": body["files"][0]["fileId"]}


async def download(client: httpx.AsyncClient, ref: dict[str, Any]) -> httpx.Response:
    return await client.get(f"/download/{ref['session_id']}/{ref['file_id']}")


async def test_redis_outage_gives_503_then_recovers_with_files_intact(
    faulty: httpx.AsyncClient, redis_server: PersistentRedis
) -> None:
    kept = await acknowledged_file(faulty)
    redis_server.stop()
    try:
        assert_unavailable(await faulty.post("/exec", json={"lang": "bash", "code": "echo hi"}))
        assert_unavailable(await faulty.post("/upload", files={"file": ("x.txt", b"x")}))
        assert_unavailable(await download(faulty, kept))
        assert (await faulty.get("/health")).status_code == 200
        detailed = await faulty.get("/health/detailed")
        assert detailed.status_code == 503
        assert detailed.json()["checks"]["metadata"]["status"] == "unhealthy"
    finally:
        redis_server.start()
    assert (await download(faulty, kept)).content == b"acknowledged"
    assert (await run(faulty, "bash", "echo back"))["stdout"] == "back\n"
    assert (await faulty.get("/health/detailed")).status_code == 200


async def test_s3_outage_gives_503_then_recovers_with_files_intact(
    faulty: httpx.AsyncClient, seaweed_server: SeaweedServer
) -> None:
    kept = await acknowledged_file(faulty)
    seaweed_server.stop()
    try:
        assert_unavailable(await faulty.post("/upload", files={"file": ("x.txt", b"x")}))
        assert_unavailable(await download(faulty, kept))
        assert_unavailable(await faulty.post("/exec", json={"lang": "bash", "code": "echo out > made.txt"}))
        detailed = await faulty.get("/health/detailed")
        assert detailed.status_code == 503
        assert detailed.json()["checks"]["files"]["status"] == "unhealthy"
    finally:
        seaweed_server.start()
    assert (await download(faulty, kept)).content == b"acknowledged"
    made = await run(faulty, "bash", "echo out > made.txt")
    assert [item["name"] for item in made["files"]] == ["made.txt"]
