"""Execution profiles (contract §9.2): the expected-profile header is checked before anything runs, and
every response says which profile served it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from codeapi.config import ConfigError
from tests.conftest import ClientFactory
from tests.conftest import test_settings as settings_at

EXPECTED = "X-CodeAPI-Expected-Profile"
SERVED = "X-CodeAPI-Execution-Profile"


@pytest.fixture(scope="module")
async def default_only(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(CODEAPI_EXECUTION_PROFILES="default") as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/v1/files/" + "A" * 21, 200),
        ("GET", "/v1/sessions/" + "A" * 21 + "/objects/" + "B" * 21, 404),
        ("GET", "/no-such-route", 404),
        ("POST", "/v1/exec", 422),
    ],
)
async def test_every_response_names_the_profile_that_served_it(
    default_only: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    for headers in ({}, {EXPECTED: "default"}):
        response = await default_only.request(method, path, headers=headers)
        assert response.status_code == status
        assert response.headers[SERVED] == "default"


async def test_a_refused_credential_still_names_the_profile(default_only: httpx.AsyncClient) -> None:
    response = await default_only.get("/v1/files/" + "A" * 21, headers={"x-api-key": "wrong"})
    assert response.status_code == 401
    assert response.headers[SERVED] == "default"


async def test_the_default_profile_runs_code_as_without_the_header(default_only: httpx.AsyncClient) -> None:
    body = {"lang": "bash", "code": "echo profiled"}
    response = await default_only.post("/v1/exec", json=body, headers={EXPECTED: "default"})
    assert response.status_code == 200
    assert response.json()["stdout"] == "profiled\n"


async def test_a_profile_this_deployment_does_not_serve_is_409_before_anything_runs(
    default_only: httpx.AsyncClient,
) -> None:
    body = {"lang": "bash", "code": "touch /mnt/data/ran.txt"}
    response = await default_only.post("/v1/exec", json=body, headers={EXPECTED: "stateful"})
    assert response.status_code == 409
    assert response.headers[SERVED] == "default"
    answer = response.json()
    assert (answer["error"], answer["expected_profile"], answer["actual_profile"]) == (
        "execution_profile_mismatch",
        "stateful",
        "default",
    )


@pytest.mark.parametrize("value", ["bogus", "Default", "default,stateful"])
async def test_an_unknown_profile_is_400(default_only: httpx.AsyncClient, value: str) -> None:
    response = await default_only.get("/v1/files/" + "A" * 21, headers={EXPECTED: value})
    assert response.status_code == 400
    assert response.headers[SERVED] == "default"
    answer = response.json()
    assert (answer["error"], answer["expected_profile"], answer["actual_profile"]) == (
        "invalid_execution_profile",
        value,
        "default",
    )


async def test_a_deployment_serves_stateful_by_default_and_says_so(make_client: ClientFactory) -> None:
    async with make_client() as client:
        stateful = await client.get("/v1/files/" + "A" * 21, headers={EXPECTED: "stateful"})
        plain = await client.get("/v1/files/" + "A" * 21)
        assert (stateful.status_code, stateful.headers[SERVED]) == (200, "stateful")
        assert (plain.status_code, plain.headers[SERVED]) == (200, "default")


@pytest.mark.parametrize("value", ["stateful", "default,warm"])
def test_profiles_a_deployment_cannot_serve_are_configuration_errors(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="CODEAPI_EXECUTION_PROFILES"):
        settings_at(tmp_path, CODEAPI_EXECUTION_PROFILES=value)
