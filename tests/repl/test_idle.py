"""A kept sandbox runs nothing between calls: what a call left running is killed when the call ends,
and the next call runs in a new process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from codeapi.repl.jail import stopped
from tests.conftest import run
from tests.repl.conftest import pool_of

BUSY_THREAD = """
import os, threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
print(os.getpid())
"""


def cpu_ticks(pid: int) -> int:
    """User plus system time of every thread of ``pid``, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


async def test_a_leftover_thread_dies_with_its_call_and_nothing_runs_while_the_sandbox_is_idle(
    warm: httpx.AsyncClient,
) -> None:
    body = await run(warm, "py", BUSY_THREAD)
    sandbox = pool_of(warm).hot[body["session_id"]]
    assert await sandbox.ready()
    idle = sandbox.jail.others(keep_worker=False)
    assert idle == [sandbox.jail.worker_pid]  # the new worker only: the spinning one is gone
    assert all(stopped(pid) for pid in idle)
    idle_from = sum(map(cpu_ticks, idle))
    await asyncio.sleep(1.0)
    assert sum(map(cpu_ticks, idle)) == idle_from
    during = await run(warm, "py", "import os\nprint(os.getpid())", session_id=body["session_id"])
    assert during["stdout"] != body["stdout"]  # a new process
