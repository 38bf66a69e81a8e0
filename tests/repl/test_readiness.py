"""Start-up: Python keeps its state from the very first call, /health/ready tells a load balancer when
the warm path is not up yet, SANDBOX_POOL_WARMUP_ON_STARTUP=false starts nothing until Python is asked,
and a host where no sandbox can start refuses to start with what to fix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeapi.errors import SandboxFailure
from tests.conftest import API_KEY, run, running_client
from tests.conftest import test_settings as settings_for
from tests.repl.conftest import pool_of, wait_until_warm


@pytest.fixture
def just_started(new_root: Callable[[], Path], backend: dict[str, Any]) -> Callable[..., Any]:
    """An app as it is the moment its start-up returns: nothing waited for."""

    @asynccontextmanager
    async def factory(headers: dict[str, str] | None = None, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = settings_for(new_root(), **{**backend, **overrides})
        async with running_client(settings, {"x-api-key": API_KEY} if headers is None else headers) as client:
            yield client

    return factory


async def test_python_keeps_its_variables_from_the_first_call_after_start_up(just_started: Any) -> None:
    async with just_started() as client:
        first = await run(client, "py", "x = 41")
        second = await run(client, "py", "print(x + 1)", session_id=first["session_id"])
    assert second["stdout"] == "42\n", second


async def test_readiness_says_starting_until_the_warm_path_is_up_while_liveness_says_healthy(
    just_started: Any,
) -> None:
    async with just_started(headers={}) as anonymous:
        starting = await anonymous.get("/health/ready")
        assert (starting.status_code, starting.json()["status"]) == (503, "starting")
        assert (await anonymous.get("/health")).status_code == 200
        await wait_until_warm(anonymous)
        ready = await anonymous.get("/health/ready")
        assert (ready.status_code, ready.json()["status"]) == (200, "ready")


async def test_without_warm_up_on_start_up_python_starts_on_its_first_call(just_started: Any) -> None:
    async with just_started(SANDBOX_POOL_WARMUP_ON_STARTUP=False) as client:
        assert (await client.get("/health/ready")).status_code == 200
        assert (await run(client, "bash", "echo other languages run"))["stdout"] == "other languages run\n"
        pool = pool_of(client)
        assert pool.launcher.zygote.process is None
        assert len(pool.warm) == 0
        first = await run(client, "py", "x = 1")
        second = await run(client, "py", "print(x)", session_id=first["session_id"])
        assert second["stdout"] == "1\n"
        assert pool.available


async def test_a_base_dir_no_sandbox_can_reach_is_refused_at_start_up(test_root: Path) -> None:
    closed = test_root / "closed"
    closed.mkdir(mode=0o700)
    settings = settings_for(closed, REPL_ENABLED=False)
    with pytest.raises(SandboxFailure, match=f"chmod o\\+x {closed}"):
        async with running_client(settings, {"x-api-key": API_KEY}):
            pass


async def test_a_zygote_that_cannot_start_makes_python_calls_a_prompt_503_and_shows_in_health(
    just_started: Any, new_root: Callable[[], Path]
) -> None:
    no_python = new_root()  # a runtime directory without the Python runtime: the zygote cannot start
    async with just_started(SANDBOX_RUNTIME_DIR=str(no_python)) as client:
        response = await client.post("/exec", json={"lang": "py", "code": "x = 1"})
        assert response.status_code == 503
        assert "retry" in response.json()["error"]
        assert (await client.get("/health/ready")).status_code == 503
        refill = (await client.get("/health/detailed")).json()["checks"]["background_loops"]["pool refill"]
        assert refill["failures"] >= 1
        assert "python3" in refill["last_error"]
        assert (await run(client, "bash", "echo still serving"))["stdout"] == "still serving\n"
