"""One app for the toolbox tests: the embedded backend (storage plays no part here) and room for
the heavy imports a document or chart program starts with on a busy machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import ClientFactory, run

TOOLBOX_TIME_S = 90


@pytest.fixture(scope="session")
async def toolbox(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(max_execution_time=TOOLBOX_TIME_S) as client:
        yield client


async def run_ok(client: httpx.AsyncClient, lang: str, code: str, **extra: Any) -> dict[str, Any]:
    """Runs ``code``, which prints DONE as its last line once every check in it has passed."""
    body = await run(client, lang, code, **extra)
    assert body["stdout"].rstrip().endswith("DONE"), body["stdout"][-3000:] + body["stderr"][-3000:]
    return body


async def download(client: httpx.AsyncClient, body: dict[str, Any], name: str) -> bytes:
    ids = {item["name"]: item["id"] for item in body["files"]}
    assert name in ids, body["files"]
    response = await client.get(f"/download/{body['session_id']}/{ids[name]}")
    assert response.status_code == 200
    return response.content
