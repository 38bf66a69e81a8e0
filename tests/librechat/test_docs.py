"""docs/librechat.md's blocks as an admin copies them: codeapi started with its block, @librechat/agents'
tools configured with LibreChat's, `codeapi jwt-keygen` supplying the key pair."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY
from tests.librechat.conftest import UID_BASE, KeyPair, Server, doc_blocks, run_client, start

ALICE = {"id": "665f1c2e9b1d8a0012345678"}


@pytest.fixture(scope="module")
def api_key_server(test_root: Path, key_pair: KeyPair) -> Iterator[Server]:
    yield from start(test_root / "librechat-doc-api-key", "api-key", key_pair, UID_BASE + 128)


@pytest.fixture(scope="module")
def jwks_server(test_root: Path, key_pair: KeyPair) -> Iterator[Server]:
    yield from start(test_root / "librechat-doc-jwks", "jwt-jwks", key_pair, UID_BASE + 192)


def test_the_doc_has_both_sides_of_both_ways() -> None:
    assert set(doc_blocks()) == {
        "librechat api-key",
        "codeapi api-key",
        "librechat jwt",
        "codeapi jwt",
        "codeapi jwt-jwks",
        "librechat stateful",
        "librechat stateful-api-key",
        "codeapi stateful",
    }


def test_jwt_keygen_prints_the_lines_the_doc_asks_for(key_pair: KeyPair) -> None:
    blocks = doc_blocks()
    assert key_pair.librechat["CODEAPI_JWT_ENABLED"] == "true"
    assert set(key_pair.librechat) <= set(blocks["librechat jwt"])
    assert set(key_pair.codeapi) <= set(blocks["codeapi jwt"])
    assert key_pair.librechat["CODEAPI_JWT_KID"] == key_pair.codeapi["CODEAPI_JWT_KID"]


def test_the_api_key_blocks_run_code_and_take_uploads(
    librechat_agents: Path, api_key_server: Server, key_pair: KeyPair
) -> None:
    env = api_key_server.librechat_env("api-key", key_pair)
    ran = run_client(
        librechat_agents, env, ALICE, calls=[{"tool": "execute_code", "lang": "bash", "code": "echo keyed"}]
    )
    assert ran["results"][0]["content"].startswith("stdout:\nkeyed"), ran
    assert ran["tokens"] == []  # the key travels in the base URL
    # LibreChat's provisioning sends LIBRECHAT_CODE_API_KEY as x-api-key.
    uploaded = httpx.post(
        f"{api_key_server.url}/v1/upload",
        files={"file": ("a.txt", b"a")},
        headers={"x-api-key": env["LIBRECHAT_CODE_API_KEY"], "User-Id": ALICE["id"]},
    )
    assert uploaded.status_code == 200
    assert env["LIBRECHAT_CODE_API_KEY"] == API_KEY


def test_the_jwt_blocks_run_code_with_one_token_reused(
    librechat_agents: Path, jwt_server: Server, key_pair: KeyPair
) -> None:
    env = jwt_server.librechat_env("jwt", key_pair)
    calls = [
        {"tool": "execute_code", "lang": "py", "code": "open('/mnt/data/kept.txt', 'w').write('kept')"},
        {"tool": "bash_tool", "code": "cat /mnt/data/kept.txt", "continue": True},
    ]
    ran = run_client(librechat_agents, env, ALICE, calls=calls)
    first, second = ran["results"]
    assert [item["name"] for item in first["artifact"]["files"]] == ["kept.txt"], first
    assert second["content"].startswith("stdout:\nkept"), second
    assert len(ran["tokens"]) == 1  # LibreChat reuses a token for up to 30 s


def test_the_official_jwks_block_verifies_librechats_tokens(
    librechat_agents: Path, jwks_server: Server, key_pair: KeyPair
) -> None:
    env = jwks_server.librechat_env("jwt", key_pair)
    ran = run_client(librechat_agents, env, ALICE, calls=[{"tool": "bash_tool", "code": "echo verified"}])
    assert ran["results"][0]["content"].startswith("stdout:\nverified"), ran
    keyed = httpx.get(f"{jwks_server.url}/v1/files/" + "A" * 21, headers={"x-api-key": API_KEY})
    assert keyed.status_code == 401  # CODEAPI_AUTH_PROVIDER=librechat-jwt: tokens only
