"""The cgroup-v2 lane: one guest booted per test session, the service installed and started in it the
README's way, and the LibreChat flow driven from the host over a 127.0.0.1 port forward.

Deselect with ``-m "not cgroup_v2"``. The first run builds the guest's image (cached in
/var/cache/codeapi-guest; see docs/cgroup-v2-lane.md for the times).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.lanes.cgroup_v2.guest import API_KEY, INSTALL_TIMEOUT_S, README_COMMAND, Guest

SETTLE_S = 10.0  # kills and cleanups take longer under software emulation


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cgroup_v2: runs in the cgroup-v2 guest (QEMU); deselect with -m 'not cgroup_v2'"
    )


@pytest.fixture(scope="session")
def guest() -> Iterator[Guest]:
    machine = Guest()
    machine.start()
    yield machine
    machine.stop()


@pytest.fixture(scope="session")
def api_url(guest: Guest) -> str:
    """The README's first command, run natively in the guest; the URL of its forwarded API port."""
    url = guest.api_url()
    guest.start_service(README_COMMAND)
    guest.wait_ready(url, INSTALL_TIMEOUT_S)
    return url


@pytest.fixture(scope="session")
async def api(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, headers={"x-api-key": API_KEY}, timeout=600) as client:
        yield client


async def assert_nothing_beyond_warm_sandboxes(guest: Guest) -> None:
    """Polled: a kill or a cgroup removal in the guest takes a moment to settle."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        left = (await asyncio.to_thread(guest.leftovers)).beyond_warm_sandboxes()
        if not any(left.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert not any(left.values()), left


@pytest.fixture
async def contained(guest: Guest, api: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The API, and after the test: it still answers and no job left a cgroup, process, directory or mount."""
    yield api
    assert (await api.get("/health")).status_code == 200
    await assert_nothing_beyond_warm_sandboxes(guest)
