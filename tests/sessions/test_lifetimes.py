"""A file in use outlives the time it was stored: its run renews it, and the session holding it.

Through the real app on both backends: the records are aged to minutes before their expiry, then
the sweeper runs as if an hour had passed (its clock is a parameter) and the expiry the store holds
is checked against that hour.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx

from codeapi.sessions.service import SessionService, utcnow
from tests.conftest import run, upload


def sessions_of(client: httpx.AsyncClient) -> SessionService:
    service: SessionService = client._transport.app.state.components.sessions  # type: ignore[attr-defined]
    return service


async def age(sessions: SessionService, session_id: str, file_id: str) -> None:
    """The session and its file were stored almost SESSION_TTL_HOURS ago: ten minutes are left."""
    soon = utcnow() + timedelta(minutes=10)
    session = await sessions.get(session_id)
    assert session is not None
    await sessions.metadata.put_session(replace(session, expires_at=soon))
    record = await sessions.get_file(session_id, file_id)
    await sessions.metadata.put_file(replace(record, expires_at=soon))


async def test_an_upload_used_by_a_run_outlives_its_first_lifetime(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "data.csv", b"a,b\n1,2\n")
    session_id, file_id = uploaded["storage_session_id"], uploaded["files"][0]["fileId"]
    sessions = sessions_of(client)
    await age(sessions, session_id, file_id)
    ref = {"id": file_id, "storage_session_id": session_id, "name": "data.csv"}

    await run(client, "bash", "wc -l < data.csv", files=[ref])
    await sessions.expire(utcnow() + timedelta(hours=1))

    assert (await client.get(f"/download/{session_id}/{file_id}")).content == b"a,b\n1,2\n"
    assert (await sessions.get_file(session_id, file_id)).expires_at > utcnow() + timedelta(hours=1)
    later = await run(client, "bash", "wc -l < data.csv", files=[ref])
    assert later["stdout"] == "2\n"


async def test_a_sessions_output_outlives_its_first_lifetime_while_the_session_is_used(
    client: httpx.AsyncClient,
) -> None:
    first = await run(client, "bash", "echo kept > out.txt")
    session_id, file_id = first["session_id"], first["files"][0]["id"]
    sessions = sessions_of(client)
    await age(sessions, session_id, file_id)

    await run(client, "bash", "true", session_id=session_id)
    await sessions.expire(utcnow() + timedelta(hours=1))

    in_an_hour = utcnow() + timedelta(hours=1)
    assert (await sessions.get_file(session_id, file_id)).expires_at > in_an_hour  # listed then too

    listed = (await client.get(f"/files/{session_id}")).json()
    assert [item["id"] for item in listed] == [file_id]
    again = await run(client, "bash", "cat out.txt", session_id=session_id)
    assert again["stdout"] == "kept\n"
