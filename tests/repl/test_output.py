"""A warm sandbox's output pipes: capped during a call, not read (and so not paid for) between calls."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import run
from tests.repl.conftest import pool_of

PIPE_CAPACITY_KIB = 64  # Linux's default pipe buffer

SPAM_AFTER_THE_CALL = """
import os, threading
def spam():
    for count in range(1, 10_000_000):
        os.write(1, b"x" * 1024)
        with open("/mnt/data/.spam-count", "w") as counter:
            counter.write(str(count))
threading.Timer(0.3, spam).start()
print("started")
"""


async def test_a_thread_printing_between_calls_gets_at_most_a_pipes_worth_out(warm: httpx.AsyncClient) -> None:
    """Nobody drains the pipes between calls (and the call's worker is stopped, then replaced): the
    thread gets at most a pipe's worth out instead of making the API read (and drop) its output."""
    body = await run(warm, "py", SPAM_AFTER_THE_CALL)
    assert body["stdout"] == "started\n"
    await asyncio.sleep(1.5)
    counter = pool_of(warm).hot[body["session_id"]].dirs.data / ".spam-count"
    assert not counter.exists() or int(counter.read_text()) <= PIPE_CAPACITY_KIB + 1


async def test_output_over_the_cap_ends_the_call_and_the_session_goes_on(warm: httpx.AsyncClient) -> None:
    first = await run(warm, "py", "kept = 'yes'")
    flood = await run(
        warm, "py", "import sys\nwhile True:\n    sys.stdout.write('y' * 4096)", session_id=first["session_id"]
    )
    assert set(flood["stdout"]) == {"y"} and "OutputLimitExceeded" in flood["stderr"]
    after = await run(warm, "py", "print(kept)", session_id=first["session_id"])
    assert after["stdout"] == "yes\n"
