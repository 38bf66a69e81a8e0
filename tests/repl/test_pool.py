"""The warm pool: exhaustion, refills, and sandboxes that never pass from one session to another."""

from __future__ import annotations

import asyncio

from codeapi.after_response import collecting
from codeapi.repl import protocol
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


async def test_a_sandbox_destroyed_before_its_response_was_sent_is_not_renewed(
    warm_client: WarmClientFactory,
) -> None:
    """A kept sandbox's worker is replaced once the response is sent (after_response); when the
    sandbox was torn down before that (evicted by another session's call), nothing may start in it."""
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        pool = pool_of(client)
        with collecting():  # as inside a request
            sandbox = await pool.fresh()
            assert sandbox is not None
            await sandbox.call("kept = 1", (), 10, protocol.Save.NEVER, None)
            pool.release(sandbox, "destroyed-early", keep=True)
            del pool.hot["destroyed-early"]
            await sandbox.destroy()
        assert sandbox.renewal is None


async def test_health_reports_the_warm_path(warm_client: WarmClientFactory) -> None:
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        checks = (await client.get("/health/detailed")).json()["checks"]
        assert checks["python"] == {"status": "healthy", "mode": "warm REPL", "warm": 1, "kept": 0}
        loops = checks["background_loops"]
        assert loops["status"] == "healthy"
        assert {name for name in loops if name != "status"} == {
            "session sweeper",
            "runtime session sweeper",
            "pool refill",
            "pool sweep",
            "state archiver",
        }


async def test_while_the_zygote_is_down_health_says_starting_and_python_waits_for_it(
    warm_client: WarmClientFactory,
) -> None:
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        pool = pool_of(client)
        for sandbox in list(pool.warm):  # so that the next call needs the zygote
            pool.warm.remove(sandbox)
            pool.discard(sandbox)
        await pool.launcher.zygote.stop()
        readiness = await client.get("/health/ready")
        assert (readiness.status_code, readiness.json()["status"]) == (503, "starting")
        assert (await client.get("/health/detailed")).json()["checks"]["python"]["status"] == "starting"
        first = await run(client, "py", "x = 2")
        assert (await run(client, "py", "print(x)", session_id=first["session_id"]))["stdout"] == "2\n"
        assert (await client.get("/health/ready")).status_code == 200
