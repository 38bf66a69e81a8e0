"""Clean ends: however a run ends, nothing of it is left (the autouse check verifies each case)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.security.conftest import SETTLE_S, Hostile, execute, sandbox_processes


async def test_cancelled_request_kills_its_sandbox(hostile: Hostile) -> None:
    # Expected: when the request is abandoned (a disconnect cancels the handler) while its program
    # runs, the sandbox is stopped and its cgroup, directory and uid are released; the check below
    # proves it.
    request = asyncio.create_task(hostile.client.post("/exec", json={"lang": "bash", "code": "sleep 600"}))
    deadline = time.monotonic() + SETTLE_S
    while not any("'sleep 600" in entry for entry in sandbox_processes(hostile.uids)):
        assert not request.done(), request.result().text
        assert time.monotonic() < deadline, "the program never started"
        await asyncio.sleep(0.05)
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request


async def test_crashing_program_is_cleaned_up(hostile: Hostile) -> None:
    # Expected: a segfault is a result (signal 11), not a service error, and leaves nothing behind.
    body = await execute(hostile, "c", "int main(void) { return *(volatile int *)0; }")
    assert "signal 11" in body["stderr"]


async def test_program_that_kills_itself_is_cleaned_up(hostile: Hostile) -> None:
    # Expected: SIGKILL from inside ends the run as "signalled" with nothing left over. (The
    # program is pid 1 of its namespace, which ignores SIGKILL from inside, so a child does it.)
    body = await execute(hostile, "bash", "sleep 100 &\nsh -c 'kill -9 $$'\nexit $?")
    assert "signal 9" in body["stderr"]


async def test_failed_compilation_is_cleaned_up(hostile: Hostile) -> None:
    # Expected: a compile error is reported and the build job leaves no trace either.
    body = await execute(hostile, "c", "int main(void) { this is not C }")
    assert "error" in body["stderr"]


async def test_uids_return_to_the_pool(hostile: Hostile) -> None:
    # Expected: more runs than there are uids (64) all complete, so every run gave its uid back.
    seen: set[str] = set()
    for _ in range(len(hostile.uids) + 6):
        body = await asyncio.wait_for(execute(hostile, "bash", "id -u"), timeout=20)
        seen.add(body["stdout"])
    assert len(seen) <= len(hostile.uids)


async def test_concurrent_runs_get_distinct_uids(hostile: Hostile) -> None:
    # Expected: runs in flight at the same time never share a uid (signals, /proc, rlimits are per uid).
    bodies = await asyncio.gather(*(execute(hostile, "bash", "id -u; sleep 1") for _ in range(6)))
    uids = [body["stdout"] for body in bodies]
    assert len(set(uids)) == len(uids)
