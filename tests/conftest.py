"""Shared fixtures: a real app (real nsjail, real storage) behind an in-process HTTP client.

``make_client(**overrides)`` builds an app from explicit settings (never os.environ) and runs its
lifespan; ``client`` is one shared app on the default limits for tests that need nothing special.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bench.backends import TEST_REDIS_PORT, SeaweedServer, ensure_redis, start_seaweedfs
from codeapi.app import create_app
from codeapi.config import Settings

API_KEY = "test-key-0123456789abcdef"
TEST_ROOT = Path("/tmp/codeapi-tests")

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]

# The API suite runs on both backend pairs: embedded (SQLite + local disk) and shared (Redis + S3).
BACKENDS = ("embedded", "shared")
API_REDIS_DB = 9
FLUSHED_REDIS_DBS: set[int] = set()


def test_settings(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "API_KEY": API_KEY,
        "DATA_DIR": str(root / "data"),
        "SANDBOX_BASE_DIR": str(root / "sandboxes"),
        "MAX_EXECUTION_TIME": 60,  # a bound a busy 2-core machine meets with a wide margin (javac, D: ~5 s there)
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
    }
    if runtime_dir := os.environ.get("CODEAPI_TEST_RUNTIME_DIR"):  # a checkout testing its own runtimes
        values["SANDBOX_RUNTIME_DIR"] = runtime_dir
    values.update({key.upper(): value for key, value in overrides.items()})
    return Settings.load(values, env_file=None, environ=False)


@pytest.fixture(scope="session")
def test_root() -> Path:
    root = TEST_ROOT / f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    root.mkdir(parents=True)
    # Sandboxes reach their bind sources through this path, so it must be traversable.
    for path in (TEST_ROOT, root):
        path.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def running_client(settings: Settings, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://codeapi.test", headers=headers, timeout=120
        ) as client:
            yield client


@pytest.fixture(scope="session")
def make_client(test_root: Path) -> ClientFactory:
    def factory(
        headers: dict[str, str] | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        root = test_root / uuid.uuid4().hex[:8]
        root.mkdir()
        root.chmod(0o711)
        return running_client(test_settings(root, **overrides), {"x-api-key": API_KEY} if headers is None else headers)

    return factory


@pytest.fixture(scope="session")
def api_seaweed(test_root: Path) -> Iterator[SeaweedServer]:
    server = start_seaweedfs(test_root / "seaweedfs")
    yield server
    server.stop()


def shared_backend(seaweed: SeaweedServer, redis_db: int = API_REDIS_DB) -> dict[str, Any]:
    """The settings that switch an app to Redis + S3 (what an operator sets)."""
    ensure_redis()
    if redis_db not in FLUSHED_REDIS_DBS:
        # Metadata left by an earlier run points at a SeaweedFS that no longer exists.
        redis.Redis(host="127.0.0.1", port=TEST_REDIS_PORT, db=redis_db).flushdb()
        FLUSHED_REDIS_DBS.add(redis_db)
    return {
        "REDIS_URL": f"redis://127.0.0.1:{TEST_REDIS_PORT}/{redis_db}",
        "S3_ENDPOINT": seaweed.endpoint,
        "S3_ACCESS_KEY": "codeapi-test",
        "S3_SECRET_KEY": "codeapi-test-secret",
        "S3_BUCKET": "codeapi-api-tests",
        "S3_REGION": "us-east-1",
    }


@pytest.fixture(scope="session", params=BACKENDS)
async def client(request: pytest.FixtureRequest, make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    overrides = shared_backend(request.getfixturevalue("api_seaweed")) if request.param == "shared" else {}
    async with make_client(**overrides) as shared:
        yield shared


async def upload(
    client: httpx.AsyncClient, name: str, content: bytes, path: str = "/upload", **fields: str
) -> dict[str, Any]:
    response = await client.post(path, files={"file": (name, content)}, data=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def run(client: httpx.AsyncClient, lang: str, code: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/exec", json={"lang": lang, "code": code, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pytest_unconfigure(config: pytest.Config) -> None:
    """Name any thread that would keep the test process from exiting (CI must never hang)."""
    lingering = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and thread.is_alive() and not thread.daemon
    ]
    if not lingering:
        return
    frames = sys._current_frames()
    for thread in lingering:
        stack = "".join(traceback.format_stack(frames[thread.ident])) if thread.ident in frames else "?"
        sys.stderr.write(f"\nthread still running at exit: {thread.name}\n{stack}")
