"""A programmatic run continues correctly on another replica sharing Redis and S3 (by replay)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bench.backends import SeaweedServer
from tests.apiserver import Replica, clients_of, serving
from tests.conftest import shared_backend, upload
from tests.programmatic.conftest import answer, start

FIRST_UID = 1001 + 128 * 8  # a range of their own: the in-process apps of other tests use 1001
PTC_SANDBOXES = "ptc-sandboxes"
PTC_REDIS_DB = 11


@pytest.fixture(scope="module")
def replicas(test_root: Path, api_seaweed: SeaweedServer) -> Iterator[tuple[Replica, Replica]]:
    backend = shared_backend(api_seaweed, redis_db=PTC_REDIS_DB)
    # One SANDBOX_BASE_DIR: each replica locks an instance slot there; the first, started alone, takes slot 0.
    shared = {**backend, "SANDBOX_BASE_DIR": str(test_root / PTC_SANDBOXES), "SANDBOX_UID": FIRST_UID}
    first = Replica(test_root / "ptc-replica-a", shared)
    first.wait_ready()
    with serving(first, Replica(test_root / "ptc-replica-b", shared)) as (a, b):
        yield a, b


@pytest.fixture
async def clients(replicas: tuple[Replica, Replica]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with clients_of(*replicas) as both:
        yield both


async def test_rounds_alternate_between_replicas_and_the_output_is_one_runs(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = clients
    uploaded = await upload(first, "cities.txt", b"Paris\nRome\nOslo\n")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "storage_session_id": uploaded["storage_session_id"],
        "name": "cities.txt",
    }
    code = (
        "print('start')\n"
        "cities = open('cities.txt').read().split()\n"
        "for city in cities:\n"
        "    r = await get_weather(city=city)\n"
        "    print(r['city'], r['temp'])\n"
        "open('done.txt', 'w').write(','.join(cities))"
    )
    reply = await start(first, code, files=[ref])
    for client in (second, first, second):
        assert reply["status"] == "tool_call_required"
        reply = await answer(client, reply)
    assert reply["status"] == "completed", reply
    assert reply["stdout"] == "start\nParis 20\nRome 20\nOslo 20\n"
    [done] = reply["files"]
    download = await first.get(f"/download/{reply['session_id']}/{done['id']}")
    assert download.text == "Paris,Rome,Oslo"


async def test_a_bash_program_continues_on_the_other_replica(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = clients
    code = 'a=$(get_weather \'{"city": "A"}\')\nb=$(get_weather \'{"city": "B"}\')\necho "$a $b"'
    reply = await start(second, code, lang="bash")
    reply = await answer(first, reply)
    reply = await answer(first, reply)
    assert reply["status"] == "completed", reply
    assert reply["stdout"] == '{"city":"A","temp":20} {"city":"B","temp":20}\n'


async def test_a_token_used_on_one_replica_is_spent_on_the_other(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = clients
    reply = await start(first, "await get_weather(city='A')")
    assert (await answer(first, reply))["status"] == "completed"
    assert await answer(second, reply) == {"status": "error", "error": "Invalid or expired continuation token"}


async def test_a_call_that_differs_on_replay_is_asked_for_again(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = clients
    code = "import uuid\nr = await get_weather(city=uuid.uuid4().hex)\nprint(len(r['city']))"
    reply = await start(first, code)
    again = await answer(second, reply)  # replayed there: a new random city, a new call
    assert again["status"] == "tool_call_required"
    assert again["tool_calls"][0]["input"] != reply["tool_calls"][0]["input"]
    final = await answer(second, again)
    assert final["stdout"] == "32\n"


def ptc_sandboxes(slot: Path) -> set[str]:
    """One-shot job directories of a replica's instance slot (its warm REPL sandboxes and own files aside)."""
    return {entry.name for entry in slot.iterdir() if not entry.name.startswith(("repl-", "."))}


async def test_a_replica_stops_its_paused_sandbox_once_another_took_the_program_over(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], test_root: Path
) -> None:
    first, second = clients
    first_root = test_root / PTC_SANDBOXES / "instance-0"  # the first replica's slot
    before = ptc_sandboxes(first_root)
    reply = await start(first, "for c in 'XYZ':\n    await get_weather(city=c)\nprint('done')")
    [paused] = ptc_sandboxes(first_root) - before
    reply = await answer(second, reply)  # replayed on the second replica, paused there now
    reply = await answer(first, reply)  # back on the first: its old sandbox is not the program's any more
    deadline = asyncio.get_running_loop().time() + 10
    while paused in ptc_sandboxes(first_root) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert paused not in ptc_sandboxes(first_root)
    final = await answer(first, reply)
    assert final["stdout"] == "done\n"
