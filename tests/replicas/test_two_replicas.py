"""Two `codeapi serve` processes on one Redis and one S3 behave as one service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bench.backends import SeaweedServer
from tests.apiserver import Replica, clients_of, serving
from tests.conftest import shared_backend

REPLICA_REDIS_DB = 10
WARM_PATH_WAIT_S = 120


@pytest.fixture(scope="module")
def replicas(test_root: Path, api_seaweed: SeaweedServer) -> Iterator[tuple[Replica, Replica]]:
    backend = shared_backend(api_seaweed, redis_db=REPLICA_REDIS_DB)
    # One SANDBOX_BASE_DIR for both, as on a host running two API processes with the same settings:
    # each locks an instance slot of its own there (uids, job directories), nothing set by hand.
    shared = {**backend, "SANDBOX_BASE_DIR": str(test_root / "replicas-sandboxes"), "SANDBOX_UID": 1001 + 256}
    with serving(Replica(test_root / "replica-a", shared), Replica(test_root / "replica-b", shared)) as (a, b):
        yield a, b


@pytest.fixture
async def clients(replicas: tuple[Replica, Replica]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with clients_of(*replicas) as both:
        yield both


async def test_replicas_report_shared_backends(clients: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    for client in clients:
        assert (await client.get("/health")).json()["backends"] == {"metadata": "redis", "files": "s3"}


async def test_upload_on_one_execute_on_other_download_on_first(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = clients
    uploaded = (await first.post("/upload", files={"file": ("in.csv", b"a,b\n1,2\n")})).json()
    ref = {"id": uploaded["files"][0]["fileId"], "storage_session_id": uploaded["storage_session_id"], "name": "in.csv"}
    code = "import pandas as pd\ndf = pd.read_csv('in.csv')\ndf['c'] = df.a + df.b\ndf.to_csv('out.csv', index=False)"
    executed = (await second.post("/exec", json={"lang": "py", "code": code, "files": [ref]})).json()
    assert executed["stderr"] == ""
    output = executed["files"][0]
    download = await first.get(f"/download/{executed['session_id']}/{output['id']}")
    assert download.status_code == 200
    assert download.text == "a,b,c\n1,2,3\n"
    listing = (await first.get(f"/files/{executed['session_id']}", params={"detail": "summary"})).json()
    assert [entry["fileId"] for entry in listing] == [output["id"]]


async def test_a_session_continues_on_the_other_replica(clients: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    first, second = clients
    started = (await first.post("/exec", json={"lang": "bash", "code": "echo from-a > note.txt"})).json()
    continued = await second.post(
        "/exec",
        json={"lang": "bash", "code": "cat note.txt; echo from-b >> note.txt", "session_id": started["session_id"]},
    )
    assert continued.json()["session_id"] == started["session_id"]
    assert continued.json()["stdout"] == "from-a\n"
    again = await first.post(
        "/exec", json={"lang": "bash", "code": "cat note.txt", "session_id": started["session_id"]}
    )
    assert again.json()["stdout"] == "from-a\nfrom-b\n"


async def test_concurrent_runs_of_one_session_on_two_replicas_are_serialised(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = clients
    session_id = (await first.post("/exec", json={"lang": "bash", "code": "touch log.txt"})).json()["session_id"]

    async def append(client: httpx.AsyncClient, marker: str) -> httpx.Response:
        code = f"echo start-{marker} >> log.txt; sleep 1; echo end-{marker} >> log.txt"
        return await client.post("/exec", json={"lang": "bash", "code": code, "session_id": session_id})

    responses = await asyncio.gather(append(first, "a"), append(second, "b"))
    statuses = sorted(response.status_code for response in responses)
    final = (await first.post("/exec", json={"lang": "bash", "code": "cat log.txt", "session_id": session_id})).json()
    lines = final["stdout"].split()
    if statuses == [200, 200]:
        # Serialised: both runs' lines are there, each run's pair unbroken (no lost update, no interleaving).
        assert sorted(lines) == ["end-a", "end-b", "start-a", "start-b"]
        assert lines[0].replace("start", "end") == lines[1]
    else:
        # The only other acceptable outcome: the second is refused with a clear 409, the first kept whole.
        assert statuses == [200, 409]
        assert len(lines) == 2 and lines[0].replace("start", "end") == lines[1]


async def wait_for_warm_python(client: httpx.AsyncClient) -> None:
    """Until the replica's zygote is up, Python runs one-shot (there it is its jail's pid 1)."""
    async with asyncio.timeout(WARM_PATH_WAIT_S):
        while True:
            body = (await client.post("/exec", json={"lang": "py", "code": "import os\nprint(os.getpid())"})).json()
            if body["stdout"] != "1\n":
                return
            await asyncio.sleep(0.5)


async def test_python_state_follows_the_session_to_the_other_replica_and_back(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """B restores what A saved; A then must not answer from its kept interpreter, which is a
    revision behind, but from the state B saved."""
    first, second = clients
    await asyncio.gather(wait_for_warm_python(first), wait_for_warm_python(second))
    started = (
        await first.post("/exec", json={"lang": "py", "code": "count = 41\ndef bump(n):\n    return n + 1"})
    ).json()
    session = started["session_id"]
    on_b = (
        await second.post(
            "/exec", json={"lang": "py", "code": "count = bump(count)\nprint(count)", "session_id": session}
        )
    ).json()
    assert on_b["stdout"] == "42\n", on_b
    back_on_a = (
        await first.post("/exec", json={"lang": "py", "code": "print(count, bump(0))", "session_id": session})
    ).json()
    assert back_on_a["stdout"] == "42 1\n", back_on_a
