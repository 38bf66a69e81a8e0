"""A warm sandbox works whatever number its descriptors get (select() breaks at 1024; poll does not)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

from tests.conftest import run
from tests.repl.conftest import WarmClientFactory, pool_of

SELECT_LIMIT = 1024


@pytest.fixture
def low_descriptors_taken() -> Iterator[None]:
    """Descriptors 0..1023 all in use, so whatever the app opens next (the init's pidfd) is >= 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8 * SELECT_LIMIT), max(hard, 8 * SELECT_LIMIT)))
    held: list[int] = []
    while (fd := os.open("/dev/null", os.O_RDONLY)) < SELECT_LIMIT:
        held.append(fd)
    os.close(fd)
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_sandbox_whose_pidfd_is_above_1023_serves_and_keeps_a_session(
    low_descriptors_taken: None, warm_client: WarmClientFactory
) -> None:
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        first = await run(client, "py", "value = 41")
        second = await run(client, "py", "print(value + 1)", session_id=first["session_id"])
        assert second["stdout"] == "42\n"
        kept = pool_of(client).hot[first["session_id"]]
        assert kept.jail.init_pidfd >= SELECT_LIMIT
