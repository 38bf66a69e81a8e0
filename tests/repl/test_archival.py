"""Inactive state is archived to the blob store, restored transparently, and deleted once expired."""

from __future__ import annotations

import asyncio

import httpx

from codeapi.state.store import StateStore
from tests.conftest import run
from tests.repl.conftest import WarmClientFactory, executions, pool_of


def states_of(client: httpx.AsyncClient) -> StateStore:
    warm = executions(client).warm
    assert warm is not None and warm.states is not None
    return warm.states


async def wait_for_archive(client: httpx.AsyncClient, session_id: str) -> None:
    async with asyncio.timeout(30):
        while True:
            record = await states_of(client).metadata.get_state(session_id)
            if record is not None and record.archived:
                return
            await asyncio.sleep(0.2)


async def test_inactive_state_is_archived_and_restored_transparently(warm_client: WarmClientFactory) -> None:
    async with warm_client(STATE_ARCHIVE_AFTER_SECONDS=1, STATE_ARCHIVE_CHECK_INTERVAL_SECONDS=1) as client:
        first = await run(client, "py", "archived_value = {'k': [1, 2, 3]}")
        sid = first["session_id"]
        await wait_for_archive(client, sid)
        assert await states_of(client).metadata.read_inline_state(sid) is None
        pool = pool_of(client)
        pool.discard(pool.hot.pop(sid))
        again = await run(client, "py", "print(archived_value['k'])", session_id=sid)
        assert again["stdout"] == "[1, 2, 3]\n"
        record = await states_of(client).metadata.get_state(sid)
        assert record is not None and not record.archived  # saved hot again after use


async def test_an_expired_archive_is_deleted(warm_client: WarmClientFactory) -> None:
    settings = {
        "STATE_ARCHIVE_AFTER_SECONDS": 1,
        "STATE_ARCHIVE_CHECK_INTERVAL_SECONDS": 1,
        "STATE_ARCHIVE_TTL_DAYS": 2 / 86400,  # two seconds
    }
    async with warm_client(**settings) as client:
        first = await run(client, "py", "short_lived = 1")
        sid = first["session_id"]
        await wait_for_archive(client, sid)
        pool = pool_of(client)
        pool.discard(pool.hot.pop(sid))
        async with asyncio.timeout(30):
            while await states_of(client).metadata.get_state(sid) is not None:
                await asyncio.sleep(0.2)
        again = await run(client, "py", "print('short_lived' in globals())", session_id=sid)
    assert again["stdout"] == "False\n"
