"""The cgroup-v2 lane: one guest booted for the lane (stopped when the lane ends, not with the session),
the service installed and started in it the README's way, and the LibreChat flow driven from the host
over a 127.0.0.1 port forward.

Deselect with ``-m "not cgroup_v2_lane"`` (marker declared in pyproject.toml). The first run builds the
guest's image (cached in /var/cache/codeapi-guest; see docs/cgroup-v2-lane.md for the times).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import run
from tests.lanes.cgroup_v2.guest import API_KEY, INSTALL_TIMEOUT_S, README_COMMAND, Guest, Leftovers

SETTLE_S = 10.0  # kills and cleanups take longer under software emulation
WARM_PATH_TIMEOUT_S = 600.0


@dataclass
class Service:
    """The service in the guest: its forwarded URL, and what it holds when idle (warm path up)."""

    url: str
    idle: Leftovers | None = None


@pytest.fixture(scope="package")
def guest() -> Iterator[Guest]:
    machine = Guest()
    machine.start()
    yield machine
    machine.stop()


@pytest.fixture(scope="package")
def service(guest: Guest) -> Service:
    """The README's first command, run natively in the guest."""
    url = guest.api_url()
    guest.start_service(README_COMMAND)
    guest.wait_ready(url, INSTALL_TIMEOUT_S)
    return Service(url)


@pytest.fixture(scope="package")
async def api(guest: Guest, service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, headers={"x-api-key": API_KEY}, timeout=600) as client:
        await settle_idle(guest, service, client)
        yield client


async def settle_idle(guest: Guest, service: Service, client: httpx.AsyncClient) -> None:
    """Waits for the warm Python path (until the zygote is up, Python runs one-shot as its jail's pid 1)
    and notes what the idle service holds."""
    deadline = time.monotonic() + WARM_PATH_TIMEOUT_S
    while (await run(client, "py", "import os\nprint(os.getpid())"))["stdout"] == "1\n":
        assert time.monotonic() < deadline, "the warm Python path never came up"
        await asyncio.sleep(2)
    service.idle = await asyncio.to_thread(guest.leftovers)


async def assert_contained(guest: Guest, service: Service) -> None:
    """Nothing beyond the idle service and its warm sandboxes; polled, as kills take a moment to settle."""
    assert service.idle is not None
    deadline = time.monotonic() + SETTLE_S
    while True:
        left = (await asyncio.to_thread(guest.leftovers)).since(service.idle)
        if not any(left.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert not any(left.values()), left


@pytest.fixture
async def contained(guest: Guest, service: Service, api: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The API, and after the test: it still answers and no job left a cgroup, process, directory or mount."""
    yield api
    assert (await api.get("/health")).status_code == 200
    await assert_contained(guest, service)
