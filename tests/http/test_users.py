"""Sessions belong to users (contract §4.3): another user's entity_id or session_id reaches nothing of theirs."""

from __future__ import annotations

import httpx

from tests.conftest import run
from tests.repl.conftest import wait_until_warm

WRITE_SECRET = "echo alice-only > secret.txt"
LOOK_FOR_SECRET = "ls; cat secret.txt 2>/dev/null || echo nothing"


async def test_another_users_entity_id_does_not_continue_the_first_users_session(client: httpx.AsyncClient) -> None:
    alice = await run(client, "bash", WRITE_SECRET, entity_id="asst_shared_users", user_id="alice")

    mallory = await run(client, "bash", LOOK_FOR_SECRET, entity_id="asst_shared_users", user_id="mallory")

    assert mallory["session_id"] != alice["session_id"]
    assert mallory["stdout"] == "nothing\n"
    again = await run(client, "bash", LOOK_FOR_SECRET, entity_id="asst_shared_users", user_id="alice")
    assert again["session_id"] == alice["session_id"]  # mallory's newer session is not alice's latest
    assert "alice-only" in again["stdout"]


async def test_another_users_session_id_starts_a_session_of_their_own(client: httpx.AsyncClient) -> None:
    alice = await run(client, "bash", WRITE_SECRET, user_id="alice")

    mallory = await run(client, "bash", LOOK_FOR_SECRET, session_id=alice["session_id"], user_id="mallory")

    assert mallory["session_id"] != alice["session_id"]
    assert mallory["stdout"] == "nothing\n"


async def test_a_caller_that_names_no_user_continues_a_session_by_its_id(client: httpx.AsyncClient) -> None:
    """LibreChat's readSandboxFile sends session_id without user_id: the id is the capability."""
    alice = await run(client, "bash", WRITE_SECRET, user_id="alice")

    reader = await run(client, "bash", "cat secret.txt", session_id=alice["session_id"])

    assert reader["session_id"] == alice["session_id"]
    assert reader["stdout"] == "alice-only\n"


async def test_another_users_entity_id_does_not_reach_the_first_users_variables(client: httpx.AsyncClient) -> None:
    await wait_until_warm(client)
    alice = await run(client, "py", "secret = 'alice-only'", entity_id="asst_shared_vars", user_id="alice")

    mallory = await run(client, "py", "print(secret)", entity_id="asst_shared_vars", user_id="mallory")
    again = await run(client, "py", "print(secret)", entity_id="asst_shared_vars", user_id="alice")

    assert "NameError" in mallory["stderr"]
    assert mallory["session_id"] != alice["session_id"]
    assert again["stdout"] == "alice-only\n"
