"""Apps whose Python REPL pool is up, and apps that share one DATA_DIR (an API restart).

Every test here runs on both backend pairs: embedded (SQLite + local disk) and shared (Redis + S3).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeapi.execution.service import ExecutionService
from codeapi.repl.pool import ReplPool
from tests.conftest import API_KEY, BACKENDS, running_client, shared_backend, test_settings

WarmClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
READY_TIMEOUT_S = 120.0


def executions(client: httpx.AsyncClient) -> ExecutionService:
    service: ExecutionService = client._transport.app.state.components.executions  # type: ignore[attr-defined]
    return service


def pool_of(client: httpx.AsyncClient) -> ReplPool:
    warm = executions(client).warm
    assert warm is not None, "REPL_ENABLED is off"
    return warm.pool


async def wait_until_warm(client: httpx.AsyncClient) -> None:
    """The zygote is up and the pool holds what it should: Python runs in warm REPL sandboxes now."""
    pool = pool_of(client)
    async with asyncio.timeout(READY_TIMEOUT_S):
        while not pool.available or len(pool.warm) < min(pool.policy.warm_target, 1):
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def new_root(test_root: Path) -> Callable[[], Path]:
    def make() -> Path:
        root = test_root / f"repl-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        root.chmod(0o711)
        return root

    return make


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    return shared_backend(request.getfixturevalue("api_seaweed")) if request.param == "shared" else {}


@pytest.fixture(scope="session")
def warm_client(new_root: Callable[[], Path], backend: dict[str, Any]) -> WarmClientFactory:
    """``warm_client(root=None, **settings)``: an app on ``root`` (a fresh one by default), pool ready.

    Two apps on the same root one after the other are an API restart: same DATA_DIR (and the same
    Redis and S3 on the shared backend), new process state.
    """

    @asynccontextmanager
    async def factory(root: Path | None = None, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = test_settings(root or new_root(), **{**backend, **overrides})
        async with running_client(settings, {"x-api-key": API_KEY}) as client:
            await wait_until_warm(client)
            yield client

    return factory


@pytest.fixture(scope="module")
async def warm(warm_client: WarmClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with warm_client() as client:
        yield client
