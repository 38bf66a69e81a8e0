"""A kept sandbox is frozen between calls: what a call left running gets no CPU until the next call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import run
from tests.repl.conftest import pool_of

BUSY_THREAD = """
import threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
print("spinning")
"""


def cpu_ticks(pid: int) -> int:
    """User plus system time of every thread of ``pid``, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def test_a_leftover_thread_burns_no_cpu_while_its_sandbox_is_idle(warm: httpx.AsyncClient) -> None:
    body = await run(warm, "py", BUSY_THREAD)
    assert body["stdout"] == "spinning\n"
    worker = pool_of(warm).hot[body["session_id"]].jail.worker_pid
    await asyncio.sleep(0.3)  # freezing completes asynchronously
    idle_from = cpu_ticks(worker)
    await asyncio.sleep(1.0)
    assert cpu_ticks(worker) == idle_from
    during = await run(warm, "py", "import time\ntime.sleep(0.5)\nprint('thawed')", session_id=body["session_id"])
    assert during["stdout"] == "thawed\n"
    assert cpu_ticks(worker) > idle_from  # the thread ran again during the call
