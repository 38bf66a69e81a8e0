"""The warm pool: exhaustion, refills, and sandboxes that never pass from one session to another."""

from __future__ import annotations

import asyncio

from tests.conftest import run
from tests.repl.conftest import WarmClientFactory, pool_of


async def test_more_concurrent_new_sessions_than_the_pool_all_succeed(warm_client: WarmClientFactory) -> None:
    async with warm_client(SANDBOX_POOL_PY=1, SANDBOX_POOL_PARALLEL_BATCH=1) as client:
        bodies = await asyncio.gather(*(run(client, "py", f"import numpy\nprint({index})") for index in range(6)))
        assert [body["stdout"] for body in bodies] == [f"{index}\n" for index in range(6)]
        assert len({body["session_id"] for body in bodies}) == 6
        pool = pool_of(client)
        async with asyncio.timeout(30):
            while len(pool.warm) < 1:  # refilled in the background
                await asyncio.sleep(0.05)


async def test_a_disabled_pool_still_runs_python_warm_on_demand(warm_client: WarmClientFactory) -> None:
    async with warm_client(SANDBOX_POOL_ENABLED=False) as client:
        first = await run(client, "py", "value = 3")
        second = await run(client, "py", "print(value)", session_id=first["session_id"])
        assert second["stdout"] == "3\n"
        assert len(pool_of(client).warm) == 0


async def test_without_the_repl_python_runs_one_shot(warm_client: WarmClientFactory, make_client: object) -> None:
    async with make_client(REPL_ENABLED=False) as client:  # type: ignore[operator]
        body = await run(client, "py", "x = 1\nprint('one-shot')")
        again = await run(client, "py", "print('x' in globals())", session_id=body["session_id"])
    assert body["stdout"] == "one-shot\n"
    assert again["stdout"] == "False\n"


async def test_a_sandbox_is_never_handed_to_a_second_session(warm_client: WarmClientFactory) -> None:
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        pool = pool_of(client)
        first = await run(client, "py", "import os\nprint(os.getpid())")
        used = pool.hot[first["session_id"]]
        for index in range(3):
            await run(client, "py", f"y = {index}")
        assert all(sandbox is not used for sandbox in pool.warm)
        assert [sid for sid, sandbox in pool.hot.items() if sandbox is used] == [first["session_id"]]


async def test_health_reports_the_warm_path(warm_client: WarmClientFactory) -> None:
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        python = (await client.get("/health/detailed")).json()["checks"]["python"]
        assert python == {"status": "healthy", "mode": "warm REPL", "warm": 1, "kept": 0}


async def test_health_is_degraded_not_failed_while_the_zygote_is_down(warm_client: WarmClientFactory) -> None:
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        await pool_of(client).launcher.zygote.stop()
        response = await client.get("/health/detailed")
        assert response.status_code == 200
        assert response.json()["status"] == "degraded"
        assert response.json()["checks"]["python"]["status"] == "degraded"
        assert (await run(client, "py", "print(2)"))["stdout"] == "2\n"
