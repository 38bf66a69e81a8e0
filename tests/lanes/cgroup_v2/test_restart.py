"""After the runs and across a restart of the service, nothing of any job is left in the guest.

Runs last in the lane (file order): it stops the service the other modules use and starts it again.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import run
from tests.lanes.cgroup_v2.conftest import SETTLE_S, Service, assert_contained, settle_idle
from tests.lanes.cgroup_v2.guest import RESTART_TIMEOUT_S, SERVE_COMMAND, Guest

pytestmark = pytest.mark.cgroup_v2_lane


async def test_a_stopped_service_leaves_no_cgroup_process_directory_or_mount(
    guest: Guest, api: httpx.AsyncClient
) -> None:
    # A run still going when the stop comes must be ended and cleaned up too.
    running = asyncio.create_task(api.post("/exec", json={"lang": "bash", "code": "sleep 600"}))
    await asyncio.sleep(5)
    await asyncio.to_thread(guest.stop_service)
    await asyncio.gather(running, return_exceptions=True)
    deadline = time.monotonic() + SETTLE_S
    while any((left := (await asyncio.to_thread(guest.leftovers)).anything()).values()):
        assert time.monotonic() < deadline, left
        await asyncio.sleep(1)


async def test_a_restarted_service_runs_jobs_and_leaves_nothing_behind(
    guest: Guest, service: Service, api: httpx.AsyncClient
) -> None:
    await asyncio.to_thread(guest.start_service, SERVE_COMMAND)
    await asyncio.to_thread(guest.wait_ready, service.url, RESTART_TIMEOUT_S)
    await settle_idle(guest, service, api)
    body = await run(api, "bash", "echo after restart")
    assert body["stdout"] == "after restart\n", body
    state = await run(api, "py", "value = 6 * 7")
    again = await run(api, "py", "print(value)", session_id=state["session_id"])
    assert again["stdout"] == "42\n", again
    await assert_contained(guest, service)
