"""A REPL that exits, segfaults, is killed or overruns gives a clean error, and the session goes on."""

from __future__ import annotations

import httpx
import pytest

from codeapi.execution.warm import RESTARTED_NOTE
from tests.conftest import run
from tests.repl.conftest import WarmClientFactory

CRASHES = {
    "os_exit": "import os\nos._exit(3)",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "kill_self": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("crash", CRASHES, ids=list(CRASHES))
async def test_a_crash_is_a_clean_error_and_the_state_before_it_survives(warm: httpx.AsyncClient, crash: str) -> None:
    first = await run(warm, "py", "survivor = 'still here'")
    crashed = await run(
        warm, "py", f"lost = 1\nprint('before', flush=True)\n{CRASHES[crash]}", session_id=first["session_id"]
    )
    assert crashed["session_id"] == first["session_id"]
    assert crashed["stdout"] == "before\n"
    assert RESTARTED_NOTE in crashed["stderr"]
    after = await run(warm, "py", "print(survivor, 'lost' in globals())", session_id=first["session_id"])
    assert after["stdout"] == "still here False\n"


async def test_ending_the_jails_init_from_inside_only_ends_this_sessions_sandbox(warm: httpx.AsyncClient) -> None:
    """SIGKILL to pid 1 is dropped by the kernel; SIGTERM ends catatonit and with it the jail, during
    this call or just after it. Either way the session goes on from its saved state."""
    first = await run(warm, "py", "kept = 'yes'")
    code = "import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(1, signal.SIGTERM)\nimport time; time.sleep(0.2)"
    body = await run(warm, "py", code, session_id=first["session_id"])
    assert body["stdout"] == "" and RESTARTED_NOTE in body["stderr"]
    after = await run(warm, "py", "print('still', kept)", session_id=first["session_id"])
    assert after["stdout"] == "still yes\n"
    assert after["stderr"] == ""


async def test_a_segfault_reports_the_signal_and_a_python_traceback(warm: httpx.AsyncClient) -> None:
    body = await run(warm, "py", CRASHES["segfault"])
    assert "Process terminated by signal 11" in body["stderr"]
    assert "Fatal Python error: Segmentation fault" in body["stderr"]


async def test_limits_stop_a_warm_repl_and_the_session_goes_on(warm_client: WarmClientFactory) -> None:
    async with warm_client(MAX_EXECUTION_TIME=2, MAX_OUTPUT_KB=8, MAX_MEMORY_MB=128) as client:
        first = await run(client, "py", "kept = 5")
        sid = first["session_id"]
        looped = await run(client, "py", "print('start', flush=True)\nwhile True: pass", session_id=sid)
        assert looped["stdout"] == "start\n"
        assert "TimeoutError: Execution exceeded 2 seconds" in looped["stderr"]
        flooded = await run(client, "py", "while True: print('x' * 1000)", session_id=sid)
        assert len(flooded["stdout"]) == 8 * 1024
        assert "OutputLimitExceeded" in flooded["stderr"]
        hog = await run(client, "py", "block = bytearray(512 * 1024 * 1024)\nprint('allocated')", session_id=sid)
        assert "allocated" not in hog["stdout"]
        assert "memory limit of 128 MB" in hog["stderr"]
        after = await run(client, "py", "print(kept)", session_id=sid)
    assert after["stdout"] == "5\n"
