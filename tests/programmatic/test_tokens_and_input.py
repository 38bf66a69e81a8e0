"""Continuation tokens are single use and the caller's own; bad input gets a clear answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import API_KEY, ClientFactory
from tests.http.test_jwt_auth import ED25519, bearer, public_pem, token
from tests.programmatic.conftest import answer, start, weather

OTHER_KEY = "other-key-0123456789abcdef"
OWN_UID = 1001 + 256  # a uid range of its own: the session-wide app runs sandboxes at 1001
INVALID = {"status": "error", "error": "Invalid or expired continuation token"}


@pytest.fixture(scope="module")
async def two_keys(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """One app that accepts API_KEY (the client's default header) and OTHER_KEY."""
    async with make_client(api_keys=OTHER_KEY, sandbox_uid=OWN_UID) as owner:
        yield owner


async def test_a_wrong_key_gets_401(client: httpx.AsyncClient) -> None:
    for path in ("/exec/programmatic", "/exec/programmatic/cancel", "/v1/exec/programmatic"):
        response = await client.post(path, json={"code": "print(1)", "tools": []}, headers={"x-api-key": "wrong"})
        assert response.status_code == 401


async def test_a_token_is_good_for_one_continuation(client: httpx.AsyncClient) -> None:
    reply = await start(client, "await get_weather(city='A')\nawait get_weather(city='B')")
    second = await answer(client, reply)
    assert second["status"] == "tool_call_required"
    assert await answer(client, reply) == INVALID
    assert (await answer(client, second))["status"] == "completed"


async def test_a_forged_token_is_refused(client: httpx.AsyncClient) -> None:
    reply = await start(client, "await get_weather(city='A')")
    forged = {**reply, "continuation_token": reply["continuation_token"][:-2] + "xx"}
    assert await answer(client, forged) == INVALID
    assert (await answer(client, reply))["status"] == "completed"


async def test_another_callers_token_neither_continues_nor_spoils_it(two_keys: httpx.AsyncClient) -> None:
    reply = await start(two_keys, "print((await get_weather(city='A'))['city'])")
    assert await answer(two_keys, reply, headers={"x-api-key": OTHER_KEY}) == INVALID
    final = await answer(two_keys, reply)
    assert final["stdout"] == "A\n"


async def test_results_must_match_the_waiting_calls(client: httpx.AsyncClient) -> None:
    reply = await start(client, "await asyncio.gather(get_weather(city='A'), get_weather(city='B'))\nprint('done')")
    first, second = (weather(call) for call in reply["tool_calls"])
    cases = {
        "unknown": [first, {**second, "call_id": "000000000000"}],
        "duplicate": [first, first],
        "missing": [first],
    }
    for case, results in cases.items():
        response = await client.post(
            "/exec/programmatic", json={"continuation_token": reply["continuation_token"], "tool_results": results}
        )
        assert response.status_code == 400, case
        assert response.json()["error_type"] == "validation"
    final = await answer(client, reply)  # a refused continuation leaves the token usable
    assert final["stdout"] == "done\n"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"code": "print(1)", "tools": [{"description": "no name"}]}, 400),
        ({"code": "print(1)", "tools": ["get_weather"]}, 400),
        ({"code": "print(1)", "tools": [{"name": "a-b"}, {"name": "a b"}]}, 400),
        ({"code": "print(1)", "tools": [], "lang": "js"}, 422),
        ({"code": "print(1)", "tools": [], "timeout": 10}, 422),
        ({"code": "   ", "tools": []}, 400),
        ({"tools": []}, 400),
    ],
)
async def test_bad_starts_get_a_clear_error(client: httpx.AsyncClient, body: dict[str, object], status: int) -> None:
    response = await client.post("/exec/programmatic", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error_type"] == "validation"


async def test_an_oversized_tool_result_is_refused(client: httpx.AsyncClient) -> None:
    reply = await start(client, "await get_weather(city='A')")
    huge = [{"call_id": reply["tool_calls"][0]["id"], "result": "x" * (1024 * 1024 + 1), "is_error": False}]
    response = await client.post(
        "/exec/programmatic", json={"continuation_token": reply["continuation_token"], "tool_results": huge}
    )
    assert response.status_code == 413
    assert (await answer(client, reply))["status"] == "completed"


async def test_the_key_is_required_by_default(make_client: ClientFactory) -> None:
    async with make_client(headers={}) as anonymous:
        response = await anonymous.post("/exec/programmatic", json={"code": "print(1)"})
    assert response.status_code == 401
    assert API_KEY not in response.text


@pytest.fixture(scope="module")
async def with_jwt(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(headers={}, codeapi_jwt_public_key=public_pem(ED25519), sandbox_uid=OWN_UID + 64) as client:
        yield client


async def test_a_jwt_users_program_is_theirs_alone(with_jwt: httpx.AsyncClient) -> None:
    owner, other = bearer(token(sub="user-1")), bearer(token(sub="user-2"))
    reply = await start(with_jwt, "print((await get_weather(city='A'))['city'])", headers=owner)
    assert await answer(with_jwt, reply, headers=other) == INVALID
    final = await answer(with_jwt, reply, headers=bearer(token(sub="user-1")))  # a fresh JWT of the same user
    assert final["stdout"] == "A\n"
